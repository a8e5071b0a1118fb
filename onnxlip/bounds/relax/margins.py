"""The linear-relaxation margin test of the radius search on a DAG: radius ε holds when every
margin y_c − y_j (j ≠ c) has a positive lower bound over the ball (∩ box), on ranges from
``graph_ranges``, both on the relaxation graph (max-pools as ReLU trees, ``pool_tree``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import slopes
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


def margin_bounds(g: Graph, x0: Any, eps: float, y0: Any, label: int, box: InputBox | None = None,
                  optimise: bool = True) -> Any:
    """Lower bounds of every margin y_c − y_j over the ball of radius ε (∩ ``box``), with the
    lower lines optimised per margin (``slopes``) unless ``optimise`` is False."""
    g = relaxation_graph(g).graph
    ranges = graph_ranges(g, x0, eps, box)
    rows = margin_rows(y0, label, g.shape(g.output))
    choices = slopes.optimise(g, ranges, rows, x0, eps, stop_above=0.0, box=box) if optimise else None
    return lower_bounds(g, ranges, rows, x0, eps, choices, box)
