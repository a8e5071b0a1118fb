"""Global and local Lipschitz bounds as products of per-layer constants.

local: L(x0, ε) with ‖f(x) − f(x0)‖₂ ≤ L·‖x − x0‖₂ for every x in the L2 ball of
radius ε around x0 (one point fixed at x0). The ball is carried through the
chain: ε₁ = ε, ε_{k+1} = L_k·ε_k. global: the product of layer norms.
A residual block f(x) + g(x) is one layer with L_k = L_f(ε_k) + L_g(ε_k), each
branch bounded by the same method on the block's input ball (masks OR-ed).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from .backend import array_module, single_blas_thread
from .ir import AFFINE_TYPES, SHAPE_TYPES, MaxPool, Node, Relu, Residual, describe
from .layer_bounds import (LayerStep, affine_relu_step, affine_step, full_mask, masked_norm,
                           maxpool_constant, maxpool_step, passthrough_step, secant_slopes)
from .network import Network
from .domain import InputBox, ball_box
from .ranges import affine_range, monotone_range


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
        """True when any layer norm came from an iterative solver (converged, not proven);
        tight-mode bounds count as estimates too (Lanczos on inner segments)."""
        return any(layer.method in ("lanczos", "tight") for layer in self.layers)


@dataclass
class WarmStart:
    """Per-layer singular vectors kept between bounds of a sweep."""

    vectors: dict[int, Any] = field(default_factory=dict)


def layers(net: Network) -> Iterator[tuple[int, Node, bool]]:
    """(index, node, fused) per layer: ``fused`` when an affine node is followed by ReLU."""
    return chain_layers(net.nodes)


def chain_layers(nodes: tuple[Node, ...]) -> Iterator[tuple[int, Node, bool]]:
    """``layers`` of any chain of nodes (a network's, or a residual branch's)."""
    i = 0
    while i < len(nodes):
        node = nodes[i]
        fused = isinstance(node, AFFINE_TYPES) and i + 1 < len(nodes) and isinstance(nodes[i + 1], Relu)
        yield i, node, fused
        i += 2 if fused else 1


def _op_label(node: Node, fused: bool) -> str:
    return describe(node) + (" + relu" if fused else "")


@dataclass(frozen=True)
class _Options:
    warm: WarmStart | None
    certified: bool


@dataclass
class _Carry:
    """What flows along a chain: the ball radius, the may-change mask, the box (or None)."""

    ball: float
    mask: Any
    box: tuple[Any, Any] | None


@dataclass
class _ChainBound:
    total: float
    reports: list[LayerReport]
    out: _Carry
    final_mask: Any  # mask at the input of the last layer


def _lone_relu_step(x0: Any, d: Any, ball: float, box: tuple[Any, Any] | None) -> LayerStep:
    """A ReLU after a node other than an affine one (e.g. after a residual Add): input i moves by
    at most ``ball``, so units with x0_i + ball ≤ 0 cannot change; L = max secant slope of the rest."""
    xp = array_module(x0)
    upper, lower = x0 + ball, x0 - ball
    if box is not None:
        lower, upper = xp.maximum(lower, box[0]), xp.minimum(upper, box[1])
    mask = (d * (upper > 0)).astype(x0.dtype)
    slopes = secant_slopes(x0, upper) * mask
    inactive = int(xp.count_nonzero(upper <= 0))
    active = int(xp.count_nonzero(lower > 0))
    return LayerStep(float(xp.max(slopes)), mask, "closed-form",
                     inactive=inactive, active=active, unstable=int(x0.size) - inactive - active)


def _local_step(node: Node, fused: bool, x0: Any, y0: Any, carry: _Carry, v0: Any, certified: bool,
                box: tuple[Any, Any] | None) -> LayerStep:
    d, eps = carry.mask, carry.ball
    if fused:
        return affine_relu_step(node, y0, d, eps, v0, certified, box)
    if isinstance(node, AFFINE_TYPES):
        return affine_step(node, d, v0, certified)
    if isinstance(node, MaxPool):
        return maxpool_step(node, d)
    if isinstance(node, SHAPE_TYPES):
        return passthrough_step(node.linear(d[None])[0])
    return _lone_relu_step(x0, d, eps, None if carry.box is None else (carry.box[0][0], carry.box[1][0]))


def _advance_box(node: Node, fused: bool, y0: Any, box: tuple[Any, Any], ball: float) -> tuple[Any, Any]:
    """Interval enclosure of the layer's output (pre-ReLU when fused) and of what follows it."""
    if isinstance(node, AFFINE_TYPES):
        return affine_range(node, y0, box[0], box[1], ball)
    return monotone_range(node, *box)


def _chain_bound(nodes: tuple[Node, ...], acts: list[Any], carry: _Carry, opts: _Options,
                 key: tuple = ()) -> _ChainBound:
    """The per-layer product along a chain from ``carry`` at its input; ``key`` names the
    chain for warm starts (() for the network, (block index, branch, ...) inside blocks)."""
    total, reports, final_mask = 1.0, [], carry.mask
    for i, node, fused in chain_layers(nodes):
        final_mask = carry.mask
        if isinstance(node, Residual):
            report, carry = _residual_bound(i, node, acts[i], acts[i + 1], carry, opts, key + (i,))
        else:
            report, carry = _layer_bound(i, nodes, fused, acts, carry, opts, key + (i,) if key else i)
        reports.append(report)
        total *= report.lipschitz
    return _ChainBound(total, reports, carry, final_mask)


def _layer_bound(i: int, nodes: tuple[Node, ...], fused: bool, acts: list[Any], carry: _Carry, opts: _Options,
                 key: Any) -> tuple[LayerReport, _Carry]:
    """One layer of the paper's method (affine + ReLU, affine, MaxPool, ReLU, shape op)."""
    node = nodes[i]
    v0 = opts.warm.vectors.get(key) if opts.warm else None
    y_box = _advance_box(node, fused, acts[i + 1], carry.box, carry.ball) if carry.box is not None else None
    step = _local_step(node, fused, acts[i][0], acts[i + 1][0], carry, v0, opts.certified,
                       None if y_box is None else (y_box[0][0], y_box[1][0]))
    box = None
    if y_box is not None:
        box = monotone_range(nodes[i + 1], *y_box) if fused else y_box
    if opts.warm is not None and step.vector is not None:
        opts.warm.vectors[key] = step.vector
    names = node.names + (nodes[i + 1].names if fused else ())
    ball = carry.ball
    report = LayerReport(i, _op_label(node, fused), names, nodes[i + 1 if fused else i].out_shape, step.lipschitz,
                         step.method, ball, ball * step.lipschitz, step.inactive, step.active, step.unstable,
                         step.estimate)
    return report, _Carry(ball * step.lipschitz, step.mask, box)


def _residual_bound(i: int, node: Residual, x0: Any, y0: Any, carry: _Carry, opts: _Options,
                    key: tuple) -> tuple[LayerReport, _Carry]:
    """A residual block: L = L_main(ε) + L_skip(ε), each branch bounded by the same per-layer
    method from the block's input ball and mask; masks OR-ed, boxes added."""
    parts = [_chain_bound(branch, acts, carry, opts, key + (tag,))
             for tag, branch, acts in zip(("main", "skip"), node.branches, node.branch_activations(x0))]
    value = parts[0].total + parts[1].total
    ball = carry.ball * value
    xp = array_module(y0)
    mask = xp.maximum(parts[0].out.mask, parts[1].out.mask)
    box = None
    if carry.box is not None:  # the sum of the branches' enclosures, within the ball around y0
        lo = xp.maximum(parts[0].out.box[0] + parts[1].out.box[0], y0 - ball)
        hi = xp.minimum(parts[0].out.box[1] + parts[1].out.box[1], y0 + ball)
        box = (lo, hi)
    inner = parts[0].reports + parts[1].reports
    counts = (sum(getattr(r, f) for r in inner) for f in ("inactive", "active", "unstable"))
    estimate = _combined_estimate([[(r.lipschitz, r.estimate) for r in p.reports] for p in parts])
    report = LayerReport(i, describe(node), node.names, node.out_shape, value,
                         _combined_method(r.method for r in inner), carry.ball, ball, *counts, estimate)
    return report, _Carry(ball, mask, box)


def _combined_method(methods: Iterable[str]) -> str:
    """'lanczos' when any part is an estimate; else the distinct ways the parts were computed."""
    methods = set(methods)
    if "lanczos" in methods:
        return "lanczos"
    return "+".join(sorted(methods - {"closed-form"})) or "closed-form"


def _combined_estimate(branches: list[list[tuple[float, float | None]]]) -> float | None:
    """Certified mode: Σ over branches of Π (estimate, else value) of its layers; None without estimates."""
    if all(estimate is None for branch in branches for _, estimate in branch):
        return None
    return sum(math.prod(value if estimate is None else estimate for value, estimate in branch) for branch in branches)


@single_blas_thread
def local_bound(net: Network, x0: Any, eps: float, acts: list[Any] | None = None,
                warm: WarmStart | None = None, certified: bool = False, interval: bool = False,
                box: InputBox | None = None) -> BoundResult:
    """The paper's layer-by-layer local bound L(x0, ε); every layer norm provable with
    ``certified``; with ``interval``, ȳ is also capped by interval bounds (beyond the paper),
    which start from the ball's box cut by the valid inputs ``box``.
    A residual block is one layer whose constant is the sum of its branches' products
    (the interval box goes through both branches and is added up)."""
    start = time.perf_counter()
    acts = net.activations(x0) if acts is None else acts
    xp = array_module(acts[0])
    carry = _Carry(float(eps), full_mask(net.input_shape, xp, acts[0].dtype),
                   ball_box(acts[0], eps, box) if interval else None)
    chain = _chain_bound(net.nodes, acts, carry, _Options(warm, certified))
    return BoundResult(chain.total, chain.reports, float(eps), time.perf_counter() - start, chain.final_mask)


def _global_constant(node: Node, xp: Any, certified: bool) -> tuple[float, str, float | None]:
    if isinstance(node, AFFINE_TYPES):
        norm = masked_norm(node, full_mask(node.out_shape, xp), full_mask(node.in_shape, xp), certified=certified)
        return norm.value, norm.method, norm.estimate
    if isinstance(node, MaxPool):
        return maxpool_constant(node), "closed-form", None
    if isinstance(node, Residual):
        return _global_residual(node, xp, certified)
    return 1.0, "closed-form", None


def _global_residual(node: Residual, xp: Any, certified: bool) -> tuple[float, str, float | None]:
    """‖main‖ + ‖skip‖, each the product of its nodes' global constants (the identity: 1)."""
    constants = [[_global_constant(n, xp, certified) for n in branch] for branch in node.branches]
    value = sum(math.prod(c[0] for c in branch) for branch in constants)
    method = _combined_method(c[1] for branch in constants for c in branch)
    return value, method, _combined_estimate([[(c[0], c[2]) for c in branch] for branch in constants])


@single_blas_thread
def global_bound(net: Network, xp: Any = np, certified: bool = False) -> BoundResult:
    """Product of the layers' global constants (affine: ‖A‖₂, MaxPool: √n, residual block:
    ‖main‖ + ‖skip‖, rest: 1)."""
    start = time.perf_counter()
    total, reports = 1.0, []
    for i, node in enumerate(net.nodes):
        value, method, estimate = _global_constant(node, xp, certified)
        total *= value
        reports.append(LayerReport(i, describe(node), node.names, node.out_shape, value, method, estimate=estimate))
    return BoundResult(total, reports, None, time.perf_counter() - start)


@single_blas_thread
def sweep(net: Network, x0: Any, eps_grid: list[float], certified: bool = False,
          interval: bool = False) -> list[BoundResult]:
    """Local bounds over an ε grid, reusing activations and warm-starting Lanczos."""
    acts = net.activations(x0)
    warm = WarmStart()
    return [local_bound(net, x0, float(e), acts, warm, certified, interval) for e in eps_grid]
