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
from .pooling import (maxpool2d, mix_windows, scatter_winners, select_winners, spread_windows, top_two,
                      window_candidates, window_taps)

# Back-substitute a layer's rows only when rows × flops of the prefix stay below this.
CROWN_FLOPS = 1e9
CHUNK_ROWS = 512


def _relu_back(lam: Any, lo: Any, hi: Any, alpha: Any = None) -> tuple[Any, Any, Any, Any, Any]:
    """Λ through ReLU with input range [lo, hi]: (new Λ, constant added per row, the largest
    slope per unit, the magnitude its constant and rounded lines can reach per unit, and the
    line (slope, offset) chosen per row and unit). ``alpha``: the lower lines' slopes of the
    unstable units (any values in [0, 1], per row or shared), instead of CROWN's choice."""
    unstable = (lo < 0) & (hi > 0)
    width = np.where(unstable, hi - lo, 1.0)
    chord = np.where(unstable, hi / width, (lo >= 0) * 1.0)  # upper line's slope
    lower = (hi > -lo) * 1.0 if alpha is None else np.clip(alpha, 0.0, 1.0)
    below = np.where(unstable, lower, (lo >= 0) * 1.0)  # lower line's slope
    offset = np.where(unstable, -chord * lo, 0.0)  # upper line: chord·z + offset
    negative = lam < 0
    slope = np.where(negative, chord, below)
    const = np.where(negative, lam * offset, 0.0).reshape(len(lam), -1).sum(axis=1)
    line = (slope, np.where(negative, offset, 0.0))
    return lam * slope, const, np.maximum(chord, below), np.where(unstable, offset + hi, 0.0), line


def pool_weights(node: MaxPool, lo: Any, hi: Any) -> tuple[Any, Any]:
    """The taps a window's lower line may use (its candidates, (1, C, Ho, Wo, K) bool) and the
    default weights: all on the candidate with the largest midpoint of its range."""
    win = node.window
    unstable, candidates = window_candidates(lo, hi, maxpool2d(lo, win)[1], win)
    allowed = np.stack(candidates, axis=-1)
    mid = np.where(allowed, np.stack(window_taps(lo + hi, win, -np.inf), axis=-1), -np.inf)
    return allowed, (np.arange(allowed.shape[-1]) == mid.argmax(axis=-1)[..., None]) * 1.0


def _maxpool_back(node: MaxPool, lam: Any, lo: Any, hi: Any, weights: Any = None) -> tuple[Any, ...]:
    """Λ through max-pool with input range [lo, hi]: (new Λ, constant added per row, the
    magnitude pass for ``mag``, its constant per window, and the chosen lines as a function).
    ``weights``: convex weights per window tap of the lower line (..., K), instead of the
    default of ``pool_weights``."""
    win = node.window
    allowed, default = pool_weights(node, lo, hi)
    unstable = allowed.sum(axis=-1) > 1
    if weights is not None:  # only convex weights on allowed taps of unstable windows are valid
        weights = np.where(allowed, np.maximum(weights, 0.0), 0.0)
        total = weights.sum(axis=-1, keepdims=True)
        default = np.where(unstable[..., None] & (total > 0), weights / np.where(total > 0, total, 1.0), default)
    mix = [default[..., k] for k in range(allowed.shape[-1])]
    top, peak, other = top_two(hi, win)
    # max = max(x_j, others) ≤ max(x_j, c) for j the tap with the largest upper bound and c the
    # others' largest upper bound; that is ≤ its chord over [l_j, u_j] (slope 0 when c ≥ u_j).
    low = select_winners(lo, peak, win)
    gap = np.where(unstable, top - low, 1.0)
    slope = np.where(unstable, np.clip((top - other) / gap, 0.0, 1.0), 0.0)
    offset = np.where(unstable, np.maximum(other, low) - slope * low, 0.0)
    upper = unstable & (lam < 0)  # max ≤ chord
    # max ≥ any convex combination of its elements (= the winner on stable windows)
    through = np.where(upper, 0.0, lam)
    const = np.where(upper, lam * offset, 0.0).reshape(len(lam), -1).sum(axis=1)
    new = spread_windows(through, mix, win) + scatter_winners(np.where(upper, lam * slope, 0.0), peak, win)

    def magnitude(mag: Any) -> Any:
        return spread_windows(mag, mix, win) + scatter_winners(mag * slope, peak, win)

    def apply(z: Any) -> Any:  # the chosen line of each row and window, at input z
        return np.where(upper, slope * select_winners(z, peak, win) + offset, mix_windows(z, mix, win))

    return new, const, magnitude, np.abs(offset), apply


def _row_sums(a: Any) -> Any:
    return a.reshape(len(a), -1).sum(axis=1)


def back_substitute(nodes: tuple[Node, ...], ranges: dict[int, tuple[Any, Any]], lam: Any,
                    alphas: dict[int, Any] | None = None, lines: dict[int, Any] | None = None) -> tuple[Any, ...]:
    """Λ·chain(x) ≥ Λ_in·x + c for x with every nonlinear node's input in ``ranges``
    (index → (lo, hi), batch-1 arrays): returns (Λ_in, c, |Λ|_in, |c|), the last two the same
    pass with every coefficient and constant replaced by an absolute upper bound (for the
    rounding error, which they bound times γ_N). ``alphas``: lower lines per nonlinear node index (ReLU
    slopes, max-pool weights: see ``_relu_back``, ``_maxpool_back``); ``lines``: filled with each nonlinear node's relaxation, per row, as a
    function of its input (what ``relaxed_forward`` runs)."""
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
            out = lam
            lam, c, slope, reach, (line, offset) = _relu_back(lam, *ranges[k], (alphas or {}).get(k))
            const += c
            mag_const += _row_sums(mag * reach)
            mag = mag * slope
            if lines is not None:
                lines[k] = (out, lambda z, line=line, offset=offset: line * z + offset)
        elif isinstance(node, MaxPool):
            out = lam
            lam, c, magnitude, reach, apply = _maxpool_back(node, lam, *ranges[k], (alphas or {}).get(k))
            const += c
            mag_const += _row_sums(mag * reach)
            mag = magnitude(mag)
            if lines is not None:
                lines[k] = (out, apply)
        else:
            raise TypeError(f"linear relaxation does not handle {type(node).__name__}")
    return lam, const, mag, mag_const


def lower_bounds(nodes: tuple[Node, ...], ranges: dict[int, tuple[Any, Any]], rows: Any,
                 x0: Any, eps: float, alphas: dict[int, Any] | None = None) -> Any:
    """min over ‖x − x0‖₂ ≤ ε of each row·chain(x) (rows: (q, *output shape)), rounded down:
    every computed value is a sum of at most N products (N: fan-ins along the chain, plus a few
    operations per nonlinear node and for the concretization), so its error is at most γ_N
    times the same sum of absolute values."""
    lam, const, mag, mag_const = back_substitute(nodes, ranges, rows, alphas)
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
