"""Input ranges of every nonlinear node of a DAG over the ball (∩ a box of valid inputs).

Nodes are visited in topological order with an interval enclosure of every tensor. At a
ReLU, the units its interval leaves unstable get linear-relaxation bounds
(``relax.lower_bounds`` on rows ±e_i, back-substituted through the ranges found so far),
where the rows × the flops before it stay within a budget; the tightened range replaces
the tensor's enclosure for everything after it. Interval steps are widened for their
rounding, so that it cannot make a unit look stable.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from .crown import affordable, plus_minus_rows
from ..domain import InputBox, ball_box
from ...graph.dag import Graph
from ...graph.pool_tree import relaxation_graph
from .backsub import lower_bounds

# Back-substitute a ReLU's unstable units while rows × flops before it stay below this: on a
# chain (tight mode's ranges, ``tighten``), and on a graph (``graph_walk``, every margin test of
# a DAG's radius search computes them afresh, so a smaller budget).
RANGE_FLOPS = 2e11
GRAPH_RANGE_FLOPS = 2e10
CHUNK_ROWS = 256


def interval_step(node: Any, ins: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Enclosure of a node's output from enclosures of its inputs (batch-1 arrays), widened for
    rounding (the node's ``interval``; a merge takes one pair per input)."""
    return node.interval(*ins) if node.merge else node.interval(*ins[0])


def prefix_flops(g: Graph) -> list[int]:
    """Multiply-adds of one pass from the input to each tensor."""
    totals = [0]
    for node in g.nodes:
        totals.append(totals[-1] + node.flops())
    return totals


def unit_range(g: Graph, ranges: dict[int, tuple[Any, Any]], tensor: int, units: Any, x0: Any, eps: float,
               box: InputBox | None) -> tuple[Any, Any]:
    """Linear-relaxation lower and upper bounds of ``units`` (flat indices) of ``tensor``."""
    lo, hi = np.empty(len(units)), np.empty(len(units))
    for first in range(0, len(units), CHUNK_ROWS):
        idx = units[first : first + CHUNK_ROWS]
        rows = plus_minus_rows(idx, g.shape(tensor))
        # one rounding-magnitude pass per chunk (of Σ|rows|, which bounds every row's): half the work
        bounds = lower_bounds(g, ranges, rows, x0, eps, box=box, start=tensor, shared=True)
        lo[first : first + len(idx)], hi[first : first + len(idx)] = bounds[: len(idx)], -bounds[len(idx) :]
    return lo, hi


def tighten(g: Graph, ranges: dict[int, tuple[Any, Any]], tensor: int, x0: Any, eps: float, lo: Any, hi: Any,
            box: InputBox | None = None, units: Any = None) -> tuple[Any, Any]:
    """[lo, hi] (a range of ``tensor``, batch-1) intersected with the linear-relaxation bounds
    of its units that straddle 0 (``units``, flat, when the caller has them) — the only ones
    whose ReLU relaxation they change — when their back-substitution is affordable
    (``crown.affordable`` on the nodes before it, within ``RANGE_FLOPS``)."""
    if units is None:
        units = np.flatnonzero(((lo < 0) & (hi > 0)).reshape(-1))
    if units.size == 0 or not affordable(g.nodes[:tensor], units.size, one_hot=True, budget=RANGE_FLOPS):
        return lo, hi
    c_lo, c_hi = unit_range(g, ranges, tensor, units, x0, eps, box)
    return narrowed(lo, hi, units, c_lo, c_hi)


def narrowed(lo: Any, hi: Any, units: Any, c_lo: Any, c_hi: Any) -> tuple[Any, Any]:
    """[lo, hi] with the flat ``units`` intersected with [c_lo, c_hi]."""
    shape = lo.shape
    lo, hi = lo.copy().reshape(-1), hi.copy().reshape(-1)
    lo[units], hi[units] = np.maximum(lo[units], c_lo), np.minimum(hi[units], c_hi)
    return lo.reshape(shape), hi.reshape(shape)


def walk(g: Graph, nodes: Iterable[int], enclosures: dict[int, tuple[Any, Any]], ranges: dict[int, tuple[Any, Any]],
         refine: Callable[[int, Any, Any, Any], tuple[Any, Any]],
         known: dict[int, tuple[Any, Any]] | None = None) -> None:
    """Visit ``nodes`` in order, filling the enclosure of each output tensor (``enclosures``
    holds those they read) and the input range of each nonlinear node (``ranges``), which
    ``refine(tensor, units, lo, hi)`` tightens where the node's ``unstable_inputs`` are, after
    intersecting it with the range ``known`` for the node, if any; the tightened range replaces
    the tensor's enclosure for every later reader."""
    for k in nodes:
        node = g.nodes[k]
        ins = [enclosures[i] for i in g.inputs[k]]
        if node.nonlinear:
            tensor, (lo, hi) = g.inputs[k][0], ins[0]
            if known is not None and k in known:
                lo, hi = np.maximum(lo, known[k][0]), np.minimum(hi, known[k][1])
            units = node.unstable_inputs(lo, hi)
            if units.size:
                lo, hi = refine(tensor, units, lo, hi)
            ranges[k] = enclosures[tensor] = (lo, hi)
            ins = [(lo, hi)]
        enclosures[k + 1] = interval_step(node, ins)


# sharpen(tensor, ranges so far, lo, hi) -> a tighter (lo, hi) of the tensor (``focus``)
Sharpen = Callable[[int, dict[int, tuple[Any, Any]], Any, Any], tuple[Any, Any]]


def graph_walk(g: Graph, x0: Any, eps: float, box: InputBox | None = None, budget: float = GRAPH_RANGE_FLOPS,
               sharpen: Sharpen | None = None, known: dict[int, tuple[Any, Any]] | None = None,
               ) -> tuple[dict[int, tuple[Any, Any]], dict[int, tuple[Any, Any]]]:
    """(input range of every nonlinear node, enclosure of every tensor), batch-1 arrays; the
    unstable units of a nonlinear node (within its ``known`` range, if any) get
    linear-relaxation bounds while rows × the flops of one pass up to it stay within
    ``budget``, then ``sharpen`` where given."""
    x0 = np.asarray(x0, dtype=np.float64).reshape(1, *g.input_shape)
    enclosures = {0: ball_box(x0, eps, box)}
    flops = prefix_flops(g)
    ranges: dict[int, tuple[Any, Any]] = {}

    def refine(tensor: int, units: Any, lo: Any, hi: Any) -> tuple[Any, Any]:
        if 2 * units.size * flops[tensor] <= budget:
            lo, hi = narrowed(lo, hi, units, *unit_range(g, ranges, tensor, units, x0, eps, box))
        return (lo, hi) if sharpen is None else sharpen(tensor, ranges, lo, hi)

    walk(g, range(len(g.nodes)), enclosures, ranges, refine, known)
    return ranges, enclosures


def graph_ranges(g: Graph, x0: Any, eps: float, box: InputBox | None = None, budget: float = GRAPH_RANGE_FLOPS,
                 sharpen: Sharpen | None = None, known: dict[int, tuple[Any, Any]] | None = None,
                 ) -> dict[int, tuple[Any, Any]]:
    """Input range (lo, hi), batch-1, of every nonlinear node of ``g`` (see ``graph_walk``)."""
    return graph_walk(g, x0, eps, box, budget, sharpen, known)[0]


def relaxed_ranges(g: Graph, x0: Any, eps: float, box: InputBox | None = None,
                   budget: float = GRAPH_RANGE_FLOPS) -> dict[int, tuple[Any, Any]]:
    """Input range of every nonlinear node of ``g``, computed on its relaxation graph (max-pools
    as ReLU trees, ``pool_tree``), whose ranges are tighter; keyed by ``g``'s nodes."""
    tree = relaxation_graph(g)
    enclosures = graph_walk(tree.graph, x0, eps, box, budget)[1]
    return {k: enclosures[tree.tensor(g.inputs[k][0])] for k, node in enumerate(g.nodes) if node.nonlinear}
