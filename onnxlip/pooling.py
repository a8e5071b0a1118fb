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


def select_winners(v: Any, arg: Any, win: Window2d) -> Any:
    """JVP of max-pool with winners ``arg`` fixed: v (N, C, H, W) -> (N, C, Ho, Wo)."""
    xp = array_module(v)
    vpad = win.pad(v, xp)
    out = xp.zeros(arg.shape, dtype=v.dtype)
    for k, (_, _, (rows, cols)) in enumerate(win.offsets()):
        out = xp.where(arg == k, vpad[:, :, rows, cols], out)
    return out


def scatter_winners(u: Any, arg: Any, win: Window2d) -> Any:
    """VJP of max-pool with winners fixed: u (N, C, Ho, Wo) -> (N, C, H, W)."""
    xp = array_module(u)
    n, c = u.shape[:2]
    grad = xp.zeros((n, c, *win.padded_hw), dtype=u.dtype)
    for k, (_, _, (rows, cols)) in enumerate(win.offsets()):
        grad[:, :, rows, cols] += xp.where(arg == k, u, 0)
    return win.crop(grad)


def unstable_windows(lo: Any, hi: Any, arg: Any, win: Window2d) -> tuple[Any, Any]:
    """Windows whose winner may change over input ranges [lo, hi], and their candidates.

    Returns (unstable (N, C, Ho, Wo) bool, candidates (N, C, H, W) bool): a window
    is unstable when some other element's upper bound exceeds the nominal
    winner's lower bound; its candidates are the elements that can be the max.
    """
    xp = array_module(lo)
    winner_lo = select_winners(lo, arg, win)
    max_lo = maxpool2d(lo, win)[0]
    hi_pad = win.pad(hi, xp, value=-xp.inf)
    unstable = xp.zeros(arg.shape, dtype=bool)
    for k, (_, _, (rows, cols)) in enumerate(win.offsets()):
        unstable |= (arg != k) & (hi_pad[:, :, rows, cols] > winner_lo)
    n, c = lo.shape[:2]
    cand = xp.zeros((n, c, *win.padded_hw), dtype=bool)
    for _, _, (rows, cols) in win.offsets():
        cand[:, :, rows, cols] |= unstable & (hi_pad[:, :, rows, cols] >= max_lo)
    return unstable, win.crop(cand)
