"""Max-pooling kernels: forward value, winner index, and the winner-fixed JVP/VJP.

With the winning element of each window fixed (the activation pattern at a
nominal input), max-pooling is a selection matrix; these apply it and its
transpose without forming it.
"""
from __future__ import annotations

from typing import Any

from .backend import array_module
from .windows import Window2d


def maxpool2d(x: Any, win: Window2d) -> tuple[Any, Any]:
    """Max over windows of x (N, C, H, W): (values, index of the winning tap)."""
    xp = array_module(x)
    xpad = win.pad(x, xp, value=-xp.inf)
    best = None
    arg = None
    for k, (_, _, (rows, cols)) in enumerate(win.offsets()):
        patch = xpad[:, :, rows, cols]
        if best is None:
            best = patch.copy()
            arg = xp.zeros(patch.shape, dtype=xp.int32)
            continue
        better = patch > best
        best = xp.where(better, patch, best)
        arg = xp.where(better, k, arg)
    return best, arg


def window_taps(x: Any, win: Window2d, pad_value: float = 0.0) -> list[Any]:
    """x (N, C, H, W) seen by each kernel tap: one (N, C, Ho, Wo) array per tap."""
    xpad = win.pad(x, array_module(x), value=pad_value)
    return [xpad[:, :, rows, cols] for _, _, (rows, cols) in win.offsets()]


def top_two(x: Any, win: Window2d) -> tuple[Any, Any, Any]:
    """Per window of x: (largest value, its tap, largest value of the other taps)."""
    xp = array_module(x)
    best, arg = maxpool2d(x, win)
    xpad = win.pad(x, xp, value=-xp.inf)
    second = xp.full(best.shape, -xp.inf, dtype=best.dtype)
    for k, (_, _, (rows, cols)) in enumerate(win.offsets()):
        second = xp.maximum(second, xp.where(arg == k, -xp.inf, xpad[:, :, rows, cols]))
    return best, arg, second


def _one_hot(arg: Any, win: Window2d) -> list[Any]:
    """Per kernel tap, where ``arg`` selects it: the winner-fixed weights of ``mix_windows``."""
    return [arg == k for k in range(win.kernel[0] * win.kernel[1])]


def select_winners(v: Any, arg: Any, win: Window2d) -> Any:
    """JVP of max-pool with winners ``arg`` fixed: v (N, C, H, W) -> (N, C, Ho, Wo)."""
    return mix_windows(v, _one_hot(arg, win), win)


def scatter_winners(u: Any, arg: Any, win: Window2d) -> Any:
    """VJP of max-pool with winners fixed: u (N, C, Ho, Wo) -> (N, C, H, W)."""
    return spread_windows(u, _one_hot(arg, win), win)


def window_candidates(lo: Any, hi: Any, arg: Any, win: Window2d) -> tuple[Any, list[Any]]:
    """Which elements of each window can be its max for inputs in [lo, hi].

    Returns (unstable (N, C, Ho, Wo) bool, one (N, C, Ho, Wo) bool per kernel tap):
    a window is unstable when another element's upper bound exceeds the nominal
    winner's lower bound; a tap is a candidate when its upper bound reaches the
    largest lower bound of the window. Stable windows keep only their winner.
    """
    xp = array_module(lo)
    winner_lo = select_winners(lo, arg, win)
    max_lo = maxpool2d(lo, win)[0]
    hi_pad = win.pad(hi, xp, value=-xp.inf)
    taps = [hi_pad[:, :, rows, cols] for _, _, (rows, cols) in win.offsets()]
    unstable = xp.zeros(arg.shape, dtype=bool)
    for k, tap in enumerate(taps):
        unstable |= (arg != k) & (tap > winner_lo)
    candidates = [xp.where(unstable, tap >= max_lo, arg == k) for k, tap in enumerate(taps)]
    return unstable, candidates


def mix_windows(v: Any, weights: list[Any], win: Window2d) -> Any:
    """Σ_taps weight·tap: max-pool's JVP with a fixed convex weight per window element."""
    xp = array_module(v)
    vpad = win.pad(v, xp)
    out = 0
    for w, (_, _, (rows, cols)) in zip(weights, win.offsets()):
        out = out + w * vpad[:, :, rows, cols]
    return out


def spread_windows(u: Any, weights: list[Any], win: Window2d) -> Any:
    """Adjoint of ``mix_windows``."""
    xp = array_module(u)
    grad = xp.zeros((*u.shape[:2], *win.padded_hw), dtype=u.dtype)
    for w, (_, _, (rows, cols)) in zip(weights, win.offsets()):
        grad[:, :, rows, cols] += w * u
    return win.crop(grad)
