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
