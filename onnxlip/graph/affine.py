"""Affine nodes: y = A x + b as a matrix-free linear part (``linear``, its adjoint) and a bias;
``with_weights`` gives the same map with a function applied to every weight (|A| for interval
bounds, A∘A for masked row norms)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from ..linalg.backend import array_module
from ..linalg.conv import conv2d, conv2d_adjoint
from ..linalg.conv_matrix import conv_as_sparse
from ..linalg.patches import Patches, grown, pull_through_window, push_through_window
from ..linalg.rounding import gamma
from ..linalg.windows import Window2d
from .base import OnPatches, Shape, Step, patch_step, row_dot, short_text
from .linear import Linear

MANY_ROWS = 32  # back-substitution rows from which a convolution's GEMM beats its sparse matrix


class Affine(Linear):
    """An affine node with weights: its interval is the box's centre mapped ± |A|·half-width."""

    weighted = True

    def mapped(self, fn: Callable[[Any], Any]) -> "Affine":
        raise NotImplementedError

    def explicit_matrix(self) -> Any:
        """The (out × in) matrix, dense or sparse, or None when it is too large to store."""
        raise NotImplementedError

    def closed_norm(self, r: Any, d: Any) -> float | None:
        """‖R A D‖₂ in closed form where the matrix's structure gives it (else None)."""
        return None

    def masked_flops(self, rows: int, cols: int) -> float:
        """Multiply-adds of one product with A masked to ``rows`` outputs and ``cols`` inputs:
        the matrix is sliced to them."""
        return float(rows * cols)

    def with_weights(self, fn: Callable[[Any], Any]) -> "Affine":
        """The linear part with ``fn`` applied to each weight, and no bias; kept on the node per
        ``fn`` (row norms and interval bounds map the same weights in every bound)."""
        return self.cached(("with_weights", fn), lambda: self.mapped(fn))

    def interval(self, lo: Any, hi: Any) -> tuple[Any, Any]:
        """Enclosure widened for rounding by γ_N times the same computation in absolute values
        (N its fan-in and the bias)."""
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        magnitude = self.with_weights(np.abs)
        radius = magnitude.linear(half)
        pad = gamma(self.fan_in() + 4) * (magnitude.linear(np.abs(centre) + half) + np.abs(self.offset)) + 1e-300
        return self.forward(centre) - radius - pad, self.forward(centre) + radius + pad

    def row_norms(self, d: Any) -> Any:
        """‖a_iᵀ D‖₂ for every output i (per-sample shape), 0/1 mask d: the map with every weight
        squared applied to d, in one pass. For a fractional d, sqrt(Σ_j A_ij² d_j)."""
        xp = array_module(d)
        squared = self.with_weights(xp.square).linear(d[None])[0]
        return xp.sqrt(xp.maximum(squared, 0))

    def ball_interval(self, y0: Any, lo: Any, hi: Any, rho: float) -> tuple[Any, Any]:
        """Enclosure for inputs in the box [lo, hi] ∩ the ball of radius ρ around the nominal
        input (only inputs with lo < hi moving), batch-1: the intersection of the ball's
        y0 ± ρ·‖a_iᵀD‖₂ (the paper's) and the box's A·c + b ± |A|·r (IBP), unwidened."""
        xp = array_module(y0)
        moving = (hi > lo).astype(y0.dtype)[0]
        spread = rho * self.row_norms(moving)[None]
        centre, radius = (lo + hi) / 2, (hi - lo) / 2
        ibp_mid = self.forward(centre)
        ibp_rad = self.with_weights(xp.abs).linear(radius)
        return xp.maximum(y0 - spread, ibp_mid - ibp_rad), xp.minimum(y0 + spread, ibp_mid + ibp_rad)


class Weighted(Affine):
    """An affine node whose output is its linear part plus ``bias``."""

    def forward(self, x: Any) -> Any:
        return self.linear(x) + self.bias

    def flops(self) -> int:
        return int(np.prod(self.out_shape)) * int(np.prod(self.weight.shape[1:]))

    def mapped(self, fn: Callable[[Any], Any]) -> "Weighted":
        return dataclasses.replace(self, weight=fn(self.weight), bias=self.bias * 0)

    @property
    def dtype(self) -> Any:
        return self.weight.dtype


@dataclass(frozen=True, eq=False, repr=False)
class Dense(Weighted):
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

    def fan_in(self) -> int:
        return max(self.weight.shape)

    def explicit_matrix(self) -> Any:
        return self.weight

    def describe(self) -> str:
        return f"dense {self.weight.shape[1]}->{self.weight.shape[0]}"


@dataclass(frozen=True, eq=False, repr=False)
class Conv(OnPatches, Weighted):
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

    def rows_adjoint(self, lam: Any) -> Any:
        """Many rows go faster as one GEMM per kernel tap than through the sparse matrix."""
        if len(lam) > MANY_ROWS:
            return conv2d_adjoint(lam, self.weight, self.window, self.groups)
        return self.adjoint(lam)

    def pull_patches(self, p: Patches, factors: Any = None) -> Patches:
        return pull_through_window(p, self.window, self.in_shape[1:],
                                   lambda data, win: conv2d_adjoint(data, self.weight, win, self.groups))

    def push_patches(self, p: Patches, factors: Any = None) -> Patches:
        return push_through_window(p, self.window, self.out_shape[1:],
                                   lambda framed, win, out: conv2d(framed, self.weight, win, self.groups))

    def patch_pull_cost(self, size: Any, out_area: float) -> tuple[float, Any]:
        """(multiply-adds, patch size) of pulling a patch of ``size`` back: its share of the map."""
        return float(size.prod()) * self.flops() / out_area, grown(size, self.window)

    def patch_back_step(self, lines: Any, lam: Patches, mag: Patches | None) -> tuple[Step, Any]:
        bias = lam.gather(self.offset)
        return patch_step(self.pull_patches(lam), row_dot(lam.data, bias),
                          lambda m: self.with_weights(np.abs).pull_patches(m), lambda: np.abs(bias), mag)

    def mapped(self, fn: Callable[[Any], Any]) -> "Conv":
        mapped = super().mapped(fn)
        if self.matrix is not None:  # reuse the sparsity pattern
            matrix = self.matrix.copy()
            matrix.data = fn(matrix.data)
            mapped.__dict__["matrix"] = matrix
        return mapped

    def fan_in(self) -> int:
        m, cg, kh, kw = self.weight.shape
        return max(cg, m // self.groups) * kh * kw

    def explicit_matrix(self) -> Any:
        return self.matrix

    def masked_flops(self, rows: int, cols: int) -> float:
        """A convolution runs whole, whatever the masks."""
        return float(self.flops())

    def describe(self) -> str:
        w = self.window
        extras = "".join(f" {tag}{short_text(v)}" for tag, v, plain in (
            ("s", w.strides, (1, 1)), ("p", w.pads, (0, 0, 0, 0)), ("d", w.dilations, (1, 1)), ("g", self.groups, 1))
            if v != plain)
        return f"conv {self.weight.shape[0]}x{self.weight.shape[1]}x{w.kernel[0]}x{w.kernel[1]}{extras}"


@dataclass(frozen=True, eq=False, repr=False)
class Scale(Affine):
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

    def mapped(self, fn: Callable[[Any], Any]) -> "Scale":
        return dataclasses.replace(self, scale=fn(self.scale), shift=self.shift * 0)

    def fan_in(self) -> int:
        return 1

    @property
    def dtype(self) -> Any:
        return self.scale.dtype

    def explicit_matrix(self) -> Any:
        return sp.diags(np.broadcast_to(self.scale, self.in_shape).reshape(-1))

    def closed_norm(self, r: Any, d: Any) -> float:
        """Diagonal: the largest |r·s·d|."""
        xp = array_module(r, d)
        return float(xp.max(xp.abs(r * self.scale * d)))
