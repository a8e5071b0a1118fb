"""Provable norms of tight-mode segments (``tight_bound(..., certified=True)``).

A segment matrix M = Y·C[a,b)·diag(col) is formed in floating point by passes
through the nodes. Every value it holds is a sum of products of the nodes'
entries, so with N the total count of terms along the chain (an affine node's
fan-in, a max-pool secant's taps, 1 for a product by a slope),

    |fl(M) − M| ≤ γ_N · |Y|·|C[a,b)|·|col|      (γ_N = N·u / (1 − N·u)),

and ‖|A|‖₂ ≤ sqrt(max row sum · max column sum) for a non-negative A. The row and
column sums of |Y|·|C|·|col| come from one pass each with |W| (centre secants and
Jacobian masks are non-negative already). So:
- explicit segments: ‖M‖₂ ≤ exact_certified(fl(M)) + γ_N·sqrt(r·c);
- segments too large to form: the smaller of ‖|Y||C||col|‖₂ ≤ sqrt(r·c), rounded up, and
  the product of the nodes' certified norms (affine: ``certified_norm`` unmasked; centre
  slopes: their largest; max-pool: √(windows per element)).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from scipy.sparse.linalg import aslinearoperator

from ..perlayer.certified import EIGH_FIRST_SIDE, certified_norm, exact_certified
from ...linalg.cholesky import certify_norm
from ...linalg.rounding import gamma
from ...linalg.spectral import top_eigen
from .segments import Segments
from .stacked import GRAM_TOL


def node_terms(node: Any, secant: Any) -> int:
    """Most products summed into one value when the node (or its secant) is applied either way."""
    if secant is None:
        return node.fan_in()  # ReLU masks, winner selection, reshapes: exact
    return secant.terms()


def chain_terms(segments: Segments, a: int, b: int) -> int:
    return sum(node_terms(segments.net.nodes[k], segments.secants.get(k)) for k in range(a, b)) + 2


def abs_forward(segments: Segments, a: int, b: int, v: Any) -> Any:
    """|C[a,b)|·v for v ≥ 0."""
    for k in range(a, b):
        sec = segments.secants.get(k)
        v = sec.jvp(v) if sec is not None else segments.net.nodes[k].with_weights(np.abs).jvp(segments.acts[k], v)
    return v


def abs_backward(segments: Segments, a: int, b: int, u: Any) -> Any:
    """|C[a,b)|ᵀ·u for u ≥ 0."""
    for k in reversed(range(a, b)):
        sec = segments.secants.get(k)
        u = sec.vjp(u) if sec is not None else segments.net.nodes[k].with_weights(np.abs).vjp(segments.acts[k], u)
    return u


def abs_sums(segments: Segments, a: int, b: int, col: Any, row: Any = None, left: Any = None) -> tuple[float, float]:
    """Largest row and column sums of |Y|·|C[a,b)|·|col| (Y = rows ``left``, diag(row), or I)."""
    forward = abs_forward(segments, a, b, np.abs(col))
    if left is not None:
        flat = np.abs(left).reshape(len(left), -1)
        rows = flat @ forward.reshape(-1)
        ones = flat.sum(axis=0).reshape(1, *segments.shape_at(b))
    else:
        rows = forward if row is None else np.abs(row) * forward
        ones = np.ones((1, *segments.shape_at(b))) if row is None else np.abs(row)
    cols = np.abs(col) * abs_backward(segments, a, b, ones)
    return float(np.max(rows, initial=0.0)), float(np.max(cols, initial=0.0))


def node_norm(node: Any, secant: Any) -> float:
    """A provable bound on the norm of one node of C (its centre secant where one is set)."""
    if secant is not None:
        return secant.norm_bound()
    if node.weighted:  # unmasked: the same for every segment
        return node.cached("certified_norm",
                           lambda: certified_norm(node, np.ones(node.out_shape), np.ones(node.in_shape)).value)
    return node.norm_bound()  # ReLU masks, winner selection, moves


def product_bound(segments: Segments, a: int, b: int, col: Any, row: Any, left: Any) -> float:
    """‖Y‖·Π‖node‖·max|col|, with ‖Y‖ ≤ its Frobenius norm (rows) or max|row|."""
    outer = (np.linalg.norm(left) if left is not None else 1.0 if row is None else float(np.max(np.abs(row))))
    inner = np.prod([node_norm(segments.net.nodes[k], segments.secants.get(k)) for k in range(a, b)])
    return float(outer * inner * np.max(np.abs(col))) * (1 + 1e-12)


# Row/column sums below this may have lost digits to underflow: use the product bound only.
UNDERFLOW_GUARD = 1e-280
# Extra roundings when a formed segment is scaled into the stacked Gram matrix (w·M/√p).
STACKING_TERMS = 3


def certified_segment_norm(segments: Segments, a: int, b: int, col: Any, row: Any, left: Any,
                           matrix: Any) -> tuple[float, float]:
    """(Provable ‖M‖₂, bound on ‖fl(w·M/√p) − w·M/√p‖₂ / (w/√p)) for a segment; ``matrix`` is
    fl(M) or None."""
    r, c = abs_sums(segments, a, b, col, row, left)
    if min(r, c) < UNDERFLOW_GUARD:
        return product_bound(segments, a, b, col, row, left), 0.0
    n = chain_terms(segments, a, b)
    sums = n + int(np.prod(segments.shape_at(b))) + (0 if left is None else len(left))
    magnitude = float(np.sqrt(r * c)) * (1 + 2 * gamma(sums))  # the sums themselves rounded up
    if matrix is None:
        return min(magnitude, product_bound(segments, a, b, col, row, left)), 0.0
    error = gamma(n + STACKING_TERMS) * magnitude
    return min(proven_norm(matrix) + error, magnitude), error


def proven_norm(matrix: Any) -> float:
    """Provable ‖M‖₂ of a formed matrix: a Lanczos estimate on its smaller Gram matrix, proven
    just above by a Cholesky factorization (``certify_norm``) — a third of an eigensolver's
    work —; LAPACK's eigensolver (``exact_certified``) on small matrices or when the proof fails."""
    if min(matrix.shape) <= EIGH_FIRST_SIDE:
        return exact_certified(matrix)
    proven = certify_norm(matrix, lambda gram: float(np.sqrt(top_eigen(aslinearoperator(gram), None, GRAM_TOL)[0])))
    return exact_certified(matrix) if proven is None else proven
