"""Tight mode: whole-network secant bounds (beyond the paper's per-layer product).

For x in the ball, f(x) − f(x0) = M(x)(x − x0) exactly, with M the chain of
linear layers and secant matrices S_m = S̄_m + L_m U_m R_m (‖U_m‖₂ ≤ 1, see
``secant``). Writing C[a,b) for the chain of nodes a…b−1 at the centres S̄, the
telescoping identity

    Full[a,b) = C[a,b) + Σ_{m unstable, a≤m<b} Full[m+1,b) · L_m U_m R_m · C[a,m)

gives ‖Full[a,b)·X‖ ≤ ‖C[a,b)·X‖ + Σ_m B[m+1,b)(L_m) · ‖R_m·C[a,m)·X‖, where
B[m+1,b)(L_m) bounds ‖Full[m+1,b)·L_m‖ by the same rule (a recursion from the
last unstable node backwards). With no unstable unit the bound is ‖J(x0)‖₂.
The ranges that decide stability come from the ball radius at each affine
layer — the tight bound of the prefix — intersected with interval bounds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ...linalg.spectral import LANCZOS_TOL, matrix_norm, top_eigen, top_singular
from .certified import certified_segment_norm
from .stacked import certified_combination
from .segments import Segments


# Prefix bounds only decide which units are stable: a looser Lanczos tolerance, with
# the value inflated by 10× the tolerance (see spectral's note on clusters), keeps them fast.
RANGE_TOL = 1e-4
# Certified mode: ranges widened for their rounding (``range_rounding``), and the bound
# raised by SECANT_ROUNDING for that of the slopes and deviation factors (a few operations
# per unit, ~1e-16 each).
RANGE_ROUNDING = 1e-12
SECANT_ROUNDING = 1e-9


def inflated(value: float, tol: float) -> float:
    """A norm from Lanczos at residual tolerance ``tol`` with the margin of RANGE_TOL's note."""
    return value * (1 + 10 * tol)
# Rounds of re-weighting p in ``combine``: cheap with explicit matrices, a Lanczos run each otherwise.
EXPLICIT_ROUNDS, OPERATOR_ROUNDS = 3, 1


@dataclass(frozen=True)
class Term:
    """weight · Y·C[a,b)·diag(col), Y = ``left`` rows, diag(row), or I; ``key`` names it."""

    a: int
    b: int
    weight: float
    col: Any
    row: Any = None
    left: Any = None
    key: tuple = ()


@dataclass
class SecantState:
    """Secants of every nonlinear node at one (x0, ε), with cached segment matrices and norms."""

    segments: Segments
    acts: list[Any]
    eps: float
    norms: dict[tuple, float] = field(default_factory=dict)
    matrices: dict[tuple, Any] = field(default_factory=dict)
    bounds: dict[tuple, float] = field(default_factory=dict)
    rho: dict[int, float] = field(default_factory=dict)  # ball radius at each affine node's input
    ranges: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # input range of each nonlinear node
    # the same on the relaxation graph (``pool_tree``: its max-pools' trees have their own ranges)
    relaxed: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    warm: dict[int, Any] = field(default_factory=dict)  # last top vector per input space (node index)
    tol: float = LANCZOS_TOL
    certified: bool = False  # provable segment norms (``certified_segments``), no Lanczos
    errors: dict[tuple, float] = field(default_factory=dict)  # certified: ‖fl(M) − M‖ per explicit term
    grams: dict[tuple, Any] = field(default_factory=dict)  # certified: Gram blocks of explicit terms

    def unstable(self, a: int, b: int) -> list[int]:
        return sorted(m for m, s in self.segments.secants.items() if a <= m < b and s.left is not None)

    def matrix(self, t: Term) -> Any:
        if t.key not in self.matrices:
            tags = (t.key[3] if t.key[3] is not None else "I", t.key[4] if t.key[4] is not None else "I")
            self.matrices[t.key] = self.segments.explicit(t.a, t.b, t.col, t.row, t.left, tags)
        return self.matrices[t.key]

    def gram(self, t: Term) -> Any:
        """fl(MᵀM) of an explicit term's matrix M, formed once."""
        return self._block(("G", t.key), lambda: self.matrix(t).T @ self.matrix(t))

    def frobenius(self, t: Term) -> float:
        """‖M‖_F² of an explicit term's matrix M."""
        return self._block(("F", t.key), lambda: float(np.sum(self.matrix(t) ** 2)))

    def cross(self, t: Term, u: Term) -> Any:
        """fl(M_t·M_uᵀ), formed once per pair."""
        if ("X", u.key, t.key) in self.grams:
            return self.grams["X", u.key, t.key].T
        return self._block(("X", t.key, u.key), lambda: self.matrix(t) @ self.matrix(u).T)

    def _block(self, key: tuple, make: Any) -> Any:
        if key not in self.grams:
            self.grams[key] = make()
        return self.grams[key]

    def term_norm(self, t: Term) -> float:
        if t.key not in self.norms and self.certified:
            self.norms[t.key], self.errors[t.key] = certified_segment_norm(
                self.segments, t.a, t.b, t.col, t.row, t.left, self.matrix(t))
        if t.key not in self.norms:
            m = self.matrix(t)
            if m is not None:
                found = matrix_norm(m)
            else:
                found = self.segments.norm(t.a, t.b, t.col, t.row, t.left, self.warm.get(t.a), self.tol)
                self.warm[t.a] = found.vector
            self.norms[t.key] = inflated(found.value, self.tol) if found.is_estimate else found.value
        return t.weight * self.norms[t.key]

    def bound(self, a: int, b: int, col: Any = None, col_tag: Any = None, left: Any = None, tag: Any = None,
              stacked: bool = True) -> float:
        """Bound on ‖Y·Full[a,b)·diag(col)‖ over all secants (Y = ``left`` rows, or I); without
        ``stacked``, by the triangle inequality alone (the term norms only: far cheaper)."""
        key = (a, b, col_tag, tag, stacked)
        if key in self.bounds:
            return self.bounds[key]
        col = np.ones((1, *self.segments.shape_at(a))) if col is None else col
        secants = self.segments.secants
        terms = [Term(a, b, 1.0, col, None, left, ("T", a, b, col_tag, tag))]
        for m in self.unstable(a, b):
            beta = self.bound(m + 1, b, secants[m].left, ("L", m), left, tag, stacked)
            terms.append(Term(a, m, beta, col, secants[m].right, None, ("T", a, m, col_tag, ("R", m))))
        terms = [t for t in terms if t.weight > 0]
        self.bounds[key] = combine(self, terms) if stacked else float(sum(self.term_norm(t) for t in terms))
        return self.bounds[key]

    def prefix_bound(self, b: int, left: Any = None, tag: Any = None, target: float | None = None) -> float:
        """``bound`` of nodes 0 … b−1; certified: raised by SECANT_ROUNDING. With ``target``, the
        triangle-inequality bound first, returned when it is already below the target (a test
        that only asks whether the bound is below it gets the same answer for less work)."""
        scale = 1 + SECANT_ROUNDING if self.certified else 1
        if target is not None:
            cheap = self.bound(0, b, left=left, tag=tag, stacked=False) * scale
            if cheap < target:
                return cheap
        return self.bound(0, b, left=left, tag=tag) * scale


def combine(state: SecantState, terms: list[Term]) -> float:
    """Bound on ‖Σ_i U_i·T_i‖ (‖U_i‖ ≤ 1): the triangle inequality Σ‖T_i‖, and the tighter
    sqrt(λ_max(Σ_i T_iᵀT_i / p_i)) for weights p on the simplex (‖Σx_i‖² ≤ Σ‖x_i‖²/p_i)."""
    norms = np.array([state.term_norm(t) for t in terms])
    terms = [t for t, n in zip(terms, norms) if n > 0]
    norms = norms[norms > 0]
    best = float(norms.sum())
    if len(terms) < 2:
        return best
    matrices = [state.matrix(t) for t in terms]
    explicit = all(m is not None for m in matrices)
    weights = norms / norms.sum()
    if state.certified:  # unformed segments: the Gram bound would rest on Lanczos
        return min(best, certified_combination(state, terms, weights, EXPLICIT_ROUNDS)) if explicit else best
    for _ in range(EXPLICIT_ROUNDS if explicit else OPERATOR_ROUNDS):
        if explicit:
            value, energies = stacked_gram(terms, matrices, weights)
        else:
            value, energies = operator_gram(state, terms, weights)
        best = min(best, value)
        parts = np.sqrt(np.maximum(energies, 0))
        if not np.all(parts > 0):
            break
        weights = parts / parts.sum()
    return best


def stacked_gram(terms: list[Term], matrices: list[Any], p: Any) -> tuple[float, Any]:
    """Exact sqrt(λ_max(Σ T_iᵀT_i/p_i)) from the explicit matrices, and ‖T_i·v‖² at its top vector v."""
    value, v = top_singular(np.vstack([t.weight * m / np.sqrt(pi) for t, m, pi in zip(terms, matrices, p)]))
    return value, np.array([float(np.sum((t.weight * (m @ v)) ** 2)) for t, m in zip(terms, matrices)])


def _project(t: Term, z: Any) -> Any:
    """Y·z for a term's output side: rows ``left``, diag(row), or the identity."""
    if t.left is not None:
        return z.reshape(len(z), -1) @ t.left.reshape(len(t.left), -1).T
    return z if t.row is None else z * t.row


def _project_adjoint(t: Term, y: Any, shape: tuple[int, ...]) -> Any:
    if t.left is not None:
        return (y @ t.left.reshape(len(t.left), -1)).reshape(len(y), *shape)
    return y if t.row is None else y * t.row


def _captures(segments: Segments, terms: list[Term], v: Any) -> dict[int, Any]:
    """One forward pass from node a, keeping the value at each term's end b."""
    stops = {t.b for t in terms}
    z, caps = v * terms[0].col, {}
    for k in range(terms[0].a, max(stops)):
        if k in stops:
            caps[k] = z
        z = segments.forward(k, k + 1, z)
    caps[max(stops)] = z
    return caps


def _summed_gram(segments: Segments, terms: list[Term], p: Any, v: Any) -> Any:
    """Σ_i T_iᵀT_i·v/p_i with one forward and one backward pass (terms share a and col)."""
    caps = _captures(segments, terms, v)
    by_end = {t.b: (t, pi) for t, pi in zip(terms, p)}
    a, end = terms[0].a, max(by_end)
    u = 0
    for k in range(end, a - 1, -1):
        if k < end:
            u = segments.backward(k, k + 1, u)
        if k in by_end:
            t, pi = by_end[k]
            u = u + _project_adjoint(t, _project(t, caps[k]), segments.shape_at(k)) * (t.weight**2 / pi)
    return u * terms[0].col


def operator_gram(state: SecantState, terms: list[Term], p: Any) -> tuple[float, Any]:
    """sqrt(λ_max(Σ T_iᵀT_i/p_i)) by Lanczos on the summed operator (inflated by the solver
    tolerance), and ‖T_i·v‖² at its top vector."""
    segments, a = state.segments, terms[0].a
    shape = segments.shape_at(a)
    n = int(np.prod(shape))
    op = LinearOperator((n, n), matvec=lambda v: _summed_gram(segments, terms, p, v.reshape(1, *shape)).reshape(-1),
                        dtype=np.float64)
    value, vector = top_eigen(op, state.warm.get(a), state.tol)
    state.warm[a] = vector
    caps = _captures(segments, terms, vector.reshape(1, *shape))
    energies = np.array([float(np.sum((t.weight * _project(t, caps[t.b])) ** 2)) for t in terms])
    return inflated(float(np.sqrt(max(value, 0.0))), state.tol), energies
