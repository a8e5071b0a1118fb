"""One implementation for every one-input node that is linear up to an offset (dense, conv,
scale, reshape, transpose, pad): y = A x + b with A applied matrix-free (``linear``, its
``adjoint``). Its JVP and VJP are A and Aᵀ at any point, so tight mode's centre chain needs no
secant for it, and its back-substitution step is exact: c += Λ·b, Λ ← Λ·A."""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import NodeBase, Step, row_sums


class Linear(NodeBase):
    """Shared behaviour of one-input linear (or affine) nodes."""

    def jvp(self, a: Any, v: Any) -> Any:
        return self.linear(v)

    def vjp(self, a: Any, u: Any) -> Any:
        return self.adjoint(u)

    def factors_at(self, a: Any) -> None:
        """No factors: the map is the same at every point."""
        return None

    @property
    def offset(self) -> Any:
        """The output at a zero input (the bias, batch-1 shaped; zero for nodes that move values)."""
        return self.cached("offset", lambda: self.forward(np.zeros((1, *self.in_shape))))

    def rows_adjoint(self, lam: Any) -> Any:
        """Aᵀ·Λ for a batch of back-substitution rows (a convolution picks its faster path)."""
        return self.adjoint(lam)

    def back_step(self, lines: Any, lam: Any, mag: Any, choice: Any) -> tuple[Step, Any]:
        """Exact: Λ·(A z + b) = (AᵀΛ)·z + Λ·b; the magnitudes pass through |A| and |b|."""
        bias = self.offset
        mag_in = mag_const = None
        if mag is not None:
            mag_const = row_sums(mag * np.abs(bias))
            mag_in = self.with_weights(np.abs).rows_adjoint(mag)
        return ([self.rows_adjoint(lam)], row_sums(lam * bias), [mag_in], mag_const), None
