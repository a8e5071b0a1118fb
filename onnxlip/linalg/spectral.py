"""Spectral norms ‖A‖₂ of explicit matrices and of matrix-free operators.

Exact: eigenvalues of the smaller Gram matrix (LAPACK), used when it is small.
Iterative: Lanczos on AᵀA, run to a relative residual tolerance, never a fixed step
count. It stops when ‖AᵀA·v − θv‖ ≤ tol·θ, so an eigenvalue of AᵀA lies within tol·θ of
the Ritz value θ (Krylov–Weinstein): the norm is reported as sqrt(θ·(1 + tol)). It stays
an estimate: nothing proves that eigenvalue is the top one.
Convolutions have clusters of near-equal top eigenvalues, and a loose tolerance can stop
on the wrong member (AlexNet's first layer: 0.11% low at tol 1e-5, right at 1e-6), so
the per-layer method keeps a tight tolerance.

Large operators run their Lanczos iterations on a float32 copy (half the time per
product). The Ritz vector is then checked with one float64 product: an eigenvalue of AᵀA
lies within the measured residual ρ = ‖AᵀA·v − θv‖ of θ = ‖A·v‖², and the norm is
reported as sqrt(θ + ρ). On AlexNet that is 5e-8 above the float64 run's bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from scipy.linalg.blas import daxpy, dnrm2
from scipy.sparse.linalg import LinearOperator

from .backend import to_numpy
from .operators import AnyBackend

LANCZOS_TOL = 1e-7
# Form the matrix and solve exactly when the Gram product costs at most this many flops.
EXACT_FLOPS = 2e7
EXACT_MAX_SIDE = 256
# Lanczos: products before giving up (keeping the best Ritz pair), and the memory its
# float32 basis may take before it restarts from the current Ritz vector.
LANCZOS_MAX_PRODUCTS = 5000
LANCZOS_BASIS_BYTES = 2**31


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
    """Largest eigenvalue and eigenvector of a symmetric PSD operator, by Lanczos; vectors live
    where the operator's do (``op.xp``: NumPy or CuPy), the small eigenproblems on the host."""
    n, xp = op.shape[0], getattr(op, "xp", np)
    if n <= 2:
        dense = to_numpy(xp.stack([op.matvec(e) for e in xp.eye(n)], axis=1))
        vals, vecs = np.linalg.eigh((dense + dense.T) / 2)
        return float(vals[-1]), xp.asarray(vecs[:, -1])
    start = None if v0 is None else xp.asarray(v0, dtype=xp.float64).reshape(-1)
    if start is None or not bool(xp.any(start)):  # a fixed start: the same input gives the same bound, on any backend
        start = xp.asarray(np.random.default_rng(0).standard_normal(n))
    capacity = max(20, min(LANCZOS_MAX_PRODUCTS, LANCZOS_BASIS_BYTES // (4 * n)))
    products = 0
    while True:
        theta, vector, steps, converged = lanczos_run(op, start, tol, min(capacity, LANCZOS_MAX_PRODUCTS - products))
        products += steps
        if converged or products >= LANCZOS_MAX_PRODUCTS:  # unconverged: the best Ritz pair
            return theta, vector
        start = vector


def lanczos_run(op: LinearOperator, start: Any, tol: float, steps: int) -> tuple[float, Any, int, bool]:
    """At most ``steps`` Lanczos steps from ``start``: (θ, unit Ritz vector, steps, converged).

    Plain Lanczos (three-term recurrence, no reorthogonalization against older vectors)
    with a convergence test after every product. ARPACK (scipy ``eigsh``) gave the same
    values but cost ~10% more products — it tests once per restart cycle — and its
    reorthogonalization reads its whole basis every step: 100–150 ms a product at VGG16's
    3.2 M inputs, as much as the product itself. Lost orthogonality only duplicates converged
    Ritz values (Paige), and the run stops as the top one converges. The basis is kept in
    float32, only to assemble the Ritz vector.
    """
    n, xp = op.shape[0], getattr(op, "xp", np)
    basis = _basis_buffer(steps * n, xp)[: steps * n].reshape(steps, n)
    alphas: list[float] = []
    betas: list[float] = []
    v = start / xp.linalg.norm(start)
    v_prev, beta_prev = xp.zeros(n), 0.0
    theta, s, converged = 0.0, np.ones(1), False
    for j in range(steps):
        basis[j] = v
        w = xp.array(op.matvec(v), dtype=xp.float64).reshape(-1)
        alpha = float(w @ v)
        w = _minus_two(xp, w, alpha, v, beta_prev, v_prev)
        beta = float(dnrm2(w) if xp is np else xp.linalg.norm(w))
        alphas.append(alpha)
        if j:
            vals, vecs = scipy.linalg.eigh_tridiagonal(np.array(alphas), np.array(betas), select="i",
                                                       select_range=(j, j), check_finite=False)
            theta, s = float(vals[0]), vecs[:, 0]
        else:
            theta = alpha
        if beta * abs(s[-1]) <= tol * theta or beta <= 1e-14 * abs(theta):  # converged, or invariant subspace
            converged = True
            break
        betas.append(beta)
        w *= 1.0 / beta
        v_prev, v, beta_prev = v, w, beta
    vector = xp.asarray(s.astype(np.float32)) @ basis[: len(s)]
    vector = vector.astype(xp.float64)
    return theta, vector / xp.linalg.norm(vector), len(s), converged


def _minus_two(xp: Any, w: Any, alpha: float, v: Any, beta: float, v_prev: Any) -> Any:
    """w − α·v − β·v_prev, in place: 3.2 M-long vectors at VGG16's size (BLAS daxpy on the host)."""
    if xp is np:
        return daxpy(v_prev, daxpy(v, w, a=-alpha), a=-beta)
    w -= alpha * v
    w -= beta * v_prev
    return w


_BASIS: list[np.ndarray] = [np.empty(0, dtype=np.float32)]


def _basis_buffer(size: int, xp: Any = np) -> Any:
    """Room for the Lanczos basis, reused on the host by later runs that fit in it: first-touching
    fresh memory here cost 10–40 ms per 3.2 M-long float32 vector (page faults, huge-page
    compaction), a fifth of a VGG16 product. CuPy's memory pool does the same on a GPU."""
    if xp is not np:
        return xp.empty(size, dtype=xp.float32)
    if _BASIS[0].size < size:
        _BASIS[0] = np.empty(size, dtype=np.float32)
    return _BASIS[0]


def ritz_norm(theta: float, tol: float) -> float:
    """‖A‖₂ from the top Ritz value θ of AᵀA converged to residual tolerance ``tol``."""
    return float(np.sqrt(max(theta, 0.0) * (1 + tol)))


def operator_norm(op: LinearOperator, v0: Any = None, tol: float = LANCZOS_TOL,
                  fast: LinearOperator | None = None) -> NormResult:
    """‖op‖₂ by Lanczos on opᵀop, converged to relative tolerance ``tol``; with ``fast``
    (the same operator in lower precision) the iterations run on it and the Ritz vector
    is checked on ``op`` (``checked_norm``)."""
    value, vector = top_eigen(normal_operator(op if fast is None else fast), v0, tol)
    if fast is None:
        return NormResult(ritz_norm(value, tol), "lanczos", vector)
    return NormResult(checked_norm(op, vector), "lanczos", vector)


class NormalOperator(AnyBackend):
    """opᵀop, whose top eigenvalue is ‖op‖₂², on op's backend."""

    def __init__(self, op: LinearOperator):
        self._op, self.xp = op, getattr(op, "xp", np)
        super().__init__(dtype=op.dtype, shape=(op.shape[1], op.shape[1]))

    def _matvec(self, v: Any) -> Any:
        return self._op.rmatvec(self._op.matvec(v))

    def _rmatvec(self, v: Any) -> Any:
        return self._matvec(v)


def normal_operator(op: LinearOperator) -> LinearOperator:
    """opᵀop, whose top eigenvalue is ‖op‖₂²."""
    return NormalOperator(op)


def checked_norm(op: LinearOperator, v: Any) -> float:
    """sqrt(θ + ρ) with θ = ‖op·v‖², ρ = ‖opᵀop·v − θv‖ for the unit vector along v:
    some eigenvalue of opᵀop lies in [θ − ρ, θ + ρ] (Krylov–Weinstein)."""
    xp = getattr(op, "xp", np)
    v = v / xp.linalg.norm(v)
    w = op.matvec(v)
    theta = float(w @ w)
    residual = float(xp.linalg.norm(op.rmatvec(w) - theta * v))
    return float(np.sqrt(theta + residual))
