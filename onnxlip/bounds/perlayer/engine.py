"""Global and local Lipschitz bounds as products of per-layer constants.

local: L(x0, ε) with ‖f(x) − f(x0)‖₂ ≤ L·‖x − x0‖₂ for every x in the L2 ball of
radius ε around x0 (one point fixed at x0). The ball is carried through the
chain: ε₁ = ε, ε_{k+1} = L_k·ε_k. global: the product of layer norms.
On a graph, each tensor carries its own bound and ball: a branch starts from the ball
of the tensor it reads, and a merge combines its inputs' (a residual Add of f and g:
L_f(ε) + L_g(ε), masks OR-ed).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ...linalg.backend import array_module, single_blas_thread
from ...graph.dag import Graph
from ...graph.nodes import Node
from .layers import LayerStep, affine_relu_step, affine_step, full_mask, masked_norm
from ...graph.network import Network
from ..domain import InputBox, ball_box


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


def graph_layers(g: Graph) -> Iterator[tuple[int, Node, bool]]:
    """(index, node, fused) per layer: ``fused`` when an affine node's only reader is a node the
    paper bounds with it as one layer (a ReLU; on a chain: an affine node followed by ReLU)."""
    k = 0
    while k < len(g.nodes):
        node = g.nodes[k]
        fused = (node.weighted and k + 1 < len(g.nodes) and g.nodes[k + 1].fuses_with_affine
                 and g.inputs[k + 1] == (k + 1,) and g.readers(k + 1) == [k + 1])
        yield k, node, fused
        k += 2 if fused else 1


def _op_label(node: Node, fused: bool) -> str:
    return node.describe() + (" + relu" if fused else "")


@dataclass(frozen=True)
class _Options:
    warm: WarmStart | None
    certified: bool


@dataclass
class _Carry:
    """What a tensor carries: the bound from the input to it (the running product on a chain),
    the ball radius, the may-change mask, the box (or None)."""

    lip: float
    ball: float
    mask: Any
    box: tuple[Any, Any] | None


def _local_step(node: Node, fused: bool, x0: Any, y0: Any, carry: _Carry, v0: Any, certified: bool,
                box: tuple[Any, Any] | None) -> LayerStep:
    d, eps = carry.mask, carry.ball
    if fused:
        return affine_relu_step(node, y0, d, eps, v0, certified, box)
    if node.weighted:
        return affine_step(node, d, v0, certified)
    step = node.local_constant(x0, d, eps, None if carry.box is None else (carry.box[0][0], carry.box[1][0]))
    return LayerStep(step.lipschitz, step.mask, "closed-form", inactive=step.inactive, active=step.active,
                     unstable=step.unstable)


def _layer_bound(k: int, g: Graph, fused: bool, tensors: list[Any], carry: _Carry,
                 opts: _Options) -> tuple[LayerReport, _Carry]:
    """One layer of the paper's method (affine + ReLU, affine, MaxPool, ReLU, shape op)."""
    node, x0, y0 = g.nodes[k], tensors[g.inputs[k][0]], tensors[k + 1]
    v0 = opts.warm.vectors.get(k) if opts.warm else None
    # the layer's output (pre-ReLU when fused) within its box and the ball
    y_box = node.ball_interval(y0, carry.box[0], carry.box[1], carry.ball) if carry.box is not None else None
    step = _local_step(node, fused, x0[0], y0[0], carry, v0, opts.certified,
                       None if y_box is None else (y_box[0][0], y_box[1][0]))
    box = None
    if y_box is not None:
        box = g.nodes[k + 1].interval(*y_box) if fused else y_box
    if opts.warm is not None and step.vector is not None:
        opts.warm.vectors[k] = step.vector
    names = node.names + (g.nodes[k + 1].names if fused else ())
    ball = carry.ball
    report = LayerReport(k, _op_label(node, fused), names, g.nodes[k + 1 if fused else k].out_shape, step.lipschitz,
                         step.method, ball, ball * step.lipschitz, step.inactive, step.active, step.unstable,
                         step.estimate)
    return report, _Carry(carry.lip * step.lipschitz, ball * step.lipschitz, step.mask, box)


def _merge_bound(k: int, g: Graph, tensors: list[Any], parts: list[_Carry]) -> tuple[LayerReport, _Carry]:
    """A merge of branches (Add, Concat): the bounds of its inputs combined (``node.spread``),
    masks merged, boxes through the node's interval, within the ball around its nominal output."""
    node, y0 = g.nodes[k], tensors[k + 1]
    lip, ball = node.spread(*(p.lip for p in parts)), node.spread(*(p.ball for p in parts))
    xp = array_module(y0)
    mask = (node.forward(*(p.mask[None] for p in parts))[0] > 0).astype(y0.dtype)
    box = None
    if all(p.box is not None for p in parts):
        lo, hi = node.interval(*(p.box for p in parts))
        box = (xp.maximum(lo, y0 - ball), xp.minimum(hi, y0 + ball))
    widest = max(p.ball for p in parts)
    report = LayerReport(k, node.describe(), node.names, node.out_shape, ball / widest if widest > 0 else 0.0,
                         "closed-form", widest, ball)
    return report, _Carry(lip, ball, mask, box)


@dataclass
class _GraphBound:
    total: float
    reports: list[LayerReport]
    final_mask: Any  # mask at the input of the last layer


def _graph_bound(g: Graph, tensors: list[Any], start: _Carry, opts: _Options) -> _GraphBound:
    """The per-layer method over the graph, in topological order from ``start`` at the input: a
    layer's constant multiplies the bound of the tensor it reads (on a chain, the product of
    the layers' constants); a merge combines its inputs' bounds."""
    carries, reports = {0: start}, []
    final_mask = start.mask
    for k, node, fused in graph_layers(g):
        parts = [carries[t] for t in g.inputs[k]]
        final_mask = parts[0].mask
        if node.merge:
            report, out = _merge_bound(k, g, tensors, parts)
        else:
            report, out = _layer_bound(k, g, fused, tensors, parts[0], opts)
        reports.append(report)
        carries[k + 2 if fused else k + 1] = out
    return _GraphBound(carries[g.output].lip, reports, final_mask)


@single_blas_thread
def local_bound(net: Network, x0: Any, eps: float, acts: list[Any] | None = None,
                warm: WarmStart | None = None, certified: bool = False, interval: bool = False,
                box: InputBox | None = None) -> BoundResult:
    """The paper's layer-by-layer local bound L(x0, ε); every layer norm provable with
    ``certified``; with ``interval``, ȳ is also capped by interval bounds (beyond the paper),
    which start from the ball's box cut by the valid inputs ``box``.
    On a graph, each branch is bounded from the ball of the tensor it starts at; a residual
    Add sums its branches' bounds."""
    start = time.perf_counter()
    acts = net.activations(x0) if acts is None else acts
    xp = array_module(acts[0])
    carry = _Carry(1.0, float(eps), full_mask(net.input_shape, xp, acts[0].dtype),
                   ball_box(acts[0], eps, box) if interval else None)
    found = _graph_bound(net.graph, acts, carry, _Options(warm, certified))
    return BoundResult(found.total, found.reports, float(eps), time.perf_counter() - start, found.final_mask)


def _global_constant(node: Node, xp: Any, certified: bool, quick: bool) -> tuple[float, str, float | None]:
    if node.weighted:
        norm = masked_norm(node, full_mask(node.out_shape, xp), full_mask(node.in_shape, xp), certified=certified,
                           quick=quick)
        return norm.value, norm.method, norm.estimate
    return node.lipschitz_constant(), "closed-form", None


@single_blas_thread
def global_bound(net: Network, xp: Any = np, certified: bool = False, quick: bool = False) -> BoundResult:
    """Product of the layers' global constants (affine: ‖A‖₂, MaxPool: √n, rest: 1) along the
    graph; a merge combines its inputs' bounds (Add: the sum). ``quick`` (with ``certified``):
    provable norms without factorizing large matrices (``certified_norm``)."""
    start = time.perf_counter()
    g = net.graph
    lips, reports = {0: 1.0}, []
    for k, node in enumerate(g.nodes):
        ins = [lips[t] for t in g.inputs[k]]
        if node.merge:
            lips[k + 1] = node.spread(*ins)
            value, method, estimate = lips[k + 1] / max(ins) if max(ins) > 0 else 0.0, "closed-form", None
        else:
            value, method, estimate = _global_constant(node, xp, certified, quick)
            lips[k + 1] = ins[0] * value
        reports.append(LayerReport(k, node.describe(), node.names, node.out_shape, value, method, estimate=estimate))
    return BoundResult(lips[g.output], reports, None, time.perf_counter() - start)


@single_blas_thread
def sweep(net: Network, x0: Any, eps_grid: list[float], certified: bool = False,
          interval: bool = False) -> list[BoundResult]:
    """Local bounds over an ε grid, reusing activations and warm-starting Lanczos."""
    acts = net.activations(x0)
    warm = WarmStart()
    return [local_bound(net, x0, float(e), acts, warm, certified, interval) for e in eps_grid]
