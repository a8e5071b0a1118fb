"""Optimised ranges for the units that weigh on the margins: α-CROWN's optimised lower lines,
spent on intermediate units where they pay.

A unit's own bounds (rows ±e_i) get tighter with lower lines optimised for them (``slopes``), at
the price of STEPS back-substitutions and forward passes of the graph up to the unit, dense. Most
unstable units barely move a margin's bound: a unit weighs on it through its relaxation triangle,
|Λ_i|·u·(−l)/(u − l) with Λ_i the margin row's coefficient at the unit (the score branch and
bound splits by, ``scores``), summed over the margins that fail. The heaviest units, until they
make up SHARE of the total weight, get optimised ranges in a second walk of the graph, where
their tighter ranges tighten every later unit's too, when that fits FOCUS_FLOPS.

Optimised lines are as valid as the default ones, so every range stays sound; the second walk
starts each node from its range in the first (``graph_walk``'s ``known``), so it is never looser.
"""
from __future__ import annotations

from typing import Any, Hashable

import numpy as np

from . import slopes
from .backsub import lower_bounds
from .crown import plus_minus_rows, relaxations
from .ranges import Sharpen, graph_ranges, narrowed, prefix_flops
from ..domain import InputBox
from ...graph.dag import Graph
from ...linalg.patches import Patches

SHARE = 0.95
STEPS = 4
WARM_STEPS = 2  # for chunks whose every row starts from kept lines (``Memory``)
CHUNK_ROWS = 128
# A margin whose bound is below −REACH × its value at x0 is left as it is: focused ranges gained
# up to a third of that value (docs/tight_mode.md).
REACH = 0.5
# Bytes of lines a radius search keeps for its next tests to start from (``Memory``).
MEMORY_BYTES = 2**28
# Multiply-adds the optimised ranges of one walk may take (rows × steps × both passes × prefix).
FOCUS_FLOPS = 1e11


def weights(g: Graph, ranges: dict[int, tuple[Any, Any]], rows: Any, lines: dict[int, Any], x0: Any, eps: float,
            box: InputBox | None = None) -> dict[int, Any]:
    """Per ReLU node, each input unit's weight on the bounds of ``rows`` (with their ``lines``),
    summed over the rows: flat, 0 for stable units."""
    relaxed = relaxations(g.nodes, ranges)
    x0 = np.asarray(x0, dtype=np.float64).reshape(1, *g.input_shape)
    _, _, chosen, _ = slopes.relaxed_pass(g, relaxed, rows, x0, eps, lines, slopes.free_lines(relaxed), box)
    found = {}
    for k, (lam, _) in chosen.items():
        score = relaxed[k].scores(lam, None)
        if score is not None:
            found[k] = score.reshape(len(lam), -1).sum(axis=0)
    return found


def heaviest(g: Graph, weights: dict[int, Any]) -> dict[int, Any]:
    """Per tensor a ReLU reads, the flat units with the largest weights, taken in turn until they
    make up SHARE of the total weight; none when optimising them would pass FOCUS_FLOPS (on
    cifar10_net, the heaviest part within it raised the radius by 1% for 75% more time:
    docs/tight_mode.md)."""
    flops = prefix_flops(g)
    nodes = [k for k in weights if np.any(weights[k] > 0)]
    if not nodes:
        return {}
    node_of = np.concatenate([np.full(weights[k].size, k) for k in nodes])
    unit = np.concatenate([np.arange(weights[k].size) for k in nodes])
    weight = np.concatenate([weights[k] for k in nodes])
    order = np.argsort(-weight, kind="stable")
    before = np.cumsum(weight[order]) - weight[order]  # weight of the heavier units
    take = order[(before < SHARE * weight.sum()) & (weight[order] > 0)]
    if sum(4 * STEPS * flops[g.inputs[k][0]] for k in node_of[take]) > FOCUS_FLOPS:
        return {}
    return {g.inputs[k][0]: np.sort(unit[take][node_of[take] == k]) for k in nodes if np.any(node_of[take] == k)}


class Memory:
    """The optimised lower lines of every row bounded so far (an optimised range's ±e_i, a
    margin), by a key per row, for the next test (at a nearby radius) to start from: any lines
    are valid, so where they start changes how tight the bounds get, not whether they hold. A
    start needs no precision, so they are kept in half precision, and rows past MEMORY_BYTES are
    not kept."""

    def __init__(self) -> None:
        self.rows: dict[Hashable, dict[int, Any]] = {}
        self.bytes = 0

    def start(self, keys: list[Hashable]) -> dict[int, Any]:
        """Per node, the kept lines of the rows ``keys`` (NaN for rows not kept)."""
        kept = [self.rows.get(key, {}) for key in keys]
        nodes = {k: a for row in kept for k, a in row.items()}
        return {k: np.stack([row.get(k, np.full_like(a, np.nan)) for row in kept]) for k, a in nodes.items()}

    def keep(self, keys: list[Hashable], lines: dict[int, Any]) -> None:
        for r, key in enumerate(keys):
            row = {k: a[r].astype(np.float16) for k, a in lines.items()}
            size = sum(a.nbytes for a in row.values())
            old = sum(a.nbytes for a in self.rows.get(key, {}).values())
            if self.bytes + size - old <= MEMORY_BYTES:
                self.rows[key], self.bytes = row, self.bytes + size - old


def warm_optimise(memory: Memory | None, keys: list[Hashable], g: Graph, ranges: dict[int, tuple[Any, Any]],
                  rows: Any, x0: Any, eps: float, **options: Any) -> dict[int, Any]:
    """``slopes.optimise`` from the lines ``memory`` kept for the rows' ``keys``, keeping the
    lines it returns there (without a memory: from the default lines)."""
    if memory is None:
        return slopes.optimise(g, ranges, rows, x0, eps, **options)
    lines = slopes.optimise(g, ranges, rows, x0, eps, start=memory.start(keys), **options)
    memory.keep(keys, lines)
    return lines


def signed_keys(tensor: int, idx: Any) -> list[tuple[int, int]]:
    """Keys of the rows ``plus_minus_rows(idx)`` of ``tensor``: +e_i as i, −e_i as −1 − i."""
    return [(tensor, int(i)) for i in idx] + [(tensor, -1 - int(i)) for i in idx]


def sharpener(g: Graph, picked: dict[int, Any], x0: Any, eps: float, box: InputBox | None = None,
              memory: Memory | None = None) -> Sharpen:
    """``graph_walk``'s sharpen: the ``picked`` units of a tensor get bounds with lower lines
    optimised for each (STEPS of ``slopes.optimise`` on the graph up to the tensor, from the
    lines ``memory`` kept for them, if any, and kept there; WARM_STEPS where it kept them all)."""
    x0 = np.asarray(x0, dtype=np.float64).reshape(1, *g.input_shape)

    def sharpen(tensor: int, ranges: dict[int, tuple[Any, Any]], lo: Any, hi: Any) -> tuple[Any, Any]:
        units = picked.get(tensor)
        if units is not None:  # those the ranges so far leave unstable
            units = units[(lo.reshape(-1)[units] < 0) & (hi.reshape(-1)[units] > 0)]
        if units is None or units.size == 0:
            return lo, hi
        prefix = g.prefix(tensor)
        for first in range(0, len(units), CHUNK_ROWS):
            idx = units[first : first + CHUNK_ROWS]
            rows = plus_minus_rows(idx, g.shape(tensor))
            rows = rows.dense() if isinstance(rows, Patches) else rows
            keys = signed_keys(tensor, idx)
            warm = memory is not None and all(key in memory.rows for key in keys)
            lines = warm_optimise(memory, keys, prefix, ranges, rows, x0, eps, steps=WARM_STEPS if warm else STEPS,
                                  box=box)
            bounds = lower_bounds(prefix, ranges, rows, x0, eps, lines, box)
            lo, hi = narrowed(lo, hi, idx, bounds[: len(idx)], -bounds[len(idx) :])
        return lo, hi

    return sharpen


def focused_ranges(g: Graph, ranges: dict[int, tuple[Any, Any]], rows: Any, lines: dict[int, Any], x0: Any,
                   eps: float, box: InputBox | None = None, memory: Memory | None = None,
                   ) -> dict[int, tuple[Any, Any]] | None:
    """The ranges of ``graph_ranges`` again, each within its ``ranges`` one, with optimised ranges
    for the units that weigh most on the bounds of ``rows`` (with their ``lines``, on
    ``ranges``; from and into ``memory``); None when no unit weighs."""
    picked = heaviest(g, weights(g, ranges, rows, lines, x0, eps, box))
    if not picked:
        return None
    return graph_ranges(g, x0, eps, box, sharpen=sharpener(g, picked, x0, eps, box, memory), known=ranges)
