"""The nonlinear nodes: ReLU and max-pooling, with their JVP/VJP at a nominal input."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..linalg.backend import array_module
from ..linalg.pooling import maxpool2d, scatter_winners, select_winners
from ..linalg.windows import Window2d
from .base import NodeBase, Shape


@dataclass(frozen=True, eq=False, repr=False)
class Relu(NodeBase):
    """max(x, 0); its JVP at x0 keeps the units active at x0."""

    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "relu"

    def forward(self, x: Any) -> Any:
        return array_module(x).maximum(x, 0)

    def jvp(self, x0: Any, v: Any) -> Any:
        return v * (x0 > 0)

    vjp = jvp


@dataclass(frozen=True, eq=False, repr=False)
class MaxPool(NodeBase):
    """2-D max-pooling; its JVP at x0 selects each window's winner at x0."""

    window: Window2d
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "maxpool"

    def forward(self, x: Any) -> Any:
        return maxpool2d(x, self.window)[0]

    def mask(self, d: Any) -> Any:
        """Which outputs may change, given which inputs may (d ≥ 0)."""
        return maxpool2d(d, self.window)[0]

    def jvp(self, x0: Any, v: Any) -> Any:
        return select_winners(v, maxpool2d(x0, self.window)[1], self.window)

    def vjp(self, x0: Any, u: Any) -> Any:
        return scatter_winners(u, maxpool2d(x0, self.window)[1], self.window)
