"""Matrix-free linear operators over flattened vectors, for the spectral solvers.

The only contract with an eigensolver is matvec/rmatvec (SciPy LinearOperator).
``masked_operator`` is R·A·D for one affine layer; ``masked_matrix`` forms the
same matrix explicitly, restricted to the rows and columns the masks keep.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator

from .backend import array_module
from .ir import Affine


class FlatOperator(LinearOperator):
    """A LinearOperator from batched per-sample functions f (forward) and g (adjoint)."""

    def __init__(self, forward: Any, adjoint: Any, in_shape: tuple, out_shape: tuple, dtype: Any):
        self._forward, self._adjoint = forward, adjoint
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        super().__init__(dtype=np.dtype(dtype), shape=(int(np.prod(out_shape)), int(np.prod(in_shape))))

    def _matvec(self, x: Any) -> Any:
        return self._forward(x.reshape(1, *self.in_shape)).reshape(-1)

    def _rmatvec(self, y: Any) -> Any:
        return self._adjoint(y.reshape(1, *self.out_shape)).reshape(-1)

    def _matmat(self, x: Any) -> Any:
        batch = x.T.reshape(x.shape[1], *self.in_shape)
        return self._forward(batch).reshape(x.shape[1], -1).T

    def _rmatmat(self, y: Any) -> Any:
        batch = y.T.reshape(y.shape[1], *self.out_shape)
        return self._adjoint(batch).reshape(y.shape[1], -1).T

    def gram(self) -> "FlatOperator":
        """AᵀA as an operator on the input space (symmetric, for Lanczos)."""
        return FlatOperator(lambda v: self._adjoint(self._forward(v)), lambda v: self._adjoint(self._forward(v)),
                            self.in_shape, self.in_shape, self.dtype)


def masked_operator(node: Affine, r: Any, d: Any) -> FlatOperator:
    """R·A·D of an affine layer, R = diag(r) on outputs and D = diag(d) on inputs."""
    return FlatOperator(
        lambda v: node.linear(v * d) * r,
        lambda u: node.adjoint(u * r) * d,
        node.in_shape,
        node.out_shape,
        node.weight.dtype if hasattr(node, "weight") else node.scale.dtype,
    )


def masked_matrix(node: Affine, r: Any, d: Any, chunk: int = 512) -> Any:
    """Dense R·A·D restricted to rows with r ≠ 0 and columns with d ≠ 0."""
    xp = array_module(r, d)
    cols = xp.flatnonzero(d.reshape(-1))
    rows = xp.flatnonzero(r.reshape(-1))
    n_in = int(np.prod(node.in_shape))
    blocks = []
    for start in range(0, len(cols), chunk):
        idx = cols[start : start + chunk]
        basis = xp.zeros((len(idx), n_in), dtype=r.dtype)
        basis[xp.arange(len(idx)), idx] = d.reshape(-1)[idx]
        out = node.linear(basis.reshape(len(idx), *node.in_shape)).reshape(len(idx), -1)
        blocks.append(out[:, rows] * r.reshape(-1)[rows])
    if not blocks:
        return xp.zeros((len(rows), 0), dtype=r.dtype)
    return xp.concatenate(blocks, axis=0).T
