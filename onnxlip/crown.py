"""Linear-relaxation bounds over the L2 ball (CROWN-style back-substitution).

To bound Λ·f(x) from below for x in the ball ‖x − x0‖₂ ≤ ε, walk the chain
backwards keeping Λ·(current layer) + c ≤ … as a linear function of that layer:
- affine / shape nodes are exact: c += Λ·b, Λ ← Λ·A (the node's adjoint);
- ReLU with input range [l, u]: stable units pass (slope 1) or vanish (0); an
  unstable one is replaced by a line below it (α·z, α = 1 when u > −l, else 0) where
  its coefficient is ≥ 0, and by the chord above it (u·(z − l)/(u − l)) where < 0;
- max-pool with input ranges: the window's max is ≥ the element with the largest
  lower bound (exact when that element's lower bound beats every other upper
  bound), and ≤ the largest upper bound in the window (a constant) otherwise.
At the input, min over the ball of Λ·x + c is Λ·x0 + c − ε‖Λ‖₂ per row, rounded down by
γ_N times the same computation in absolute values (``lower_bounds``).

Every relaxation is valid for every input in the ranges, so the result is a sound
lower bound whenever the ranges are; tighter ranges make it tighter. Used for the
pre-activation ranges of tight mode (rows = ± the unstable units of a layer, when affordable)
and for the margin test of the certified radius (rows = e_label − e_j).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .rounding import gamma
from .ir import AFFINE_TYPES, SHAPE_TYPES, MaxPool, Node, Relu, fan_in, node_flops, node_offset, with_weights
from .pooling import maxpool2d, scatter_winners, window_candidates

# Back-substitute a layer's rows only when rows × flops of the prefix stay below this.
CROWN_FLOPS = 1e9
CHUNK_ROWS = 512


def _relu_back(lam: Any, lo: Any, hi: Any) -> tuple[Any, Any, Any, Any]:
    """Λ through ReLU with input range [lo, hi]: (new Λ, constant added per row, the largest
    slope per unit, and the magnitude its constant and rounded lines can reach per unit)."""
    unstable = (lo < 0) & (hi > 0)
    width = np.where(unstable, hi - lo, 1.0)
    chord = np.where(unstable, hi / width, (lo >= 0) * 1.0)  # upper line's slope
    below = np.where(unstable, (hi > -lo) * 1.0, (lo >= 0) * 1.0)  # lower line's slope
    offset = np.where(unstable, -chord * lo, 0.0)  # upper line: chord·z + offset
    negative = lam < 0
    new = np.where(negative, lam * chord, lam * below)
    const = np.where(negative, lam * offset, 0.0).reshape(len(lam), -1).sum(axis=1)
    return new, const, np.maximum(chord, below), np.where(unstable, offset + hi, 0.0)


def _maxpool_back(node: MaxPool, lam: Any, lo: Any, hi: Any) -> tuple[Any, Any, Any, Any]:
    """Λ through max-pool with input range [lo, hi]: (new Λ, constant added per row, the
    element selected per window, and the largest upper bound per window)."""
    win = node.window
    _, arg = maxpool2d(lo, win)  # the element with the largest lower bound, per window
    unstable, _ = window_candidates(lo, hi, arg, win)
    top = maxpool2d(hi, win)[0]
    as_constant = unstable & (lam < 0)  # max ≤ largest upper bound
    through = np.where(as_constant, 0.0, lam)  # max ≥ (or =) the selected element
    const = np.where(as_constant, lam * top, 0.0).reshape(len(lam), -1).sum(axis=1)
    return scatter_winners(through, arg, win), const, arg, np.abs(top)


def _row_sums(a: Any) -> Any:
    return a.reshape(len(a), -1).sum(axis=1)


def back_substitute(nodes: tuple[Node, ...], ranges: dict[int, tuple[Any, Any]], lam: Any) -> tuple[Any, ...]:
    """Λ·chain(x) ≥ Λ_in·x + c for x with every nonlinear node's input in ``ranges``
    (index → (lo, hi), batch-1 arrays): returns (Λ_in, c, |Λ|_in, |c|), the last two the same
    pass with every coefficient and constant replaced by an absolute upper bound (for the
    rounding error, which they bound times γ_N)."""
    const, mag, mag_const = np.zeros(len(lam)), np.abs(lam), np.zeros(len(lam))
    for k in range(len(nodes) - 1, -1, -1):
        node = nodes[k]
        if isinstance(node, AFFINE_TYPES + SHAPE_TYPES):
            bias = node_offset(node)
            const += _row_sums(lam * bias)
            mag_const += _row_sums(mag * np.abs(bias))
            lam = node.adjoint(lam)
            mag = (with_weights(node, np.abs) if isinstance(node, AFFINE_TYPES) else node).adjoint(mag)
        elif isinstance(node, Relu):
            lam, c, slope, reach = _relu_back(lam, *ranges[k])
            const += c
            mag_const += _row_sums(mag * reach)
            mag = mag * slope
        elif isinstance(node, MaxPool):
            lam, c, arg, top = _maxpool_back(node, lam, *ranges[k])
            const += c
            mag_const += _row_sums(mag * top)
            mag = scatter_winners(mag, arg, node.window)
        else:
            raise TypeError(f"linear relaxation does not handle {type(node).__name__}")
    return lam, const, mag, mag_const


def lower_bounds(nodes: tuple[Node, ...], ranges: dict[int, tuple[Any, Any]], rows: Any,
                 x0: Any, eps: float) -> Any:
    """min over ‖x − x0‖₂ ≤ ε of each row·chain(x) (rows: (q, *output shape)), rounded down:
    every computed value is a sum of at most N products (N: fan-ins along the chain, plus a few
    operations per nonlinear node and for the concretization), so its error is at most γ_N
    times the same sum of absolute values."""
    lam, const, mag, mag_const = back_substitute(nodes, ranges, rows)
    flat, mag = lam.reshape(len(lam), -1), mag.reshape(len(mag), -1)
    x0 = np.asarray(x0).reshape(-1)
    centre, spread = flat @ x0, eps * np.linalg.norm(flat, axis=1)
    terms = sum(fan_in(n) + 8 for n in nodes) + 2 * x0.size + 8
    slack = gamma(terms) * (mag @ np.abs(x0) + mag_const + eps * np.linalg.norm(mag, axis=1)) * (1 + 1e-6)
    return centre + const - spread - slack


def affordable(nodes: tuple[Node, ...], rows: int) -> bool:
    """Whether ``rows`` rows (each output needs two) are cheap enough to back-substitute."""
    return 2 * rows * sum(node_flops(n) for n in nodes) <= CROWN_FLOPS


def output_range(nodes: tuple[Node, ...], ranges: dict[int, tuple[Any, Any]], x0: Any, eps: float,
                 units: Any) -> tuple[Any, Any]:
    """Lower and upper bounds over the ball of the chain's outputs ``units`` (flat indices)."""
    shape = nodes[-1].out_shape
    n = int(np.prod(shape))
    lo, hi = np.empty(len(units)), np.empty(len(units))
    for start in range(0, len(units), CHUNK_ROWS):
        idx = units[start : start + CHUNK_ROWS]
        eye = np.zeros((len(idx), n))
        eye[np.arange(len(idx)), idx] = 1.0
        rows = np.concatenate([eye, -eye]).reshape(2 * len(idx), *shape)
        bounds = lower_bounds(nodes, ranges, rows, x0, eps)
        lo[start : start + len(idx)], hi[start : start + len(idx)] = bounds[: len(idx)], -bounds[len(idx) :]
    return lo, hi


def tighten(nodes: tuple[Node, ...], ranges: dict[int, tuple[Any, Any]], x0: Any, eps: float,
            lo: Any, hi: Any) -> tuple[Any, Any]:
    """[lo, hi] (the chain's output range, batch-1) intersected with the linear-relaxation
    bounds of its units that straddle 0 — the only ones whose relaxation they change —
    when that is affordable."""
    units = np.flatnonzero(((lo < 0) & (hi > 0)).reshape(-1))
    if units.size == 0 or not affordable(nodes, units.size):
        return lo, hi
    c_lo, c_hi = output_range(nodes, ranges, x0, eps, units)
    lo, hi = lo.copy().reshape(-1), hi.copy().reshape(-1)
    lo[units], hi[units] = np.maximum(lo[units], c_lo), np.minimum(hi[units], c_hi)
    return lo.reshape(1, *nodes[-1].out_shape), hi.reshape(1, *nodes[-1].out_shape)
