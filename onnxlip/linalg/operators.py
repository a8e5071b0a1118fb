"""Linear operators over flattened vectors, for the spectral solvers.

The only contract with an eigensolver is matvec/rmatvec (SciPy LinearOperator); an
operator may run on NumPy or CuPy arrays, or in float32 behind a float64 interface.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .backend import all_blas_threads


class AnyBackend(LinearOperator):
    """A LinearOperator whose vectors may be NumPy or CuPy arrays (``xp``): on CuPy, matvec and
    rmatvec call the implementation directly, past SciPy's conversion to NumPy (which refuses
    CuPy) and its shape checks; on NumPy, SciPy's own."""

    xp: Any = np

    def matvec(self, x: Any) -> Any:
        return super().matvec(x) if self.xp is np else self._matvec(x)

    def rmatvec(self, y: Any) -> Any:
        return super().rmatvec(y) if self.xp is np else self._rmatvec(y)


class FlatOperator(AnyBackend):
    """A LinearOperator from batched per-sample functions (forward and adjoint)."""

    def __init__(self, forward: Any, adjoint: Any, in_shape: tuple, out_shape: tuple, dtype: Any, xp: Any = np):
        self._fwd, self._adj, self.xp = forward, adjoint, xp
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        super().__init__(dtype=np.dtype(dtype), shape=(int(np.prod(out_shape)), int(np.prod(in_shape))))

    def _matvec(self, x: Any) -> Any:
        return self._fwd(x.reshape(1, *self.in_shape)).reshape(-1)

    def _rmatvec(self, y: Any) -> Any:
        return self._adj(y.reshape(1, *self.out_shape)).reshape(-1)

    def _matmat(self, x: Any) -> Any:
        batch = x.T.reshape(x.shape[1], *self.in_shape)
        return self._fwd(batch).reshape(x.shape[1], -1).T

    def _rmatmat(self, y: Any) -> Any:
        batch = y.T.reshape(y.shape[1], *self.out_shape)
        return self._adj(batch).reshape(y.shape[1], -1).T


class SinglePrecision(AnyBackend):
    """``op`` (float32) seen as a float64 operator: vectors are rounded to float32 on the way
    in. Only large layers take this path, so their products also use the idle cores."""

    def __init__(self, op: LinearOperator):
        self._op, self.xp = op, getattr(op, "xp", np)
        super().__init__(dtype=np.dtype(np.float64), shape=op.shape)

    def _matvec(self, x: Any) -> Any:
        with all_blas_threads():
            return self._op.matvec(x.astype(np.float32)).astype(np.float64)

    def _rmatvec(self, y: Any) -> Any:
        with all_blas_threads():
            return self._op.rmatvec(y.astype(np.float32)).astype(np.float64)


def to_single(a: Any) -> Any:
    return a.astype(np.float32)
