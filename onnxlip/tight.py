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

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bounds import BoundResult, LayerReport, local_bound
from .ir import AFFINE_TYPES, MaxPool, Relu, describe
from .network import Network
from .ranges import affine_range, input_box, monotone_range
from .secant import secant
from .segments import Segments
from .spectral import EXACT_MAX_SIDE, symmetric_top
import scipy.linalg
from scipy.sparse.linalg import LinearOperator


@dataclass(frozen=True)
class Term:
    """weight · Y·C[a,b)·diag(col), Y = ``left`` rows, diag(row), or I; tags name the arrays."""

    a: int
    b: int
    weight: float
    col: Any = None
    row: Any = None
    left: Any = None
    key: tuple = ()


@dataclass
class SecantState:
    """Secants of every nonlinear node at one (x0, ε), with cached segment norms."""

    segments: Segments
    acts: list[Any]
    eps: float
    norms: dict[tuple, float] = field(default_factory=dict)
    bounds: dict[tuple, float] = field(default_factory=dict)
    rho: dict[int, float] = field(default_factory=dict)  # ball radius at each affine node's input

    def unstable(self, a: int, b: int) -> list[int]:
        return sorted(m for m, s in self.segments.secants.items() if a <= m < b and s.left is not None)

    def term_norm(self, t: Term) -> float:
        if t.key not in self.norms:
            self.norms[t.key] = self.segments.norm(t.a, t.b, col=t.col, row=t.row, left=t.left).value
        return t.weight * self.norms[t.key]

    def bound(self, a: int, b: int, col: Any = None, col_tag: Any = None, left: Any = None, tag: Any = None) -> float:
        """Bound on ‖Y·Full[a,b)·diag(col)‖ over all secants (Y = ``left`` rows, or I)."""
        key = (a, b, col_tag, tag)
        if key in self.bounds:
            return self.bounds[key]
        secants = self.segments.secants
        terms = [Term(a, b, 1.0, col, None, left, ("T", a, b, col_tag, tag))]
        for m in self.unstable(a, b):
            beta = self.bound(m + 1, b, secants[m].left, ("L", m), left, tag)
            terms.append(Term(a, m, beta, col, secants[m].right, None, ("T", a, m, col_tag, ("R", m))))
        self.bounds[key] = combine(self, [t for t in terms if t.weight > 0], col)
        return self.bounds[key]

    def prefix_bound(self, b: int, left: Any = None, tag: Any = None) -> float:
        return self.bound(0, b, left=left, tag=tag)


def combine(state: SecantState, terms: list[Term], col: Any) -> float:
    """Bound on ‖Σ_i U_i·T_i‖ (‖U_i‖ ≤ 1): the triangle inequality Σ‖T_i‖, and the tighter
    sqrt(λ_max(Σ_i T_iᵀT_i / p_i)) for weights p on the simplex (‖Σx_i‖² ≤ Σ‖x_i‖²/p_i)."""
    norms = np.array([state.term_norm(t) for t in terms])
    terms = [t for t, n in zip(terms, norms) if n > 0]
    norms = norms[norms > 0]
    best = float(norms.sum())
    if len(terms) < 2:
        return best
    weights = norms / norms.sum()
    for _ in range(2):
        value, vector = weighted_gram_norm(state.segments, terms, weights, col)
        best = min(best, value)
        parts = np.sqrt(np.maximum(term_energies(state.segments, terms, vector, col), 0))
        if not np.all(parts > 0):
            break
        weights = parts / parts.sum()
    return best


def _apply(segments: Segments, t: Term, v: Any, col: Any) -> Any:
    """Tᵀ·T·v for one term (weight included), v in the column space of node t.a."""
    v = v if col is None else v * col
    u = segments.forward(t.a, t.b, v)
    if t.left is not None:
        flat = t.left.reshape(len(t.left), -1)
        u = (u.reshape(len(u), -1) @ flat.T @ flat).reshape(u.shape)
    elif t.row is not None:
        u = u * t.row**2
    g = segments.backward(t.a, t.b, u) * t.weight**2
    return g if col is None else g * col


def weighted_gram_norm(segments: Segments, terms: list[Term], p: Any, col: Any) -> tuple[float, Any]:
    """sqrt(λ_max(Σ_i T_iᵀT_i / p_i)) and its eigenvector, by Lanczos on the summed operator."""
    shape = segments.shape_at(terms[0].a)
    n = int(np.prod(shape))

    def apply(batch: Any) -> Any:
        return sum(_apply(segments, t, batch, col) / pi for t, pi in zip(terms, p))

    support = np.arange(n) if col is None else np.flatnonzero(col.reshape(-1))
    if len(support) <= EXACT_MAX_SIDE:  # the operator lives on few coordinates: dense eigh
        cols = np.zeros((len(support), n))
        cols[np.arange(len(support)), support] = 1.0
        dense = apply(cols.reshape(len(support), *shape)).reshape(len(support), -1)[:, support]
        vals, vecs = scipy.linalg.eigh((dense + dense.T) / 2)
        vector = np.zeros(n)
        vector[support] = vecs[:, -1]
        return float(np.sqrt(max(vals[-1], 0.0))), vector.reshape(1, *shape)
    op = LinearOperator((n, n), matvec=lambda v: apply(v.reshape(1, *shape)).reshape(-1), dtype=np.float64)
    value, vector = symmetric_top(op)
    return float(np.sqrt(max(value, 0.0))), vector.reshape(1, *shape)


def term_energies(segments: Segments, terms: list[Term], v: Any, col: Any) -> Any:
    """vᵀ·T_iᵀT_i·v for each term."""
    return np.array([float(np.vdot(v, _apply(segments, t, v, col))) for t in terms])


def build_secants(net: Network, x0: Any, eps: float, paper: BoundResult | None = None,
                  acts: list[Any] | None = None) -> SecantState:
    """Walk the chain once: ranges at each node, secants at ReLU/MaxPool nodes."""
    acts = net.activations(x0) if acts is None else acts
    paper = local_bound(net, x0, eps, acts) if paper is None else paper
    paper_rho = {layer.index: layer.eps_in for layer in paper.layers}
    state = SecantState(Segments(net, acts), acts, eps)
    lo, hi = input_box(acts[0], eps)
    for k, node in enumerate(net.nodes):
        if isinstance(node, AFFINE_TYPES):
            rho = min(eps * state.prefix_bound(k), paper_rho.get(k, np.inf))
            state.rho[k] = rho
            lo, hi = affine_range(node, acts[k + 1], lo, hi, rho)
            continue
        if isinstance(node, (Relu, MaxPool)):
            state.segments.secants[k] = secant(node, acts[k], lo, hi)
        lo, hi = monotone_range(node, lo, hi)
    return state


def _reports(net: Network, state: SecantState, bound: float) -> list[LayerReport]:
    reports = []
    for k, node in enumerate(net.nodes):
        if not isinstance(node, (Relu, MaxPool)) and k not in state.rho:
            continue
        sec = state.segments.secants.get(k)
        eps_in = state.rho.get(k, 0.0)
        reports.append(LayerReport(k, describe(node), node.names, node.out_shape, 0.0, "tight", eps_in, eps_in,
                                   0, 0, sec.unstable if sec else 0))
    return reports


def tight_bound(net: Network, x0: Any, eps: float, acts: list[Any] | None = None) -> BoundResult:
    """min(whole-network secant bound, paper bound) on L(x0, ε)."""
    start = time.perf_counter()
    acts = net.activations(x0) if acts is None else acts
    paper = local_bound(net, x0, eps, acts)
    state = build_secants(net, x0, eps, paper, acts)
    tight = state.prefix_bound(len(net.nodes))
    if tight >= paper.bound:
        return BoundResult(paper.bound, paper.layers, eps, time.perf_counter() - start, paper.final_mask)
    return BoundResult(tight, _reports(net, state, tight), eps, time.perf_counter() - start, paper.final_mask)
