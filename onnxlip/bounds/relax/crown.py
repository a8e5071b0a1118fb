"""The linear relaxations of the nonlinear nodes over the L2 ball (CROWN-style), and the
pieces of back-substitution that do not depend on the graph (``graph.relax`` walks it):
- affine / shape nodes are exact: c += Λ·b, Λ ← Λ·A (the node's adjoint);
- ReLU with input range [l, u]: stable units pass (slope 1) or vanish (0); an
  unstable one is replaced by a line below it (α·z, α = 1 when u > −l, else 0) where
  its coefficient is ≥ 0, and by the chord above it (u·(z − l)/(u − l)) where < 0;
- max-pool with input ranges: a window whose winner cannot change is exact; otherwise its
  max is ≥ any convex combination of the elements that can win (by default the one with
  the largest midpoint) and ≤ the chord of max(x_j, c) over x_j's range, x_j the element
  with the largest upper bound and c the largest upper bound of the others (``PoolLines``).
Any lower line in these families is valid; ``slopes`` optimises them per row.
At the input, min over the ball of Λ·x + c is Λ·x0 + c − ε‖Λ‖₂ per row (over the ball cut
by a box of valid inputs: ``domain.concretize``).

Every relaxation is valid for every input in the ranges, so back-substitution gives a sound
lower bound whenever the ranges are; tighter ranges make it tighter. Used for the
pre-activation ranges of tight mode (rows = ± the unstable units of a layer, when affordable)
and for the margin test of the certified radius (rows = e_label − e_j).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..domain import InputBox, concretize
from ...graph.nodes import Conv, MaxPool, Node, Relu, chain_flops, node_offset, with_weights
from .patches import Patches, in_grid, input_frame, patch_cost, pull_step, unit_patches
from ...linalg.windows import Window2d
from ...linalg.pooling import (maxpool2d, mix_windows, scatter_winners, select_winners, spread_windows, top_two,
                      window_candidates, window_taps)

# Back-substitute a layer's rows only when rows × flops of the prefix stay below this.
CROWN_FLOPS = 1e9


@dataclass(frozen=True)
class ReluLines:
    """A ReLU's lines for inputs in [lo, hi]: the chord above (slope, offset) and CROWN's lower
    slope (1 when the range is mostly positive, else 0); stable units are exact (slope 1 or 0)."""

    unstable: Any
    chord: Any
    offset: Any
    default: Any
    reach: Any  # magnitude the upper line's constant and the unit can reach

    def back(self, lam: Any, alpha: Any = None) -> tuple[Any, Any, Any, Any]:
        """(new Λ, constant added per row, the largest slope per unit, the line (slope, offset)
        chosen per row and unit). ``alpha``: lower slopes of the unstable units (any values in
        [0, 1], clipped there; per row or shared) instead of the default."""
        lower = self.default if alpha is None else np.clip(alpha, 0.0, 1.0)
        below = np.where(self.unstable, lower, self.chord)
        negative = lam < 0
        slope = np.where(negative, self.chord, below)
        offset = np.where(negative, self.offset, 0.0)
        return lam * slope, row_sums(lam * offset), np.maximum(self.chord, below), (slope, offset)


def relu_lines(lo: Any, hi: Any) -> ReluLines:
    unstable = (lo < 0) & (hi > 0)
    chord = np.where(unstable, hi / np.where(unstable, hi - lo, 1.0), (lo >= 0) * 1.0)
    offset = np.where(unstable, -chord * lo, 0.0)  # upper line: chord·z + offset
    return ReluLines(unstable, chord, offset, (hi > -lo) * 1.0, np.where(unstable, offset + hi, 0.0))


@dataclass(frozen=True)
class PoolLines:
    """A max-pool's lines for inputs in [lo, hi]. Above an unstable window: max = max(x_j,
    others) ≤ max(x_j, c) for j the tap with the largest upper bound and c the others' largest
    upper bound, which is ≤ its chord over [l_j, u_j] (slope 0 when c = u_j). Below: any
    convex combination of the window's candidates (``allowed``); by default all weight on the
    candidate with the largest midpoint. Stable windows select their winner exactly."""

    window: Window2d
    allowed: Any  # (1, C, Ho, Wo, K) bool
    default: Any  # (1, C, Ho, Wo, K) weights
    unstable: Any
    peak: Any  # tap of the largest upper bound
    slope: Any
    offset: Any
    reach: Any  # magnitude the upper line's constant and the window's max can reach

    def weights(self, weights: Any = None) -> list[Any]:
        """Per-tap lower weights: ``weights`` made valid (non-negative, on allowed taps, summing
        to 1, only on unstable windows), else the default."""
        chosen = self.default
        if weights is not None:
            weights = np.where(self.allowed, np.maximum(weights, 0.0), 0.0)
            total = weights.sum(axis=-1, keepdims=True)
            valid = self.unstable[..., None] & (total > 0)
            chosen = np.where(valid, weights / np.where(total > 0, total, 1.0), self.default)
        return [chosen[..., k] for k in range(chosen.shape[-1])]

    def back(self, lam: Any, weights: Any = None) -> tuple[Any, Any, Any, Any]:
        """(new Λ, constant added per row, the magnitude pass for ``mag``, the chosen lines as a
        function of the node's input)."""
        mix, win, slope = self.weights(weights), self.window, self.slope
        upper = self.unstable & (lam < 0)  # max ≤ chord; elsewhere max ≥ (or =) the mix
        const = row_sums(np.where(upper, lam * self.offset, 0.0))
        new = spread_windows(np.where(upper, 0.0, lam), mix, win) + scatter_winners(
            np.where(upper, lam * slope, 0.0), self.peak, win)

        def magnitude(mag: Any) -> Any:
            return spread_windows(mag, mix, win) + scatter_winners(mag * slope, self.peak, win)

        def apply(z: Any) -> Any:
            return np.where(upper, slope * select_winners(z, self.peak, win) + self.offset, mix_windows(z, mix, win))

        return new, const, magnitude, apply


def pool_lines(node: MaxPool, lo: Any, hi: Any) -> PoolLines:
    win = node.window
    _, candidates = window_candidates(lo, hi, maxpool2d(lo, win)[1], win)
    allowed = np.stack(candidates, axis=-1)
    unstable = allowed.sum(axis=-1) > 1
    mid = np.where(allowed, np.stack(window_taps(lo + hi, win, -np.inf), axis=-1), -np.inf)
    default = (np.arange(allowed.shape[-1]) == mid.argmax(axis=-1)[..., None]) * 1.0
    top, peak, other = top_two(hi, win)
    low = select_winners(lo, peak, win)
    slope = np.where(unstable, np.clip((top - other) / np.where(unstable, top - low, 1.0), 0.0, 1.0), 0.0)
    offset = np.where(unstable, np.maximum(other, low) - slope * low, 0.0)
    reach = np.where(unstable, np.abs(offset) + np.abs(top), 0.0)
    return PoolLines(win, allowed, default, unstable, peak, slope, offset, reach)


def relaxations(nodes: tuple[Node, ...], ranges: dict[int, tuple[Any, Any]]) -> dict[int, Any]:
    """The lines of every nonlinear node of the chain, from its input range."""
    return {k: relu_lines(lo, hi) if isinstance(nodes[k], Relu) else pool_lines(nodes[k], lo, hi)
            for k, (lo, hi) in ranges.items() if k < len(nodes)}


def _on_patches(lines: Any, p: Patches) -> tuple[Any, Any]:
    """The lines at each patch's positions: (ReluLines on the same patches, None), or (PoolLines
    over each patch's input frame, the frame's origins)."""
    if isinstance(lines, ReluLines):
        return ReluLines(*(p.gather(getattr(lines, f.name)) for f in fields(lines))), None
    origin, win = input_frame(p, lines.window)
    arrays = {f.name: p.gather(getattr(lines, f.name)) for f in fields(lines) if f.name != "window"}
    return PoolLines(win, **arrays), origin


def patch_step(node: Node, lines: Any, lam: Patches) -> tuple[Any, Any, Any, Any]:
    """``back_substitute``'s step for one node on patches: (Λ, constant per row, the magnitude
    pass for |Λ| on the same patches, the magnitude its constant can reach per entry)."""
    if isinstance(node, Conv):
        bias = lam.gather(node_offset(node))
        return (pull_step(node, lam), row_sums(lam.data * bias),
                lambda m: pull_step(with_weights(node, np.abs), m), np.abs(bias))
    local, origin = _on_patches(lines, lam)
    if isinstance(node, Relu):
        new, const, slope, _ = local.back(lam.data)
        return lam.like(new), const, lambda m: m.like(m.data * slope), local.reach
    new, const, magnitude, _ = local.back(lam.data)
    grid = in_grid(node)
    return lam.in_frame(new, origin, grid), const, lambda m: m.in_frame(magnitude(m.data), origin, grid), local.reach


def row_sums(a: Any) -> Any:
    return a.reshape(len(a), -1).sum(axis=1)


def concretize_rows(lam: Any, x0: Any, eps: float, box: InputBox | None) -> tuple[Any, Any, Any]:
    """``domain.concretize`` for a dense or patch batch of input rows (x0 batch-1); the
    minimisers come back flat, on the patches' positions for patches."""
    if isinstance(lam, Patches):
        on_rows = lambda a: lam.gather(a.reshape(x0.shape)).reshape(len(lam), -1)  # noqa: E731
        flat = lam.data.reshape(len(lam), -1)
    else:
        on_rows = lambda a: a.reshape(-1)  # noqa: E731
        flat = lam.reshape(len(lam), -1)
    lo, hi = (None, None) if box is None else (on_rows(box.lo), on_rows(box.hi))
    return concretize(flat, on_rows(x0), eps, lo, hi)


def pool_terms(node: Node) -> int:
    """Sums a max-pool's lines add to one coefficient: its taps (the convex weights and their
    normalisation) and both lines' spreads, each meeting every window an element is in."""
    if not isinstance(node, MaxPool):
        return 0
    return node.window.kernel[0] * node.window.kernel[1] + 2 * node.window.max_windows_per_element()


def dot_and_norm(lam: Any, x: Any) -> tuple[Any, Any]:
    """Per row of a dense or patch batch: (row·x, ‖row‖₂), x batch-1."""
    if isinstance(lam, Patches):
        return row_sums(lam.data * lam.gather(x)), np.sqrt(row_sums(lam.data**2))
    flat = lam.reshape(len(lam), -1)
    return flat @ x.reshape(-1), np.linalg.norm(flat, axis=1)


def affordable(nodes: tuple[Node, ...], rows: int, one_hot: bool = False) -> bool:
    """Whether ``rows`` rows (each output needs two) are cheap enough to back-substitute;
    ``one_hot``: rows of single units, which travel as patches where they can."""
    per_row = chain_flops(nodes)
    if one_hot:
        per_row = min(per_row, patch_cost(nodes))
    return 2 * rows * per_row <= CROWN_FLOPS


def plus_minus_rows(idx: Any, shape: tuple[int, ...]) -> Any:
    """Rows e_i for i in ``idx`` then −e_i: patches on a feature map, else dense."""
    if len(shape) == 3 and len(idx):
        plus = unit_patches(idx, shape)
        return Patches(np.concatenate([plus.data, -plus.data]), np.concatenate([plus.origin] * 2), plus.hw)
    eye = np.zeros((len(idx), int(np.prod(shape))))
    eye[np.arange(len(idx)), idx] = 1.0
    return np.concatenate([eye, -eye]).reshape(2 * len(idx), *shape)
