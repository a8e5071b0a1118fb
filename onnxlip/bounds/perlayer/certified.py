"""Provable upper bounds on ‖R·A·D‖₂ for certified mode (``--certified``).

Iterative eigensolvers approach the norm from below, so certified mode uses:
- exact: LAPACK on the masked submatrix's Gram matrix, inflated by a bound on the
  rounding of forming and diagonalizing it (used whenever the matrix fits);
- circulant (convolutions): a zero-padded, strided convolution is a submatrix of a
  circular convolution on a large enough grid, whose norm is exactly the largest
  singular value of the kernel's Fourier transform over all frequencies (Sedghi et
  al. 2019); with |r|, |d| ≤ 1 it bounds the masked operator too;
- cholesky: the Lanczos estimate, proven (just above it) by a Cholesky factorization
  of μI − G (``cholesky_certificate``); used when the Gram matrix fits;
- l1-linf: ‖M‖₂ ≤ sqrt(‖M‖₁·‖M‖∞) for the masked operator, from one pass of |A|.
The first that applies of exact (small), cholesky, exact (medium), then the smaller of
circulant and l1-linf; each layer says which.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ...linalg.cholesky import certify_norm, smaller_gram, unit_scaled
from ...linalg.conv_matrix import conv_as_sparse
from ...graph.nodes import Affine, Conv
from .masked import masked_submatrix, sliced
from ...linalg.rounding import UNDERFLOW, UNIT_ROUNDOFF
from ...linalg.spectral import NormResult

CERTIFIED_EXACT_SIDE = 3100  # largest min(rows, cols) solved exactly in certified mode
EIGH_FIRST_SIDE = 512  # below this, the exact eigensolver is as cheap as the Cholesky certificate
CERTIFIED_EXACT_ENTRIES = 6e7
CERTIFIED_CONV_NNZ = 1e7  # largest convolution built as a sparse matrix for certification (~1 GB to build)


def exact_certified(m: Any) -> float:
    """‖m‖₂ (dense or sparse) from LAPACK on the smaller Gram matrix, plus a bound on
    rounding: forming it errs by ≤ k·u·‖M‖_F², a backward-stable eigensolver by
    ≤ c·n·u·‖G‖ (c = 8 here, generous)."""
    m, shift = unit_scaled(m)  # float64, as the rounding bound assumes; away from underflow
    if shift is None:
        return 0.0 if np.all(np.isfinite(m.data if sp.issparse(m) else m)) else float("inf")
    k, n = max(m.shape), min(m.shape)
    gram = smaller_gram(m)
    gram = gram.toarray() if sp.issparse(gram) else gram
    top = scipy.linalg.eigh(gram, eigvals_only=True, subset_by_index=[n - 1, n - 1])[0]
    frobenius = float(m.multiply(m).sum()) if sp.issparse(m) else float(np.sum(m * m))
    rounding = (k + 8 * n) * UNIT_ROUNDOFF * frobenius + (k + 8 * n) * n * UNDERFLOW
    return float(np.ldexp(np.sqrt(max(top, 0.0) + rounding), -shift)) * (1 + 1e-15)


def circulant_bound(node: Conv) -> float:
    """Norm of the circular convolution that contains this convolution (all frequencies exact)."""
    m, cg, kh, kw = node.weight.shape
    (dh, dw), win = node.window.dilations, node.window
    dilated = np.zeros((m, cg, dh * (kh - 1) + 1, dw * (kw - 1) + 1))
    dilated[:, :, ::dh, ::dw] = node.weight
    grid = tuple(win.padded_hw[a] + dilated.shape[2 + a] for a in range(2))
    spectrum = np.fft.fft2(dilated, s=grid)  # (M, Cg, N1, N2)
    g = node.groups
    blocks = spectrum.reshape(g, m // g, cg, -1).transpose(0, 3, 1, 2)  # (g, freq, M/g, Cg)
    top = np.linalg.svd(blocks, compute_uv=False)[..., 0].max()
    return float(top) * (1 + 1e-9)  # FFT rounding is ~1e-13 relative


def l1_linf_bound(node: Affine, r: Any, d: Any) -> float:
    """sqrt(max row sum × max column sum) of |R·A·D|."""
    absolute = node.with_weights(np.abs)
    rows = np.abs(r) * absolute.linear(np.abs(d)[None])[0]
    cols = np.abs(d) * absolute.adjoint(np.abs(r)[None])[0]
    return float(np.sqrt(rows.max() * cols.max())) * (1 + 1e-12)


def certified_norm(node: Affine, r: Any, d: Any, estimate: float | None = None, quick: bool = False) -> NormResult:
    """A provable upper bound on ‖R·A·D‖₂ with the way it was obtained; ``estimate`` (a
    Lanczos value) lets the Cholesky certificate prove a bound just above it. With ``quick``
    only matrices of side ≤ CERTIFIED_EXACT_SIDE are formed and proven, larger
    ones get the FFT or l1-linf bound (fast, a few percent looser on convolutions)."""
    closed = node.closed_norm(r, d)
    if closed is not None:
        return NormResult(closed, "closed-form")
    rows, cols = int(np.count_nonzero(r)), int(np.count_nonzero(d))
    if rows == 0 or cols == 0:
        return NormResult(0.0, "exact")
    side = min(rows, cols)
    formed = side <= CERTIFIED_EXACT_SIDE or (estimate is not None and not quick)
    matrix = certifiable_matrix(node, r, d) if formed else None
    if matrix is not None and side <= EIGH_FIRST_SIDE:
        return NormResult(exact_certified(matrix), "exact")
    if matrix is not None and estimate is not None:
        proven = certify_norm(matrix, estimate)
        if proven is not None:
            return NormResult(proven, "cholesky")
    if matrix is not None and side <= CERTIFIED_EXACT_SIDE:
        return NormResult(exact_certified(matrix), "exact")
    candidates = [(l1_linf_bound(node, r, d), "l1-linf")]
    if isinstance(node, Conv):
        candidates.append((circulant_bound(node), "circulant"))
    value, method = min(candidates)
    return NormResult(value, method)


def certifiable_matrix(node: Affine, r: Any, d: Any) -> Any:
    """The sliced R·A·D (sparse for convolutions, dense for dense layers), or None when too big."""
    if isinstance(node, Conv):
        matrix = node.cached("certified_matrix",  # built once per layer, not per ε
                             lambda: node.matrix if node.matrix is not None else conv_as_sparse(node, CERTIFIED_CONV_NNZ))
        return None if matrix is None else sliced(matrix, r, d).tocsr()
    if np.count_nonzero(r) * np.count_nonzero(d) > CERTIFIED_EXACT_ENTRIES:
        return None
    return masked_submatrix(node, r, d)
