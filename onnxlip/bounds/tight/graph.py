"""Tight local bound on a DAG: the secant form of ``onnxlip.tight`` over the graph.

For x in the ball, f(x) − f(x0) = M(x)(x − x0), where M runs the network's linear parts
with each nonlinear node m replaced by a secant S_m = S̄_m + L_m U_m R_m (``secant``;
‖U_m‖ ≤ 1, L_m and R_m zero on the units that cannot change). Replacing the secants by
their centres one node at a time, in topological order, telescopes on any DAG:

    M = J̄ + Σ_m S_{m→out}(secants after m) · L_m U_m R_m · P̄_m,

with J̄ the network at the centres, P̄_m the centre map from the input to node m's input
and S_{m→out} the map from node m's output to the output (only nodes after m lie on its
paths). Hence ‖M‖ ≤ ‖J̄‖ + Σ_m B_m ‖R_m P̄_m‖ with B_m ≥ sup ‖S_{m→out} L_m‖, and by the
same expansion of the suffix, B_m = ‖S̄_{m→out} L_m‖ + Σ_{m' > m} B_{m'} ‖R_{m'} S̄_{m→m'} L_m‖.
Every matrix but J̄ has one side of unstable units only, so it is formed explicitly (one
centre pass per unstable unit); J̄ too when it has few outputs (one pass per output), else
its norm comes from Lanczos on the centre JVP/VJP (an estimate, as in chain tight mode).
With no unstable unit the bound is ‖J(x0)‖₂. ``certified``: every norm provable, the
rounding of forming each matrix included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..perlayer.certified import exact_certified
from ..domain import InputBox
from .certified import node_terms
from ...graph.secant import Secant
from ...linalg.operators import FlatOperator
from ...linalg.rounding import gamma
from .telescoping import SECANT_ROUNDING
from ...linalg.spectral import LANCZOS_TOL, normal_operator, top_eigen, top_singular
from ...graph.dag import Graph
from ..relax.ranges import relaxed_ranges

# Form the explicit matrices while (unstable units) × (flops of one pass) stay below this.
TIGHT_FLOPS = 4e9


def push(g: Graph, secants: dict[int, Secant], start: int, v: Any, absolute: bool = False) -> dict[int, Any]:
    """Centre images of a batch v at tensor ``start``: every tensor it reaches, by index;
    ``absolute``: the same pass with every weight in absolute value (centres are ≥ 0)."""
    values = {start: v}
    for k in range(start, len(g.nodes)):
        if not any(i in values for i in g.inputs[k]):
            continue
        node = g.nodes[k]
        if node.merge:  # a branch that v does not reach contributes zero
            values[k + 1] = node.linear(*(values[i] if i in values else np.zeros((len(v), *g.shape(i)))
                                          for i in g.inputs[k]))
        elif k in secants:
            values[k + 1] = secants[k].jvp(values[g.inputs[k][0]])
        else:
            values[k + 1] = _linear(node, absolute).linear(values[g.inputs[k][0]])
    return values


def pull(g: Graph, secants: dict[int, Secant], end: int, u: Any, absolute: bool = False) -> Any:
    """Transpose of ``push`` from tensor ``end`` back to the input."""
    lams = {end: u}
    for k in range(end - 1, -1, -1):
        if k + 1 not in lams:
            continue
        lam, node = lams.pop(k + 1), g.nodes[k]
        if node.merge:
            parts = node.adjoint(lam)
        else:
            parts = [secants[k].vjp(lam) if k in secants else _linear(node, absolute).adjoint(lam)]
        for tensor, part in zip(g.inputs[k], parts):
            lams[tensor] = part if tensor not in lams else lams[tensor] + part
    return lams.get(0, np.zeros((len(u), *g.input_shape)))


def _linear(node: Any, absolute: bool) -> Any:
    return node.with_weights(np.abs) if absolute else node


def _columns(diag: Any) -> tuple[Any, Any]:
    """(flat indices, one-hot batch scaled by the diagonal) of a batch-1 diagonal's non-zeros."""
    flat = diag.reshape(-1)
    idx = np.flatnonzero(flat)
    batch = np.zeros((len(idx), flat.size))
    batch[np.arange(len(idx)), idx] = flat[idx]
    return idx, batch.reshape(len(idx), *diag.shape[1:])


def _rows_at(values: Any, idx: Any, scale: Any) -> Any:
    """(len(idx), batch) matrix: entries ``idx`` of each batch vector, times ``scale`` there."""
    return (values.reshape(len(values), -1)[:, idx] * scale.reshape(-1)[idx]).T


@dataclass(frozen=True)
class _Norms:
    """Spectral norms of the matrices the bound forms: exact (LAPACK) for estimates; for
    ``certified``, provable: ``exact_certified`` of the float matrix plus γ_N times the
    Frobenius norm of the same pass in absolute values (every entry of the computed matrix
    errs by at most γ_N times its absolute counterpart; N counts every sum in the graph)."""

    certified: bool
    terms: int

    def of(self, matrix: Any, magnitude: Callable[[], Any]) -> float:
        if matrix.size == 0:
            return 0.0
        if not self.certified:
            return top_singular(matrix)[0]
        return exact_certified(matrix) + gamma(self.terms) * float(np.linalg.norm(magnitude())) * (1 + 1e-6)


def _terms(g: Graph, secants: dict[int, Secant]) -> int:
    """Terms summed into one computed value, at most: every node's (``node_terms``, as for chain
    segments; at least 1, for a merge) over the whole graph."""
    return sum(max(node_terms(n, secants.get(k)), 1) for k, n in enumerate(g.nodes)) + 2


def centre_norm(g: Graph, secants: dict[int, Secant], norms: _Norms, affordable: int) -> float | None:
    """‖J̄‖₂: from the explicit matrix (one pull per output) when ``affordable`` passes fit,
    else by Lanczos (an estimate, inflated by its tolerance's margin like chain tight mode;
    None when the bound must be certified)."""
    out_shape = g.shape(g.output)
    size = int(np.prod(out_shape))
    if size <= affordable:
        eye = np.eye(size).reshape(size, *out_shape)
        matrix = pull(g, secants, g.output, eye).reshape(size, -1)
        return norms.of(matrix, lambda: pull(g, secants, g.output, eye, absolute=True).reshape(size, -1))
    if norms.certified:
        return None
    op = FlatOperator(lambda v: push(g, secants, 0, v)[g.output], lambda u: pull(g, secants, g.output, u),
                      g.input_shape, out_shape, np.float64)
    value = float(np.sqrt(max(top_eigen(normal_operator(op))[0], 0.0)))
    return value * (1 + 10 * LANCZOS_TOL)


def dag_tight_bound(g: Graph, x0: Any, eps: float, box: InputBox | None = None, certified: bool = False,
                    budget: float = TIGHT_FLOPS) -> tuple[float, int] | None:
    """The bound on L(x0, ε) above and the number of units that can change state, or None
    when its explicit matrices would cost more than ``budget`` multiply-adds (or, for
    ``certified``, when ‖J̄‖ cannot be formed)."""
    x0 = np.asarray(x0, dtype=np.float64).reshape(1, *g.input_shape)
    tensors = g.tensors(x0)
    ranges = relaxed_ranges(g, x0, eps, box)
    if not all(np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) for lo, hi in ranges.values()):
        return None  # an overflow proves nothing: the per-layer bound instead
    secants = {k: g.nodes[k].secant(tensors[g.inputs[k][0]], lo, hi) for k, (lo, hi) in ranges.items()}
    unstable = [k for k in sorted(secants) if secants[k].left is not None]
    units = sum(int(np.count_nonzero(secants[k].left)) + int(np.count_nonzero(secants[k].right)) for k in unstable)
    passes = int(budget // max(sum(n.flops() for n in g.nodes), 1))  # one-pass costs that fit the budget
    if units > passes:
        return None
    norms = _Norms(certified, _terms(g, secants))
    centre = centre_norm(g, secants, norms, passes)
    if centre is None:
        return None
    into: dict[int, float] = {}  # ‖R_m P̄_m‖
    for m in unstable:
        _, batch = _columns(secants[m].right)
        tensor = g.inputs[m][0]
        into[m] = norms.of(pull(g, secants, tensor, batch).reshape(len(batch), -1),
                           lambda: pull(g, secants, tensor, batch, absolute=True).reshape(len(batch), -1))
    reach: dict[int, float] = {}  # B_m, from the last unstable node backwards
    for m in reversed(unstable):
        _, cols = _columns(secants[m].left)
        values = push(g, secants, m + 1, cols)
        magnitudes = (lambda cols=cols, m=m: push(g, secants, m + 1, cols, absolute=True))
        total = norms.of(values[g.output].reshape(len(cols), -1).T,
                         lambda: magnitudes()[g.output].reshape(len(cols), -1).T)
        for later in (n for n in unstable if n > m and g.inputs[n][0] in values):
            right, tensor = secants[later].right, g.inputs[later][0]
            idx = np.flatnonzero(right)
            total += reach[later] * norms.of(_rows_at(values[tensor], idx, right),
                                             lambda: _rows_at(magnitudes()[tensor], idx, right))
        reach[m] = total
    changing = sum(secants[k].unstable for k in unstable)
    bound = float(centre + sum(reach[m] * into[m] for m in unstable))
    return bound * (1 + SECANT_ROUNDING) if certified else bound, changing
