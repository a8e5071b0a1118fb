"""Global and local Lipschitz bounds as products of per-layer constants.

local: L(x0, ε) with ‖f(x) − f(x0)‖₂ ≤ L·‖x − x0‖₂ for every x in the L2 ball of
radius ε around x0 (one point fixed at x0). The ball is carried through the
chain: ε₁ = ε, ε_{k+1} = L_k·ε_k. global: the product of layer norms.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .backend import array_module, sized_threads
from .ir import AFFINE_TYPES, SHAPE_TYPES, MaxPool, Node, Relu, describe
from .layer_bounds import (LayerStep, affine_relu_step, affine_step, full_mask, masked_norm,
                           maxpool_constant, maxpool_step, passthrough_step)
from .network import Network
from .ranges import affine_range, input_box, monotone_range


@dataclass(frozen=True)
class LayerReport:
    """One layer of a bound: which IR nodes, its constant, and the ball it sees."""

    index: int
    op: str
    names: tuple[str, ...]
    out_shape: tuple[int, ...]
    lipschitz: float
    method: str
    eps_in: float = 0.0
    eps_out: float = 0.0
    inactive: int = 0
    active: int = 0
    unstable: int = 0
    estimate: float | None = None  # certified mode: the converged estimate of the same norm

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "op": self.op, "names": list(self.names), "shape": list(self.out_shape),
            "lipschitz": self.lipschitz, "method": self.method, "eps_in": self.eps_in,
            "eps_out": self.eps_out, "inactive": self.inactive, "active": self.active,
            "unstable": self.unstable, "estimate": self.estimate,
        }


@dataclass(frozen=True)
class BoundResult:
    """A bound (global when eps is None) with its per-layer table."""

    bound: float
    layers: list[LayerReport]
    eps: float | None = None
    seconds: float = 0.0
    final_mask: Any = None  # inputs of the last layer that may change (local bounds)

    @property
    def is_estimate(self) -> bool:
        """True when any layer norm came from an iterative solver (converged, from below)."""
        return any(layer.method == "lanczos" for layer in self.layers)


@dataclass
class WarmStart:
    """Per-layer singular vectors kept between bounds of a sweep."""

    vectors: dict[int, Any] = field(default_factory=dict)


def layers(net: Network) -> Iterator[tuple[int, Node, bool]]:
    """(index, node, fused) per layer: ``fused`` when an affine node is followed by ReLU."""
    i = 0
    while i < len(net.nodes):
        node = net.nodes[i]
        fused = isinstance(node, AFFINE_TYPES) and i + 1 < len(net.nodes) and isinstance(net.nodes[i + 1], Relu)
        yield i, node, fused
        i += 2 if fused else 1


def _op_label(node: Node, fused: bool) -> str:
    return describe(node) + (" + relu" if fused else "")


def _local_step(node: Node, fused: bool, y0: Any, d: Any, eps: float, v0: Any, certified: bool,
                box: tuple[Any, Any] | None) -> LayerStep:
    if fused:
        return affine_relu_step(node, y0, d, eps, v0, certified, box)
    if isinstance(node, AFFINE_TYPES):
        return affine_step(node, d, v0, certified)
    if isinstance(node, MaxPool):
        return maxpool_step(node, d)
    if isinstance(node, SHAPE_TYPES):
        return passthrough_step(node.linear(d[None])[0])
    return passthrough_step(d)  # a ReLU on its own


def _advance_box(node: Node, fused: bool, y0: Any, box: tuple[Any, Any], ball: float) -> tuple[Any, Any]:
    """Interval enclosure of the layer's output (pre-ReLU when fused) and of what follows it."""
    if isinstance(node, AFFINE_TYPES):
        return affine_range(node, y0, box[0], box[1], ball)
    return monotone_range(node, *box)


@sized_threads
def local_bound(net: Network, x0: Any, eps: float, acts: list[Any] | None = None,
                warm: WarmStart | None = None, certified: bool = False, interval: bool = False) -> BoundResult:
    """The paper's layer-by-layer local bound L(x0, ε); every layer norm provable with
    ``certified``; with ``interval``, ȳ is also capped by interval bounds (beyond the paper)."""
    start = time.perf_counter()
    acts = net.activations(x0) if acts is None else acts
    xp = array_module(acts[0])
    d = full_mask(net.input_shape, xp, acts[0].dtype)
    box = input_box(acts[0], eps) if interval else None
    ball, total, reports = float(eps), 1.0, []
    for i, node, fused in layers(net):
        final_mask = d
        v0 = warm.vectors.get(i) if warm else None
        y_box = _advance_box(node, fused, acts[i + 1], box, ball) if box is not None else None
        step = _local_step(node, fused, acts[i + 1][0], d, ball, v0, certified,
                           None if y_box is None else (y_box[0][0], y_box[1][0]))
        if y_box is not None:
            box = monotone_range(net.nodes[i + 1], *y_box) if fused else y_box
        if warm is not None and step.vector is not None:
            warm.vectors[i] = step.vector
        names = node.names + (net.nodes[i + 1].names if fused else ())
        reports.append(LayerReport(i, _op_label(node, fused), names, net.nodes[i + 1 if fused else i].out_shape,
                                   step.lipschitz, step.method, ball, ball * step.lipschitz,
                                   step.inactive, step.active, step.unstable, step.estimate))
        ball *= step.lipschitz
        total *= step.lipschitz
        d = step.mask
    return BoundResult(total, reports, float(eps), time.perf_counter() - start, final_mask)


def _global_constant(node: Node, xp: Any, certified: bool) -> tuple[float, str, float | None]:
    if isinstance(node, AFFINE_TYPES):
        norm = masked_norm(node, full_mask(node.out_shape, xp), full_mask(node.in_shape, xp), certified=certified)
        return norm.value, norm.method, norm.estimate
    if isinstance(node, MaxPool):
        return maxpool_constant(node), "closed-form", None
    return 1.0, "closed-form", None


@sized_threads
def global_bound(net: Network, xp: Any = np, certified: bool = False) -> BoundResult:
    """Product of the layers' global constants (affine: ‖A‖₂, MaxPool: √n, rest: 1)."""
    start = time.perf_counter()
    total, reports = 1.0, []
    for i, node in enumerate(net.nodes):
        value, method, estimate = _global_constant(node, xp, certified)
        total *= value
        reports.append(LayerReport(i, describe(node), node.names, node.out_shape, value, method, estimate=estimate))
    return BoundResult(total, reports, None, time.perf_counter() - start)


@sized_threads
def sweep(net: Network, x0: Any, eps_grid: list[float], certified: bool = False,
          interval: bool = False) -> list[BoundResult]:
    """Local bounds over an ε grid, reusing activations and warm-starting Lanczos."""
    acts = net.activations(x0)
    warm = WarmStart()
    return [local_bound(net, x0, float(e), acts, warm, certified, interval) for e in eps_grid]
