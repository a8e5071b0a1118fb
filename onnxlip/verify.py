"""Check the IR forward pass against onnxruntime on the original file."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import Network
from .runtime import run_onnx

TOLERANCE = 1e-4


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


def verify(net: Network, x: np.ndarray | None = None, n_random: int = 3, seed: int = 0) -> VerifyResult:
    """Max |IR − onnxruntime| over x (if given) and ``n_random`` random inputs, relative to max |output|."""
    rng = np.random.default_rng(seed)
    batch = [rng.standard_normal((n_random, *net.input_shape))]
    if x is not None:
        batch.insert(0, x.reshape(1, *net.input_shape))
    inputs = np.concatenate(batch).astype(np.float32).astype(np.float64)
    ours = net.forward(inputs).reshape(len(inputs), -1)
    theirs = run_onnx(net.source, inputs, net.output_name).reshape(len(inputs), -1).astype(np.float64)
    diff = float(np.max(np.abs(ours - theirs)))
    scale = max(float(np.max(np.abs(theirs))), 1e-12)
    return VerifyResult(diff, diff / scale, len(inputs))
