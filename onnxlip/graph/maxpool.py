"""2-D max-pooling: its JVP at x0 selects each window's winner; its interval is monotone; its
linear relaxation on an input range (``PoolLines``); its secant set (tight mode); the paper's
closed-form constant √n (n the most windows one input element falls into)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..linalg.backend import array_module
from ..linalg.pooling import (maxpool2d, mix_windows, scatter_winners, select_winners, spread_windows, top_two,
                              window_candidates, window_taps)
from ..linalg.patches import Patches, grown, input_frame, pull_through_window, push_through_window
from ..linalg.windows import Window2d
from .base import (LocalConstant, Monotone, NodeBase, OnPatches, Shape, Step, lines_step, patch_step, row_sums,
                   short_text)
from .secant import Secant


@dataclass(frozen=True, eq=False, repr=False)
class MaxPool(OnPatches, Monotone, NodeBase):
    """2-D max-pooling."""

    window: Window2d
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "maxpool"
    nonlinear = True

    def forward(self, x: Any) -> Any:
        return maxpool2d(x, self.window)[0]

    def mask(self, d: Any) -> Any:
        """Which outputs may change, given which inputs may (d ≥ 0)."""
        return maxpool2d(d, self.window)[0]

    def jvp(self, x0: Any, v: Any) -> Any:
        return select_winners(v, maxpool2d(x0, self.window)[1], self.window)

    def vjp(self, x0: Any, u: Any) -> Any:
        return scatter_winners(u, maxpool2d(x0, self.window)[1], self.window)

    def describe(self) -> str:
        return f"maxpool {short_text(self.window.kernel)} s{short_text(self.window.strides)}"

    # Factor form: one weight array per kernel tap (the winner at x0, or a secant's centre).
    def factors_at(self, a: Any) -> list[Any]:
        arg = maxpool2d(a, self.window)[1]
        return [(arg == k) * 1.0 for k in range(self.window.kernel[0] * self.window.kernel[1])]

    def factored_jvp(self, weights: list[Any], v: Any) -> Any:
        return mix_windows(v, weights, self.window)

    def factored_vjp(self, weights: list[Any], u: Any) -> Any:
        return spread_windows(u, weights, self.window)

    def pull_patches(self, p: Patches, weights: list[Any]) -> Patches:
        return pull_through_window(p, self.window, self.in_shape[1:],
                                   lambda data, win: spread_windows(data, [p.gather(w) for w in weights], win))

    def push_patches(self, p: Patches, weights: list[Any]) -> Patches:
        return push_through_window(p, self.window, self.out_shape[1:], lambda framed, win, out: mix_windows(
            framed, [out.gather(w) for w in weights], win))

    def patch_pull_cost(self, size: Any, out_area: float) -> tuple[float, Any]:
        """(multiply-adds, patch size) of pulling a patch of ``size`` back: selection is free."""
        return 0.0, grown(size, self.window)

    def factor_terms(self) -> int:
        return self.window.kernel[0] * self.window.kernel[1]

    def factor_norm(self, weights: list[Any]) -> float:
        """Winner selection or convex rows: a column meets at most n windows."""
        return self.norm_bound()

    def fixed_units(self, sec: Secant) -> tuple[int, int]:
        return 0, 0

    def norm_bound(self) -> float:
        return self.lipschitz_constant() * (1 + 1e-15)

    def lipschitz_constant(self) -> float:
        return math.sqrt(self.window.max_windows_per_element())

    def local_constant(self, x0: Any, d: Any, ball: float, box: tuple[Any, Any] | None) -> LocalConstant:
        return LocalConstant(self.lipschitz_constant(), self.mask(d[None])[0])

    def unstable_inputs(self, lo: Any, hi: Any) -> Any:
        """No units: linear-relaxation ranges tighten only ReLU inputs."""
        return np.array([], int)

    def relax_terms(self) -> int:
        """Sums its lines add to one coefficient in back-substitution: its taps (the convex
        weights and their normalisation) and both lines' spreads, each meeting every window an
        element is in."""
        return self.window.kernel[0] * self.window.kernel[1] + 2 * self.window.max_windows_per_element()

    def relax(self, lo: Any, hi: Any) -> "PoolLines":
        win = self.window
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

    def back_step(self, lines: "PoolLines", lam: Any, mag: Any, choice: Any) -> tuple[Step, Any]:
        return lines_step(lines, lam, mag, choice)

    def patch_back_step(self, lines: "PoolLines", lam: Patches, mag: Patches | None) -> tuple[Step, Any]:
        local, origin = lines.gathered(lam)
        new, const, magnitude, _ = local.back(lam.data)
        grid = self.in_shape[1:]
        return patch_step(lam.in_frame(new, origin, grid), const,
                          lambda m: m.in_frame(magnitude(m.data), origin, grid), lambda: local.reach, mag)

    def secant(self, z0: Any, lo: Any, hi: Any, can_win: list[Any] | None = None) -> Secant:
        """The max's difference is a convex combination λ of the window's candidates (mean-value
        argument for a convex function): S̄ averages the candidates of unstable windows (and
        selects the winner of stable ones), L = γ on unstable windows, R = 1 on their
        candidates. With k candidates a row of E = λ − S̄ has ‖·‖₂ ≤ √(1 − 1/k) and
        ‖·‖₁ ≤ 2(1 − 1/k); a column meets at most n windows, so γ = √(1 − 1/k) when windows
        do not overlap, else √(2n)·(1 − 1/k) ≥ ‖E‖₂. Candidates are the taps whose range can
        reach the window's max, and among them those ``can_win`` allows (``pool_tree.winners``:
        ranges of the taps' differences); the winner at z0 always is one."""
        xp = array_module(z0)
        win = self.window
        arg = maxpool2d(z0, win)[1]
        unstable, candidates = window_candidates(lo, hi, arg, win)
        if can_win is not None:
            candidates = [c & (w | (arg == t)) for t, (c, w) in enumerate(zip(candidates, can_win))]
        counts = sum(c.astype(z0.dtype) for c in candidates)
        if can_win is not None:
            unstable = counts > 1
        weights = [c / counts for c in candidates]
        n_unstable = int(xp.count_nonzero(unstable))
        if n_unstable == 0:
            return Secant(self, weights)
        spread = 1 - 1 / float(xp.max(counts[unstable]))
        overlap = win.max_windows_per_element()
        gamma = math.sqrt(spread) if overlap == 1 else math.sqrt(2 * overlap) * spread
        right = spread_windows(unstable.astype(z0.dtype), candidates, win) > 0
        return Secant(self, weights, gamma * unstable.astype(z0.dtype), right.astype(z0.dtype), n_unstable)


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

    @property
    def free(self) -> Any:
        """Where lower weights can be chosen: the allowed taps of each window."""
        return self.allowed

    def gathered(self, p: Patches) -> tuple["PoolLines", Any]:
        """The lines over each patch's input frame, and the frames' origins."""
        origin, win = input_frame(p, self.window)
        arrays = {f.name: p.gather(getattr(self, f.name)) for f in fields(self) if f.name != "window"}
        return PoolLines(win, **arrays), origin

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

    def gradient(self, lam: Any, z: Any, free: Any) -> Any:
        """∂bound/∂(tap weight): Λ·(the tap's value) where the lower line is used (Λ ≥ 0)."""
        lam, z = lam[..., None], np.stack(window_taps(z, self.window), axis=-1)
        return np.where((lam >= 0) & free, lam * z, 0.0)

    @staticmethod
    def project(w: Any, allowed: Any) -> Any:
        """Euclidean projection of each window's weights (last axis) on the simplex of its
        allowed taps."""
        v = np.where(allowed, w, -1e30)
        u = -np.sort(-v, axis=-1)
        cumulative = np.cumsum(u, axis=-1) - 1
        count = np.arange(1, w.shape[-1] + 1)
        last = np.maximum((u - cumulative / count > 0).sum(axis=-1, keepdims=True), 1)
        shift = np.take_along_axis(cumulative, last - 1, axis=-1) / last
        return np.where(allowed, np.maximum(v - shift, 0.0), 0.0)

    def scores(self, lam: Any, signs: Any) -> None:
        """None: branching splits only ReLU units."""
        return None
