"""The linear-relaxation margin test of the radius search on a DAG: radius ε holds when every
margin y_c − y_j (j ≠ c) has a positive lower bound over the ball (∩ box), on ranges from
``graph_ranges``, both on the relaxation graph (max-pools as ReLU trees, ``pool_tree``); where
a margin fails, again on ranges optimised for the units that weigh on it (``focus``)."""
from __future__ import annotations

from typing import Any, Hashable

import numpy as np

from .focus import REACH, Memory, focused_ranges, warm_optimise
from ..domain import InputBox
from ...graph.dag import Graph
from ...graph.pool_tree import relaxation_graph
from .ranges import graph_ranges
from .backsub import lower_bounds


def margin_rows(y0: Any, label: int, shape: tuple[int, ...]) -> Any:
    """Rows e_c − e_j for every j ≠ c, shaped as outputs."""
    others = np.delete(np.arange(y0.size), label)
    rows = np.zeros((others.size, y0.size))
    rows[:, label], rows[np.arange(others.size), others] = 1.0, -1.0
    return rows.reshape(-1, *shape)


def optimised_bounds(g: Graph, ranges: dict[int, tuple[Any, Any]], rows: Any, x0: Any, eps: float,
                     box: InputBox | None = None, memory: Memory | None = None,
                     keys: list[Hashable] | None = None) -> tuple[Any, dict[int, Any]]:
    """Lower bounds of ``rows`` (on ``g``'s output) over the ball (∩ ``box``) on ``ranges``, with
    lower lines optimised per row (``slopes``, until every row is positive; from those
    ``memory`` kept for the rows' ``keys``, default one per margin), and those lines."""
    keys = [("margin", r) for r in range(len(rows))] if keys is None else keys
    lines = warm_optimise(memory, keys, g, ranges, rows, x0, eps, stop_above=0.0, box=box)
    return lower_bounds(g, ranges, rows, x0, eps, lines, box), lines


def focused_bounds(g: Graph, ranges: dict[int, tuple[Any, Any]], rows: Any, x0: Any, eps: float, gaps: Any,
                   bounds: Any, lines: dict[int, Any], box: InputBox | None = None,
                   memory: Memory | None = None, reach: float = REACH) -> tuple[Any, dict[int, tuple[Any, Any]]]:
    """``optimised_bounds``'s ``bounds`` (with its ``lines``), each row that fails by less than
    ``reach`` × its value at x0 (``gaps``) bounded again on ``focus.focused_ranges`` (with
    ``memory``), unless a row fails by more: then no focus can make every margin hold. Also the
    ranges the bounds rest on, for branch and bound to start from (which gains from focused ranges
    at any ``reach``): the focused ones where focus ran, else ``ranges``."""
    failing = (bounds <= 0) & (bounds > -reach * gaps)
    if not (lines and np.any(failing)) or np.any(bounds <= -reach * gaps):
        return bounds, ranges
    focused = focused_ranges(g, ranges, rows[failing], {k: a[failing] for k, a in lines.items()}, x0, eps, box, memory)
    if focused is None:
        return bounds, ranges
    again, _ = optimised_bounds(g, focused, rows[failing], x0, eps, box, memory,
                                [("margin", int(r)) for r in np.flatnonzero(failing)])
    bounds = bounds.copy()
    bounds[failing] = np.maximum(bounds[failing], again)
    return bounds, focused


def margin_bounds(g: Graph, x0: Any, eps: float, y0: Any, label: int, box: InputBox | None = None,
                  optimise: bool = True, focus: bool = True, memory: Memory | None = None) -> Any:
    """Lower bounds of every margin y_c − y_j over the ball of radius ε (∩ ``box``), with the
    lower lines optimised per margin unless ``optimise`` is False, and with ``focus`` (and
    ``optimise``) those that fail by a little bounded again on focused ranges (``focused_bounds``,
    with ``memory``)."""
    g = relaxation_graph(g).graph
    if optimise and focus:
        return tight_margins(g, x0, eps, y0, label, box, memory)[0]
    ranges = graph_ranges(g, x0, eps, box)
    rows = margin_rows(y0, label, g.shape(g.output))
    if not optimise:
        return lower_bounds(g, ranges, rows, x0, eps, None, box)
    return optimised_bounds(g, ranges, rows, x0, eps, box, memory)[0]


def tight_margins(g: Graph, x0: Any, eps: float, y0: Any, label: int, box: InputBox | None = None,
                  memory: Memory | None = None, reach: float = REACH) -> tuple[Any, dict[int, tuple[Any, Any]]]:
    """``margin_bounds`` with optimised lines and focus, on the relaxation graph ``g``, and the
    ranges the bounds rest on (``focused_bounds``, with ``reach``)."""
    ranges = graph_ranges(g, x0, eps, box)
    rows = margin_rows(y0, label, g.shape(g.output))
    bounds, lines = optimised_bounds(g, ranges, rows, x0, eps, box, memory)
    return focused_bounds(g, ranges, rows, x0, eps, margin_gaps(rows, y0), bounds, lines, box, memory, reach)


def margin_gaps(rows: Any, y0: Any) -> Any:
    """Each row's value at x0: y0_c − y0_j."""
    return rows.reshape(len(rows), -1) @ np.asarray(y0).reshape(-1)
