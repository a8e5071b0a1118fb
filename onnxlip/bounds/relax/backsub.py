"""Linear-relaxation (CROWN-style) bounds on a graph: back-substitution over the DAG.

To bound Λ·f(x) from below over the ball (∩ a box), the rows' coefficients live on tensors.
Nodes are visited in reverse topological order: a node takes the coefficients Λ of its
output tensor (the sum over all of that tensor's readers, e.g. both sides of a residual
block) and passes Λ·(its relaxation) to its inputs by its ``back_step`` — linear nodes
exactly, an ``Add`` Λ to both inputs, a ``Concat`` each input its slice, ReLU and max-pool
through their lines (``relax``, valid on their input ranges). A chain is the DAG where node k reads
tensor k, so this one engine serves chains and graphs, the margin tests, the ranges of
tight mode, the α-optimisation (``slopes``) and branch and bound (``branching``).

At the input, min over the set of Λ_in·x + c comes from ``domain.concretize``; bounds are
rounded down by γ_N times the same pass in absolute values (N counting every node's sums).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .crown import concretize_rows, dot_and_norm, relaxations
from ..domain import InputBox
from ...linalg.patches import Patches
from ...linalg.rounding import gamma
from ...graph.dag import Graph


def _merged(a: Patches, b: Patches) -> Patches:
    """a + b on one patch per row that holds both."""
    origin = np.minimum(a.origin, b.origin)
    size = np.maximum(a.origin + np.array(a.size), b.origin + np.array(b.size)) - origin
    out = np.zeros((len(a), size[:, 0].max(), size[:, 1].max(), a.data.shape[1]))
    rows = np.arange(len(a))[:, None, None]
    for p in (a, b):
        ys = (p.origin[:, :1] - origin[:, :1]) + np.arange(p.size[0])
        xs = (p.origin[:, 1:] - origin[:, 1:]) + np.arange(p.size[1])
        out[rows, ys[:, :, None], xs[:, None, :]] += p.data.transpose(0, 2, 3, 1)
    return Patches(out.transpose(0, 3, 1, 2), origin, a.hw)


def _accumulate(store: dict[int, Any], tensor: int, value: Any) -> None:
    """Add a reader's coefficients to those of ``tensor`` (patches stay patches)."""
    if tensor not in store:
        store[tensor] = value
    elif isinstance(value, Patches) and isinstance(store[tensor], Patches):
        store[tensor] = _merged(store[tensor], value)
    else:
        dense = [v.dense() if isinstance(v, Patches) else v for v in (store[tensor], value)]
        store[tensor] = dense[0] + dense[1]


def _absolute(lam: Any) -> Any:
    return lam.like(np.abs(lam.data)) if isinstance(lam, Patches) else np.abs(lam)


def _keeps_patches(node: Any, lam: Any) -> bool:
    return isinstance(lam, Patches) and node.keeps_patches(lam)


def back_substitute(g: Graph, relaxed: dict[int, Any], lam: Any, choices: dict[int, Any] | None = None,
                    chosen: dict[int, Any] | None = None, magnitudes: bool = True,
                    start: int | None = None, shifts: dict[int, Any] | None = None) -> tuple[Any, Any, Any, Any]:
    """Λ·(tensor ``start``, default the output) ≥ Λ_in·x + c for inputs whose nonlinear nodes'
    inputs lie in the ranges ``relaxed`` (``crown.relaxations``) was built for: returns
    (Λ_in, c, |Λ|_in, |c|), the last two the same pass with every coefficient and constant
    replaced by an absolute upper bound (for the rounding error, which they bound times γ_N;
    skipped unless ``magnitudes``). ``choices``: lower lines per nonlinear node (ReLU slopes,
    max-pool weights) instead of the defaults; ``chosen``: filled, per nonlinear node, with its
    Λ and the lines chosen per row as a function of its input (what ``relaxed_forward`` runs).
    ``lam`` may be one-hot ``Patches`` (without choices or shifts): they stay on patches through
    convolutions, ReLU, max-pool and merges while they are small; Λ_in and |Λ|_in may be
    patches. ``shifts``: per nonlinear node k, a term (rows, *node k's input shape) added to Λ
    once it is a function of node k's input — a linear function of that input the caller knows
    the sign of on its set (``branching``'s split multipliers)."""
    choices, shifts = choices or {}, shifts or {}
    if isinstance(lam, Patches) and (choices or shifts or chosen is not None):
        lam = lam.dense()
    start = g.output if start is None else start
    lams, mags = {start: lam}, {start: _absolute(lam)} if magnitudes else {}
    const, mag_const = np.zeros(len(lam)), np.zeros(len(lam))
    for k in range(start - 1, -1, -1):
        if k + 1 not in lams:
            continue
        out, mag = lams.pop(k + 1), mags.pop(k + 1, None)
        node = g.nodes[k]
        if _keeps_patches(node, out):
            (ins, c, mag_ins, mag_c), apply = node.patch_back_step(relaxed.get(k), out, mag)
        else:
            out = out.dense() if isinstance(out, Patches) else out
            mag = mag.dense() if isinstance(mag, Patches) else mag
            (ins, c, mag_ins, mag_c), apply = node.back_step(relaxed.get(k), out, mag, choices.get(k))
        const += c
        if magnitudes:
            mag_const += mag_c
        if k in shifts:
            ins = [ins[0] + shifts[k]]
            mag_ins = [mag_ins[0] + np.abs(shifts[k])] if magnitudes else mag_ins
        for i, tensor in enumerate(g.inputs[k]):
            _accumulate(lams, tensor, ins[i])
            if magnitudes:
                _accumulate(mags, tensor, mag_ins[i])
        if chosen is not None and apply is not None:
            chosen[k] = (out, apply)
    zero = np.zeros((len(lam), *g.input_shape))
    return lams.get(0, zero), const, mags.get(0, zero) if magnitudes else None, mag_const


def relaxed_forward(g: Graph, lines: dict[int, Any], x: Any) -> dict[int, Any]:
    """Inputs of each nonlinear node when x (one point per row) runs through the graph with
    every nonlinear node replaced by that row's chosen lines (``back_substitute``'s ``chosen``)."""
    values, inputs = [x], {}
    for k, node in enumerate(g.nodes):
        args = [values[i] for i in g.inputs[k]]
        if k in lines:
            inputs[k] = args[0]
            values.append(lines[k][1](args[0]))
        elif node.merge:
            values.append(node.linear(*args))
        else:
            values.append(node.linear(args[0]) + node.offset)
    return inputs


def _abs_total(rows: Any) -> Any:
    """Σ over rows of |row|, batch-1 (rows dense or patches)."""
    if not isinstance(rows, Patches):
        return np.abs(rows).sum(axis=0, keepdims=True)
    (h, w), (ph, pw) = rows.hw, rows.size
    total = np.zeros((rows.data.shape[1], h + 2 * ph, w + 2 * pw))
    ys = rows.origin[:, :1] + ph + np.arange(ph)  # shifted by a patch: origins may be negative
    xs = rows.origin[:, 1:] + pw + np.arange(pw)
    np.add.at(total.transpose(1, 2, 0), (ys[:, :, None], xs[:, None, :]), np.abs(rows.data).transpose(0, 2, 3, 1))
    return total[None, :, ph : ph + h, pw : pw + w]


def _terms(g: Graph, start: int, size: int) -> int:
    """N of the rounding bound: every sum along the nodes up to tensor ``start`` (as on a chain)."""
    return sum(n.relax_terms() + 8 for n in g.nodes[:start]) + 2 * size + 8


def lower_bounds(g: Graph, ranges: dict[int, tuple[Any, Any]], rows: Any, x0: Any, eps: float,
                 choices: dict[int, Any] | None = None, box: InputBox | None = None,
                 start: int | None = None, shifts: dict[int, Any] | None = None, shared: bool = False) -> Any:
    """min over ‖x − x0‖₂ ≤ ε (and x in ``box``) of each row·(tensor ``start``, default the
    output), rounded down: every computed value is a sum of at most N products (N: fan-ins
    along the graph, a max-pool's taps and windows per element, a few operations per nonlinear
    node and for the concretization), so its error is at most γ_N times the same sum of
    absolute values; Λ_in's error moves the minimum over the set by at most its value at x0
    plus ε times its norm, the set being inside the ball. ``ranges``: input range of each
    nonlinear node before ``start``; ``choices``, ``shifts``: as in ``back_substitute``.
    ``shared``: one magnitude pass for all rows (of Σ|rows|, which bounds every row's: the pass
    is linear and non-negative) instead of one per row — about half the work for many rows
    with the default lines, for a looser rounding slack."""
    start = g.output if start is None else start
    relaxed = relaxations(g.nodes, ranges)
    shared = shared and choices is None and not shifts and len(rows) > 1
    lam, const, mag, mag_const = back_substitute(g, relaxed, rows, choices, magnitudes=not shared, start=start,
                                                 shifts=shifts)
    if shared:
        _, _, mag, mag_const = back_substitute(g, relaxed, _abs_total(rows), start=start)
    x0 = np.asarray(x0).reshape(1, *g.input_shape)
    value, _, evaluation = concretize_rows(lam, x0, eps, box)
    mag_centre, mag_norm = dot_and_norm(mag, np.abs(x0))
    slack = gamma(_terms(g, start, x0.size)) * (mag_centre + mag_const + eps * mag_norm) * (1 + 1e-6)
    bound = value + const - slack - evaluation
    return np.where(np.isnan(bound), -np.inf, bound)  # an overflow proves nothing: fail closed
