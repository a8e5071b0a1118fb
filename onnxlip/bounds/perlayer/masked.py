"""One affine layer masked on both sides, R·A·D (R = diag(r) on outputs, D = diag(d) on
inputs), as an operator for the eigensolver — through the layer's explicit matrix (dense or
sparse) when it has one, else matrix-free through its ``linear``/``adjoint`` — in float64, or
with ``single`` computed in float32 (half the time of a large layer's product) behind the
same float64 interface; and as a dense submatrix of the rows and columns the masks keep,
for exact norms.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from ...graph.nodes import Affine
from ...linalg.backend import array_module, to_numpy
from ...linalg.operators import FlatOperator, SinglePrecision, to_single


def masked_operator(node: Affine, r: Any, d: Any, single: bool = False) -> tuple[LinearOperator, Any, Any]:
    """R·A·D of an affine layer (R = diag(r) on outputs, D = diag(d) on inputs), the same
    computed in float32 when ``single`` (else None), and the input columns it acts on
    (None: all of them).

    With an explicit matrix, the rows and columns the masks zero out are sliced
    away first, so the eigensolver works in the smaller space.
    """
    matrix = node.explicit_matrix() if array_module(r) is np else None
    if matrix is None:
        op = _flat_masked(node, r, d)
        fast = SinglePrecision(_flat_masked(node.with_weights(to_single), to_single(r), to_single(d))) if single else None
        return op, fast, None
    block = sliced(matrix, r, d)
    fast = SinglePrecision(aslinearoperator(to_single(block))) if single else None
    return aslinearoperator(block), fast, np.flatnonzero(np.asarray(d).reshape(-1))


def _flat_masked(node: Affine, r: Any, d: Any) -> FlatOperator:
    return FlatOperator(lambda v: node.linear(v * d) * r, lambda u: node.adjoint(u * r) * d,
                        node.in_shape, node.out_shape, node.dtype, array_module(r, d))


def sliced(matrix: Any, r: Any, d: Any) -> Any:
    """R·A·D restricted to rows with r ≠ 0 and columns with d ≠ 0 (sparse stays sparse)."""
    r_flat, d_flat = np.asarray(r).reshape(-1), np.asarray(d).reshape(-1)
    rows, cols = np.flatnonzero(r_flat), np.flatnonzero(d_flat)
    if sp.issparse(matrix):
        block = matrix[rows][:, cols]
        return sp.diags(r_flat[rows]) @ block @ sp.diags(d_flat[cols])
    block = matrix[np.ix_(rows, cols)]  # one copy, scaled in place
    block *= r_flat[rows][:, None]
    block *= d_flat[cols][None, :]
    return block


def masked_submatrix(node: Affine, r: Any, d: Any) -> np.ndarray:
    """Dense R·A·D restricted to rows with r ≠ 0 and columns with d ≠ 0, in host memory."""
    xp = array_module(r, d)
    matrix = node.explicit_matrix() if xp is np else None
    if matrix is not None:
        block = sliced(matrix, r, d)
        return block.toarray() if sp.issparse(block) else block
    r_flat, d_flat = r.reshape(-1), d.reshape(-1)
    rows, cols = xp.flatnonzero(r_flat), xp.flatnonzero(d_flat)
    basis = xp.zeros((len(cols), d_flat.size))
    basis[xp.arange(len(cols)), cols] = d_flat[cols]
    block = node.linear(basis.reshape(len(cols), *node.in_shape)).reshape(len(cols), -1).T[rows]
    return to_numpy(block * r_flat[rows][:, None])
