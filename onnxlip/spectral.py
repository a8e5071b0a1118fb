"""Spectral norms ‖A‖₂ of explicit matrices and of matrix-free operators.

Exact: eigenvalues of the smaller Gram matrix (LAPACK), used when it is small.
Iterative: Lanczos (scipy ``eigsh``) on AᵀA, run to a relative residual tolerance,
never a fixed step count. ARPACK stops when ‖AᵀA·v − θv‖ ≤ tol·θ, so an eigenvalue of
AᵀA lies within tol·θ of the Ritz value θ (Krylov–Weinstein): the norm is reported as
sqrt(θ·(1 + tol)). It stays an estimate: nothing proves that eigenvalue is the top one.
Convolutions have clusters of near-equal top eigenvalues, and a loose tolerance can stop
on the wrong member (AlexNet's first layer: 0.11% low at tol 1e-5, right at 1e-6), so
the per-layer method keeps a tight tolerance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from .backend import to_numpy

LANCZOS_TOL = 1e-7
# Form the matrix and solve exactly when the Gram product costs at most this many flops.
EXACT_FLOPS = 2e7
EXACT_MAX_SIDE = 256


@dataclass(frozen=True)
class NormResult:
    """A spectral norm, how it was obtained, and a right singular vector for warm starts."""

    value: float
    method: str  # "exact", "lanczos", "closed-form"; certified: "exact", "circulant", "l1-linf"
    vector: Any = None
    estimate: float | None = None  # certified mode: the converged estimate, to show the slack

    @property
    def is_estimate(self) -> bool:
        return self.method == "lanczos"


def fits_exact(rows: int, cols: int) -> bool:
    """Whether an explicit rows×cols matrix is small enough for the exact path."""
    small = min(rows, cols)
    return small <= EXACT_MAX_SIDE and rows * cols * max(small, 1) <= EXACT_FLOPS


def top_singular(m: Any) -> tuple[float, Any]:
    """Exact largest singular value of a dense matrix and its right singular vector."""
    m = to_numpy(m)
    if m.size == 0:
        return 0.0, np.zeros(m.shape[1])
    if m.shape[0] < m.shape[1]:
        vals, vecs = scipy.linalg.eigh(m @ m.T, subset_by_index=[m.shape[0] - 1] * 2)
        v = m.T @ vecs[:, -1]
        v /= max(np.linalg.norm(v), 1e-300)
    else:
        vals, vecs = scipy.linalg.eigh(m.T @ m, subset_by_index=[m.shape[1] - 1] * 2)
        v = vecs[:, -1]
    return float(np.sqrt(max(vals[-1], 0.0))), v


def matrix_norm(m: Any) -> NormResult:
    """Exact ‖m‖₂ from the largest eigenvalue of the smaller Gram matrix."""
    return NormResult(top_singular(m)[0], "exact")


def top_eigen(op: LinearOperator, v0: Any = None, tol: float = LANCZOS_TOL) -> tuple[float, Any]:
    """Largest eigenvalue and eigenvector of a symmetric PSD operator, by Lanczos."""
    n = op.shape[0]
    if n <= 2:
        dense = op.matmat(np.eye(n))
        vals, vecs = np.linalg.eigh((dense + dense.T) / 2)
        return float(vals[-1]), vecs[:, -1]
    start = None if v0 is None else to_numpy(v0).reshape(-1)
    if start is None or not np.any(start):  # a fixed start: the same input gives the same bound
        start = np.random.default_rng(0).standard_normal(n)
    # A short Krylov basis suffices at loose tolerances (ARPACK's default of 20 costs 21
    # products), but too short a one restarts endlessly on clustered top eigenvalues.
    ncv = min(n - 1, 20 if tol < 1e-5 else 12)
    try:
        vals, vecs = eigsh(op, k=1, which="LA", tol=tol, v0=start, ncv=ncv, maxiter=max(1000, n))
    except ArpackNoConvergence as exc:  # keep the best Ritz pair rather than fail
        vals, vecs = exc.eigenvalues, exc.eigenvectors
        if len(vals) == 0:
            raise
    return float(vals[-1]), vecs[:, -1]


def ritz_norm(theta: float, tol: float) -> float:
    """‖A‖₂ from the top Ritz value θ of AᵀA converged to residual tolerance ``tol``."""
    return float(np.sqrt(max(theta, 0.0) * (1 + tol)))


def operator_norm(op: LinearOperator, v0: Any = None, tol: float = LANCZOS_TOL) -> NormResult:
    """‖op‖₂ by Lanczos on opᵀop, converged to relative tolerance ``tol``."""
    n = op.shape[1]
    gram = LinearOperator((n, n), matvec=lambda v: op.rmatvec(op.matvec(v)), dtype=op.dtype)
    value, vector = top_eigen(gram, v0, tol)
    return NormResult(ritz_norm(value, tol), "lanczos", vector)
