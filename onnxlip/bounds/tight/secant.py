"""Secant linearizations of the nonlinear nodes over a ball around x0.

For x in the ball, each nonlinear node maps its input z to g(z) with
g(z) − g(z0) = S·(z − z0) for a *secant* matrix S that depends on x but lies in a
known set: S = S̄ + L·U·R with ‖U‖₂ ≤ 1 and diagonal factors L (output side) and
R (input side). Units whose secant cannot vary get L = R = 0 there.
- ReLU: s_i ∈ [s_lo, s_hi] from the input range [lo, hi]; S̄ = diag(mid), L = R = √half-width.
- MaxPool: the difference of the max is a convex combination λ of the window's
  candidates (mean-value argument for a convex function). S̄ averages the
  candidates of unstable windows (and selects the winner of stable ones), L = γ on
  unstable windows, R = 1 on their candidates. With k candidates a row of E = λ − S̄
  has ‖·‖₂ ≤ √(1 − 1/k) and ‖·‖₁ ≤ 2(1 − 1/k); a column meets at most n windows, so
  γ = √(1 − 1/k) when windows do not overlap, else √(2n)·(1 − 1/k) ≥ ‖E‖₂.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...linalg.backend import array_module
from ...graph.nodes import MaxPool, Relu
from ...linalg.pooling import maxpool2d, mix_windows, spread_windows, window_candidates


@dataclass(frozen=True, eq=False)
class Secant:
    """Centre linearization of one nonlinear node and its deviation factors (None: stable)."""

    node: Any
    center: Any  # ReLU: slopes (batch-1 shaped); MaxPool: one weight array per kernel tap
    left: Any = None  # output-side diagonal, batch-1 shaped
    right: Any = None  # input-side diagonal, batch-1 shaped
    unstable: int = 0

    def jvp(self, v: Any) -> Any:
        if isinstance(self.node, Relu):
            return v * self.center
        return mix_windows(v, self.center, self.node.window)

    def vjp(self, u: Any) -> Any:
        if isinstance(self.node, Relu):
            return u * self.center
        return spread_windows(u, self.center, self.node.window)


def relu_slope_interval(z0: Any, lo: Any, hi: Any) -> tuple[Any, Any]:
    """Range [s_lo, s_hi] of (ReLU(z) − ReLU(z0)) / (z − z0) over z ∈ [lo, hi]."""
    xp = array_module(z0)
    crossing = (lo < 0) & (hi > 0)
    above = xp.where(z0 > 0, z0 / xp.where(z0 - lo > 0, z0 - lo, 1), 0.0)
    below = xp.where(z0 < 0, hi / xp.where(hi - z0 > 0, hi - z0, 1), 1.0)
    s_lo = xp.where(crossing, above, (lo >= 0) * 1.0)
    s_hi = xp.where(crossing, xp.where(z0 < 0, below, 1.0), (lo >= 0) * 1.0)
    s_lo = xp.where(hi <= lo, (z0 > 0) * 1.0, s_lo)  # a unit that cannot move
    s_hi = xp.where(hi <= lo, (z0 > 0) * 1.0, s_hi)
    return s_lo, s_hi


def relu_secant(node: Relu, z0: Any, lo: Any, hi: Any) -> Secant:
    xp = array_module(z0)
    s_lo, s_hi = relu_slope_interval(z0, lo, hi)
    half = (s_hi - s_lo) / 2
    count = int(xp.count_nonzero(half > 0))
    if count == 0:
        return Secant(node, s_lo)
    root = xp.sqrt(half)
    return Secant(node, (s_lo + s_hi) / 2, root, root, count)


def maxpool_secant(node: MaxPool, z0: Any, lo: Any, hi: Any) -> Secant:
    xp = array_module(z0)
    win = node.window
    unstable, candidates = window_candidates(lo, hi, maxpool2d(z0, win)[1], win)
    counts = sum(c.astype(z0.dtype) for c in candidates)
    weights = [c / counts for c in candidates]
    n_unstable = int(xp.count_nonzero(unstable))
    if n_unstable == 0:
        return Secant(node, weights)
    spread = 1 - 1 / float(xp.max(counts[unstable]))
    overlap = win.max_windows_per_element()
    gamma = math.sqrt(spread) if overlap == 1 else math.sqrt(2 * overlap) * spread
    right = spread_windows(unstable.astype(z0.dtype), candidates, win) > 0
    return Secant(node, weights, gamma * unstable.astype(z0.dtype), right.astype(z0.dtype), n_unstable)


def secant(node: Any, z0: Any, lo: Any, hi: Any) -> Secant:
    """Secant set of a Relu or MaxPool node for inputs in [lo, hi] (batch-1 arrays)."""
    return relu_secant(node, z0, lo, hi) if isinstance(node, Relu) else maxpool_secant(node, z0, lo, hi)
