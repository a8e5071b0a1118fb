"""Affine nodes: y = A x + b as a matrix-free linear part (``linear``, its adjoint) and a bias."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..linalg.conv import conv2d, conv2d_adjoint
from ..linalg.conv_matrix import conv_as_sparse
from ..linalg.windows import Window2d
from .base import NodeBase, Shape


class Biased(NodeBase):
    """An affine node whose output is its linear part plus ``bias``."""

    def forward(self, x: Any) -> Any:
        return self.linear(x) + self.bias


@dataclass(frozen=True, eq=False, repr=False)
class Dense(Biased):
    """y = W x + b on flat vectors; W is (out, in)."""

    weight: Any
    bias: Any
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "dense"

    def linear(self, v: Any) -> Any:
        return v @ self.weight.T

    def adjoint(self, u: Any) -> Any:
        return u @ self.weight


@dataclass(frozen=True, eq=False, repr=False)
class Conv(Biased):
    """2-D convolution; ``bias`` broadcasts to out_shape ((M,1,1) or (M,Ho,Wo))."""

    weight: Any
    bias: Any
    window: Window2d
    groups: int
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "conv"

    @cached_property
    def matrix(self) -> Any:
        """The layer as a sparse matrix when that is cheaper than a strided convolution (SciPy:
        host weights only; a GPU copy of the layer convolves)."""
        return conv_as_sparse(self) if isinstance(self.weight, np.ndarray) else None

    def linear(self, v: Any) -> Any:
        if isinstance(v, np.ndarray) and self.matrix is not None:
            return (self.matrix @ v.reshape(len(v), -1).T).T.reshape(len(v), *self.out_shape)
        return conv2d(v, self.weight, self.window, self.groups)

    def adjoint(self, u: Any) -> Any:
        if isinstance(u, np.ndarray) and self.matrix is not None:
            return (self.matrix.T @ u.reshape(len(u), -1).T).T.reshape(len(u), *self.in_shape)
        return conv2d_adjoint(u, self.weight, self.window, self.groups)


@dataclass(frozen=True, eq=False, repr=False)
class Scale(NodeBase):
    """Elementwise affine y = scale·x + shift (normalization, unfolded BatchNorm)."""

    scale: Any
    shift: Any
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "scale"

    def linear(self, v: Any) -> Any:
        return v * self.scale

    def adjoint(self, u: Any) -> Any:
        return u * self.scale

    def forward(self, x: Any) -> Any:
        return x * self.scale + self.shift
