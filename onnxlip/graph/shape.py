"""Nodes that only move values: reshape, transpose, zero padding (linear, no bias, and
monotone: their interval maps the box's ends exactly)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..linalg.backend import array_module
from .base import LocalConstant, Monotone, Shape
from .linear import Linear


class Mover(Monotone, Linear):
    """A linear node that only moves values (entries of A are 0 or 1, one per row at most)."""

    def lipschitz_constant(self) -> float:
        return 1.0

    norm_bound = lipschitz_constant  # exact

    def local_constant(self, x0: Any, d: Any, ball: float, box: tuple[Any, Any] | None) -> LocalConstant:
        """1-Lipschitz; the inputs that may change move with the values."""
        return LocalConstant(1.0, self.linear(d[None])[0])


@dataclass(frozen=True, eq=False, repr=False)
class Reshape(Mover):
    """Row-major reshape (Flatten, Reshape, Squeeze, Unsqueeze)."""

    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "reshape"

    def linear(self, v: Any) -> Any:
        return v.reshape(v.shape[0], *self.out_shape)

    def adjoint(self, u: Any) -> Any:
        return u.reshape(u.shape[0], *self.in_shape)

    forward = linear


@dataclass(frozen=True, eq=False, repr=False)
class Transpose(Mover):
    """Axis permutation of a sample (batch axis stays first)."""

    perm: tuple[int, ...]
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "transpose"

    def linear(self, v: Any) -> Any:
        return v.transpose(0, *(p + 1 for p in self.perm))

    def adjoint(self, u: Any) -> Any:
        inverse = np.argsort(self.perm)
        return u.transpose(0, *(int(p) + 1 for p in inverse))

    forward = linear

    def describe(self) -> str:
        return f"transpose {self.perm}"


@dataclass(frozen=True, eq=False, repr=False)
class Pad(Mover):
    """Zero padding; ``pads`` is ((begin, end), ...) per sample axis."""

    pads: tuple[tuple[int, int], ...]
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "pad"

    def linear(self, v: Any) -> Any:
        return array_module(v).pad(v, ((0, 0), *self.pads))

    def adjoint(self, u: Any) -> Any:
        index = tuple(slice(b, b + n) for (b, _), n in zip(self.pads, self.in_shape))
        return u[(slice(None), *index)]

    forward = linear
