"""Check the IR forward pass against onnxruntime on the original file.

``verify`` measures the difference (``inspect --verify``); ``ensure_matches`` runs
before every computing command reports and stops it when the IR disagrees with
onnxruntime, at x0 and on points of the ball around it: a number computed for a
misread network is never shown.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ModelMismatchError
from ..graph.network import Network
from .runtime import run_onnx

TOLERANCE = 1e-4  # relative to the largest output: float32 evaluation stays far below it


@dataclass(frozen=True)
class VerifyResult:
    max_abs_diff: float
    relative_diff: float
    samples: int

    @property
    def ok(self) -> bool:
        return self.relative_diff <= TOLERANCE

    def as_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "relative_diff": self.relative_diff,
                "samples": self.samples, "tolerance": TOLERANCE, "ok": self.ok}


def compare(net: Network, inputs: np.ndarray) -> VerifyResult:
    """Max |IR − onnxruntime| over a batch of inputs, relative to their largest |output|."""
    inputs = np.asarray(inputs, dtype=np.float32).astype(np.float64)
    ours = np.asarray(net.forward(inputs)).reshape(len(inputs), -1)
    try:
        theirs = run_onnx(net.source, inputs, net.output_name)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelMismatchError(f"{net.source}: onnxruntime cannot run the model ({first})") from None
    theirs = np.asarray(theirs, dtype=np.float64).reshape(len(inputs), -1)
    if ours.shape != theirs.shape:
        raise ModelMismatchError(f"{net.source}: the imported network gives {ours.shape[1]} outputs, "
                                 f"onnxruntime {theirs.shape[1]}")
    diff = float(np.max(np.abs(ours - theirs))) if np.all(np.isfinite(theirs)) else float("inf")
    scale = max(float(np.max(np.abs(theirs))), 1e-12) if np.all(np.isfinite(theirs)) else 1.0
    return VerifyResult(diff, diff / scale, len(inputs))


def verify(net: Network, x: np.ndarray | None = None, n_random: int = 3, seed: int = 0) -> VerifyResult:
    """Max |IR − onnxruntime| over x (if given) and ``n_random`` random inputs, relative to max |output|."""
    rng = np.random.default_rng(seed)
    batch = [rng.standard_normal((n_random, *net.input_shape))]
    if x is not None:
        batch.insert(0, x.reshape(1, *net.input_shape))
    return compare(net, np.concatenate(batch))


def ball_points(x0: np.ndarray, eps: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points on the sphere of radius ``eps`` around x0."""
    directions = rng.standard_normal((n, x0.size))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return x0.reshape(1, -1) + eps * directions


def ensure_matches(net: Network, xs: Sequence[np.ndarray] = (), eps: float | None = None, ball: int = 2,
                   seed: int = 0) -> None:
    """Raise ModelMismatchError unless the IR agrees with onnxruntime at each x in ``xs``, on
    ``ball`` points of its ε-sphere (ε defaults to a tenth of ‖x‖, at least 0.1), and at one
    random input. Each group is compared on its own scale."""
    rng = np.random.default_rng(seed)
    groups = []
    for x in xs:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        radius = eps if eps is not None else max(0.1, 0.1 * float(np.linalg.norm(x)))
        points = np.concatenate([x[None], ball_points(x, radius, ball, rng)])
        groups.append(("x0 and its ball", points.reshape(len(points), *net.input_shape)))
    groups.append(("a random input", rng.standard_normal((1, *net.input_shape))))
    for where, group in groups:
        result = compare(net, group)
        if not result.ok:
            raise ModelMismatchError(
                f"{net.source}: the imported network disagrees with onnxruntime at {where} (relative difference "
                f"{result.relative_diff:.3g} > {TOLERANCE:g}); onnxlip reports no numbers for a network it misreads")
