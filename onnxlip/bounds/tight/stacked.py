"""Certified mode's stacked bound of ``telescoping.combine``: a provable
sqrt(λ_max(Σ_i c_i·T_iᵀT_i)), c_i = w_i²/p_i, for formed terms T_i, at the best of a few
re-weightings p.

λ_max is that of the Gram matrix of the weighted stack U = [√c_i·T_i] on its smaller side:
Σ c_i·G_i (G_i = fl(T_iᵀT_i), columns) or D·B·D (B = fl(U₀U₀ᵀ) of the unweighted stack,
D = diag(√c_i) per row block, rows). Every G_i and every block T_iT_jᵀ of B is formed once
and shared by each combination it enters (the terms of the first nodes recur for every
margin). The rounds compare Lanczos estimates, and only the chosen matrix is proven, by a
Cholesky factorization just above its estimate (``cholesky.gram_top_bound``): one
factorization instead of an eigendecomposition per round. Forming it errs by
|S̃ − S| ≤ γ_K·|U|ᵀ|U| (or |U||U|ᵀ) entrywise, K the products summed per entry plus the
weighting, so ‖S̃ − S‖₂ ≤ γ_K·Σ c_i·‖T_i‖_F².
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse.linalg import aslinearoperator

from ..perlayer.certified import exact_certified
from ...linalg.cholesky import gram_top_bound
from ...linalg.rounding import gamma
from ...linalg.spectral import top_eigen

# Lanczos tolerance of the estimates that choose the weights (the chosen one is then proven).
GRAM_TOL = 1e-9
# Re-weighting rounds stop once a round lowers the estimate by less than this, relatively.
ROUND_GAIN = 1e-3


class _Stack:
    """The Gram matrix of the weighted stack [√c_i·T_i] on its smaller side."""

    def __init__(self, state: Any, terms: list[Any]):
        self.rows = [state.matrix(t).shape[0] for t in terms]
        n = state.matrix(terms[0]).shape[1]
        self.by_rows = sum(self.rows) < n
        self.frobenius = np.array([state.frobenius(t) for t in terms])
        if self.by_rows:
            self.gram = np.block([[state.cross(ti, tj) for tj in terms] for ti in terms])
            self.cuts = np.cumsum([0, *self.rows])
        else:
            self.grams = [state.gram(t) for t in terms]
        self.terms_summed = (n if self.by_rows else max(self.rows)) + len(terms) + 6

    def assemble(self, c: Any) -> Any:
        if self.by_rows:
            d = np.repeat(np.sqrt(c), self.rows)
            return d[:, None] * self.gram * d[None, :]
        s = self.grams[0] * c[0]
        for g, ci in zip(self.grams[1:], c[1:]):
            s += ci * g
        return s

    def parts(self, w2: Any, p: Any, v: Any) -> Any:
        """√(energy) of each term at the top eigenvector v, up to a common factor: the weights
        of the next round (‖w_i·T_i·x‖ at the top right singular vector x of the stack)."""
        if self.by_rows:  # block i of D·B·D·v = λv gives ‖w_i·T_i·x‖ ∝ √p_i·‖v_i‖
            return np.sqrt(p) * np.array([np.linalg.norm(v[a:b]) for a, b in zip(self.cuts[:-1], self.cuts[1:])])
        return np.sqrt(np.maximum([wi * float(v @ (g @ v)) for wi, g in zip(w2, self.grams)], 0))


def certified_combination(state: Any, terms: list[Any], p: Any, rounds: int) -> float:
    """Provable sqrt(λ_max(Σ_i w_i²·T_iᵀT_i/p_i)) for formed terms, at the best of ``rounds``
    re-weightings of p (see the module's note); ``certified_stacked`` (exact) when the
    Cholesky proof fails."""
    stack = _Stack(state, terms)
    w2 = np.array([t.weight**2 for t in terms])
    # a warm start needs the same space: the same column support, or the same stacked rows
    warm_key = ("rows", *(t.key for t in terms)) if stack.by_rows else ("columns", terms[0].key[1], terms[0].key[3])
    v, chosen = state.warm.get(warm_key), None
    for _ in range(rounds):
        s = stack.assemble(w2 / p)
        theta, v = top_eigen(aslinearoperator(s), v, GRAM_TOL)
        if chosen is not None and theta > chosen[0] * (1 - ROUND_GAIN):
            break  # re-weighting no longer pays for its Lanczos run
        chosen = (theta, p, s)
        parts = stack.parts(w2, p, v)
        if not np.all(parts > 0):
            break
        p = parts / parts.sum()
    state.warm[warm_key] = v
    theta, p, s = chosen
    forming = gamma(stack.terms_summed) * float(np.sum(w2 / p * stack.frobenius)) * (1 + 1e-12)
    top = gram_top_bound(s, theta, forming, stack.terms_summed) if theta > 0 else None
    if top is None:
        return certified_stacked(state, terms, [state.matrix(t) for t in terms], p)
    return _with_rounding(float(np.sqrt(top)), state, terms, p)


def certified_stacked(state: Any, terms: list[Any], matrices: list[Any], p: Any) -> float:
    """Provable sqrt(λ_max(Σ T_iᵀT_i/p_i)): the exact value of the stacked computed matrices plus
    the stacked bound on their rounding."""
    stacked = np.vstack([t.weight * m / np.sqrt(pi) for t, m, pi in zip(terms, matrices, p)])
    return _with_rounding(exact_certified(stacked), state, terms, p)


def _with_rounding(value: float, state: Any, terms: list[Any], p: Any) -> float:
    """``value`` (the norm of the stacked computed matrices) plus sqrt(Σ (w_i·E_i)²/p_i), E_i the
    bound on ‖fl(T_i) − T_i‖; Cauchy–Schwarz needs Σp ≤ 1, which computed weights may exceed by
    a few ulp, and the weights c_i themselves are rounded (1e-12 covers both)."""
    error = np.sqrt(sum((t.weight * state.errors[t.key]) ** 2 / pi for t, pi in zip(terms, p)))
    return (value + float(error) * (1 + 1e-12)) * float(np.sqrt(max(1.0, np.sum(p)))) * (1 + 1e-12)
