"""Merge nodes: read several tensors (``merge = True``); linear, with ``adjoint(u)`` giving one
cotangent per input, an interval enclosure and ``spread``: how far the output moves given
how far each input does."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..linalg.backend import array_module
from .base import NodeBase, Shape, Step

ROUNDING_PAD = 1e-12  # relative widening of a computed sum's enclosure (≫ the unit roundoff)


class Merge(NodeBase):
    """A linear node of several inputs: back-substitution hands each input its part of Λ."""

    merge = True

    def back_step(self, lines: Any, lam: Any, mag: Any, choice: Any) -> tuple[Step, Any]:
        zero, parts = np.zeros(len(lam)), list(self.adjoint(lam))
        mags = [None] * len(parts) if mag is None else list(self.adjoint(mag))
        return (parts, zero, mags, None if mag is None else zero), None


@dataclass(frozen=True, eq=False, repr=False)
class Add(Merge):
    """The sum of two tensors of one shape: where the branches of a residual block meet."""

    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "add"

    def forward(self, a: Any, b: Any) -> Any:
        return a + b

    linear = forward

    def adjoint(self, u: Any) -> tuple[Any, Any]:
        return u, u

    def keeps_patches(self, lam: Any) -> bool:
        """Always: both inputs get the same patches."""
        return True

    @property
    def on_patches(self) -> bool:
        return len(self.in_shape) == 3

    def patch_pull_cost(self, size: Any, out_area: float) -> tuple[float, Any]:
        """(multiply-adds, patch size) of pulling a patch of ``size`` back: free, same size."""
        return 0.0, size

    def patch_back_step(self, lines: Any, lam: Any, mag: Any) -> tuple[Step, Any]:
        zero = np.zeros(len(lam))
        return ([lam, lam], zero, [mag, mag], None if mag is None else zero), None

    def interval(self, a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
        """Enclosure of the sum, widened for its rounding (a relative 1e-12 of the terms)."""
        xp = array_module(a[0])
        pad = ROUNDING_PAD * (xp.abs(a[0]) + xp.abs(a[1]) + xp.abs(b[0]) + xp.abs(b[1])) + 1e-300
        return a[0] + b[0] - pad, a[1] + b[1] + pad

    @staticmethod
    def spread(*changes: float) -> float:
        """Bound on how far the output moves from bounds on how far each input moves."""
        return sum(changes)


@dataclass(frozen=True, eq=False, repr=False)
class Concat(Merge):
    """Tensors joined along a sample axis (DenseNet/Inception-style merges)."""

    axis: int  # per-sample axis
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "concat"

    @property
    def in_shape(self) -> Shape:
        return self.in_shapes[0]

    def forward(self, *parts: Any) -> Any:
        return array_module(parts[0]).concatenate(parts, axis=self.axis + 1)

    linear = forward

    def adjoint(self, u: Any) -> tuple[Any, ...]:
        ends = np.cumsum([shape[self.axis] for shape in self.in_shapes])[:-1]
        return tuple(array_module(u).split(u, ends, axis=self.axis + 1))

    def describe(self) -> str:
        return f"concat axis {self.axis}"

    def interval(self, *parts: tuple[Any, Any]) -> tuple[Any, Any]:
        return self.forward(*(lo for lo, _ in parts)), self.forward(*(hi for _, hi in parts))

    @staticmethod
    def spread(*changes: float) -> float:
        """‖(Δa, Δb, …)‖₂ from bounds on each ‖Δ‖₂."""
        return math.sqrt(sum(c * c for c in changes))
