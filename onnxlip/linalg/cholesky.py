"""A posteriori certificate for a Lanczos estimate of ‖M‖₂, by Cholesky factorization.

Lanczos approaches ‖M‖₂² from below. To prove that μ is an upper bound, it suffices
that μI − G is positive definite, G the smaller Gram matrix of M (MᵀM or MMᵀ): a
Cholesky factorization that runs to completion shows it. A masked convolution's Gram
matrix is sparse and, once its rows and columns are reordered by reverse
Cuthill–McKee, banded (CIFAR's 25063-side Gram: bandwidth 3487), so LAPACK's banded
Cholesky costs n·b² flops where an eigendecomposition would cost n³ and a dense n×n
array. Starting from μ a hair above the estimate, the certified value exceeds the
estimate by about 1e-6 relative; if the factorization fails (Lanczos stopped on a
lower eigenvalue), a larger μ is tried, and then the caller falls back to other bounds.

Rounding is accounted for, so the result is a proof about the exact matrix:
- forming G: each entry is a sum of at most k products, so ‖G̃ − G‖₂ ≤ γ_k·‖|M|‖₂²
  ≤ γ_k·‖M‖₁·‖M‖∞ (absolute row and column sums);
- the diagonal shift μ − g_ii is rounded once: ≤ u·(μ + max g_ii);
- Cholesky of a matrix A with bandwidth b that completes in floating point gives
  R̃ᵀR̃ = A + ΔA with |ΔA| ≤ γ_{b+2}|R̃ᵀ||R̃| (Demmel 1989), so λ_min(A) ≥ −γ·trace(A)/(1−γ);
  γ_{2b+2} is used to cover blocked LAPACK kernels;
- the matrix is converted to float64 and scaled by a power of two (both exact) so that its
  largest entry is about 1, and an absolute term covers any underflow that remains (Rump);
- M itself was formed as r_i·a_ij·d_j: entrywise within 2u of the exact masked matrix.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from .rounding import UNDERFLOW, UNIT_ROUNDOFF, gamma

# μ = θ·(1 + step), tried in order: the first suffices when Lanczos found the top eigenvalue.
SHIFTS = (1e-6, 1e-3)
BAND_ENTRIES = 1.2e8  # largest banded array (n × (b+1) doubles, ~1 GB)
DENSE_SIDE = 6000  # largest dense Gram matrix factorized
DENSE_FACTOR_SIDE = 3100  # largest sparse Gram matrix factorized as a dense one (~1e10 multiply-adds)


def smaller_gram(m: Any) -> Any:
    """MᵀM or MMᵀ, whichever is smaller (sparse stays sparse)."""
    gram = m.T @ m if m.shape[1] <= m.shape[0] else m @ m.T
    return gram.tocsr() if sp.issparse(gram) else gram


def abs_sums(m: Any) -> tuple[float, float, int]:
    """Largest absolute column sum, row sum, and most stored entries in a row or column."""
    if sp.issparse(m):
        a = abs(sp.csr_matrix(m))
        counts = max(int(np.diff(a.indptr).max(initial=0)), int(np.diff(a.tocsc().indptr).max(initial=0)))
        return float(a.sum(axis=0).max()), float(a.sum(axis=1).max()), counts
    a = np.abs(m)
    return float(a.sum(axis=0).max()), float(a.sum(axis=1).max()), max(m.shape)


def banded_lower(gram: sp.csr_matrix) -> tuple[np.ndarray, int] | None:
    """−G in LAPACK's lower banded storage after an RCM reordering, and its bandwidth;
    None when the band does not fit in BAND_ENTRIES."""
    perm = reverse_cuthill_mckee(gram, symmetric_mode=True)
    g = gram[perm][:, perm].tocoo()
    lower = g.row >= g.col
    offset = (g.row - g.col)[lower]
    band = int(offset.max(initial=0))
    n = gram.shape[0]
    if n * (band + 1) > BAND_ENTRIES:
        return None
    ab = np.zeros((band + 1, n))
    ab[offset, g.col[lower]] = -g.data[lower]
    return ab, band


def positive_definite(neg_gram: Any, mu: float, banded: bool) -> bool:
    """Whether Cholesky of μI − G completes (``neg_gram`` holds −G, banded or dense)."""
    a = neg_gram.copy()
    if banded:
        a[0] += mu
    else:
        a[np.diag_indices_from(a)] += mu
    try:
        if banded:
            scipy.linalg.cholesky_banded(a, lower=True, overwrite_ab=True, check_finite=False)
        else:
            scipy.linalg.cholesky(a, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        return False
    return True


def certify_norm(m: Any, estimate: float | Callable[[Any], float]) -> float | None:
    """A proven upper bound on ‖m‖₂ close to ``estimate`` (a Lanczos value, or a function that
    finds one from the Gram matrix, which is then formed once), or None when the Gram matrix is
    too large to factorize or no tried μ is proven."""
    n = min(m.shape)
    if n == 0:
        return 0.0
    if (not sp.issparse(m) and n > DENSE_SIDE) or not (callable(estimate) or np.isfinite(estimate) and estimate > 0):
        return None
    m, shift = unit_scaled(m)
    if shift is None:
        return None
    gram = smaller_gram(m)
    scaled = estimate(gram) if callable(estimate) else float(np.ldexp(estimate, shift))
    if not (np.isfinite(scaled) and scaled > 0):
        return None
    proven = _certify_scaled(m, gram, scaled)
    return None if proven is None else float(np.ldexp(proven, -shift)) * (1 + 1e-15)


def unit_scaled(m: Any) -> tuple[Any, int | None]:
    """m in float64 times 2^shift, which brings its largest entry near 1 (exact, and products
    stay clear of underflow), with that shift; None for a zero or non-finite m."""
    m = m.astype(np.float64)
    top = float(abs(m).max())
    if not np.isfinite(top) or top == 0:
        return m, None
    shift = -int(np.floor(np.log2(top)))
    if sp.issparse(m):
        m = m.copy()
        m.data = np.ldexp(m.data, shift)
        return m, shift
    return np.ldexp(m, shift), shift


def _certify_scaled(m: Any, gram: Any, estimate: float) -> float | None:
    col_sum, row_sum, terms = abs_sums(m)
    top = gram_top_bound(gram, estimate * estimate, gamma(terms) * col_sum * row_sum, terms)
    if top is None:
        return None
    masking = 2.01 * UNIT_ROUNDOFF * np.sqrt(col_sum * row_sum)
    proven = float(np.sqrt(top) + masking) * (1 + 1e-12)
    return proven if np.isfinite(proven) else None


def gram_top_bound(gram: Any, theta: float, forming: float, terms: int) -> float | None:
    """A proven upper bound on λ_max(G) from a computed Gram matrix G̃ (dense, or sparse: then
    banded after RCM), with ‖G̃ − G‖₂ ≤ ``forming`` and at most ``terms`` products summed per
    entry: μ = θ·(1 + step) for each of SHIFTS, proven by a Cholesky factorization of μI − G̃
    that completes; None when none does (θ was not near the top) or the matrix is too large."""
    n = gram.shape[0]
    found = banded_lower(gram) if sp.issparse(gram) else None
    if found is None and sp.issparse(gram):
        if n > DENSE_FACTOR_SIDE:
            return None
        gram = gram.toarray()  # a band too wide to store: the dense factorization costs no more
    if found is not None:
        neg_gram, band = found
        diag_max = float(-neg_gram[0].min(initial=0.0))
    else:
        neg_gram, band = -gram, n - 1
        diag_max = float(np.max(np.diag(gram), initial=0.0))
    for step in SHIFTS:
        mu = theta * (1 + step)
        if positive_definite(neg_gram, mu, found is not None):
            g = gamma(2 * band + 2)
            underflow = (terms + 2 * band + 4) * n * UNDERFLOW  # Rump's absolute term
            return mu + UNIT_ROUNDOFF * (mu + diag_max) + g * n * mu / (1 - g) + forming + underflow
    return None
