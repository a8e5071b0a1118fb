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
centre pass per unstable unit); ‖J̄‖ comes from Lanczos on the centre JVP/VJP (an estimate,
as in chain tight mode). With no unstable unit the bound is ‖J(x0)‖₂.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..domain import InputBox
from ..ir import node_flops
from ..linop import FlatOperator
from ..secant import Secant, secant
from ..spectral import LANCZOS_TOL, normal_operator, top_eigen, top_singular
from .dag import Add, Graph
from .ranges import graph_ranges

# Form the explicit matrices while (unstable units) × (flops of one pass) stay below this.
TIGHT_FLOPS = 4e9


def push(g: Graph, secants: dict[int, Secant], start: int, v: Any) -> dict[int, Any]:
    """Centre images of a batch v at tensor ``start``: every tensor it reaches, by index."""
    values = {start: v}
    for k in range(start, len(g.nodes)):
        reached = [values[i] for i in g.inputs[k] if i in values]
        if not reached:
            continue
        node = g.nodes[k]
        if isinstance(node, Add):
            values[k + 1] = reached[0] if len(reached) == 1 else reached[0] + reached[1]
        elif k in secants:
            values[k + 1] = secants[k].jvp(reached[0])
        else:
            values[k + 1] = node.linear(reached[0])
    return values


def pull(g: Graph, secants: dict[int, Secant], end: int, u: Any) -> Any:
    """Transpose of ``push`` from tensor ``end`` back to the input."""
    lams = {end: u}
    for k in range(end - 1, -1, -1):
        if k + 1 not in lams:
            continue
        lam, node = lams.pop(k + 1), g.nodes[k]
        if isinstance(node, Add):
            parts = [lam, lam]
        else:
            parts = [secants[k].vjp(lam) if k in secants else node.adjoint(lam)]
        for tensor, part in zip(g.inputs[k], parts):
            lams[tensor] = part if tensor not in lams else lams[tensor] + part
    return lams.get(0, np.zeros((len(u), *g.input_shape)))


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


def _norm(m: Any) -> float:
    return top_singular(m)[0] if m.size else 0.0


def centre_norm(g: Graph, secants: dict[int, Secant]) -> float:
    """‖J̄‖₂ by Lanczos (inflated by its tolerance's margin, like chain tight mode)."""
    out_shape = g.shape(g.output)
    op = FlatOperator(lambda v: push(g, secants, 0, v)[g.output], lambda u: pull(g, secants, g.output, u),
                      g.input_shape, out_shape, np.float64)
    value = float(np.sqrt(max(top_eigen(normal_operator(op))[0], 0.0)))
    return value * (1 + 10 * LANCZOS_TOL)


def dag_tight_bound(g: Graph, x0: Any, eps: float, box: InputBox | None = None,
                    budget: float = TIGHT_FLOPS) -> tuple[float, int] | None:
    """The bound on L(x0, ε) above and the number of units that can change state, or None
    when its explicit matrices would cost more than ``budget`` multiply-adds."""
    x0 = np.asarray(x0, dtype=np.float64).reshape(1, *g.input_shape)
    tensors = g.tensors(x0)
    ranges = graph_ranges(g, x0, eps, box)
    secants = {k: secant(g.nodes[k], tensors[g.inputs[k][0]], lo, hi) for k, (lo, hi) in ranges.items()}
    unstable = [k for k in sorted(secants) if secants[k].left is not None]
    units = sum(int(np.count_nonzero(secants[k].left)) + int(np.count_nonzero(secants[k].right)) for k in unstable)
    if units * sum(node_flops(n) for n in g.nodes) > budget:
        return None
    into: dict[int, float] = {}  # ‖R_m P̄_m‖
    for m in unstable:
        _, batch = _columns(secants[m].right)
        into[m] = _norm(pull(g, secants, g.inputs[m][0], batch).reshape(len(batch), -1))
    reach: dict[int, float] = {}  # B_m, from the last unstable node backwards
    for m in reversed(unstable):
        _, cols = _columns(secants[m].left)
        values = push(g, secants, m + 1, cols)
        total = _norm(values[g.output].reshape(len(cols), -1).T)
        for later in (n for n in unstable if n > m and g.inputs[n][0] in values):
            right = secants[later].right
            total += reach[later] * _norm(_rows_at(values[g.inputs[later][0]], np.flatnonzero(right), right))
        reach[m] = total
    changing = sum(secants[k].unstable for k in unstable)
    return centre_norm(g, secants) + sum(reach[m] * into[m] for m in unstable), changing
