"""2-D convolution (ONNX Conv semantics, no bias) and its exact adjoint.

Grouped, strided, dilated and padded. ``conv2d`` is the matvec of a Conv layer,
``conv2d_adjoint`` (a transposed convolution) its rmatvec.
"""
from __future__ import annotations

from typing import Any

from .backend import array_module
from .windows import Window2d


def conv2d(x: Any, w: Any, win: Window2d, groups: int) -> Any:
    """Correlate x (N, C, H, W) with w (M, C/groups, kh, kw) -> (N, M, Ho, Wo)."""
    xp = array_module(x, w)
    n = x.shape[0]
    m, cg = w.shape[0], w.shape[1]
    ho, wo = win.out_hw
    xg = win.pad(x, xp).reshape(n, groups, cg, *win.padded_hw)
    wg = w.reshape(groups, m // groups, cg, *win.kernel)
    out = xp.zeros((n, groups, m // groups, ho * wo), dtype=xp.result_type(x, w))
    for i, j, (rows, cols) in win.offsets():
        patch = xg[:, :, :, rows, cols].reshape(n, groups, cg, ho * wo)
        out += wg[:, :, :, i, j] @ patch
    return out.reshape(n, m, ho, wo)


def conv2d_adjoint(u: Any, w: Any, win: Window2d, groups: int) -> Any:
    """Adjoint of ``conv2d``: u (N, M, Ho, Wo) -> (N, C, H, W)."""
    xp = array_module(u, w)
    n = u.shape[0]
    m, cg = w.shape[0], w.shape[1]
    ho, wo = win.out_hw
    ug = u.reshape(n, groups, m // groups, ho * wo)
    wt = w.reshape(groups, m // groups, cg, *win.kernel).transpose(0, 2, 1, 3, 4)
    grad = xp.zeros((n, groups, cg, *win.padded_hw), dtype=xp.result_type(u, w))
    for i, j, (rows, cols) in win.offsets():
        grad[:, :, :, rows, cols] += (wt[:, :, :, i, j] @ ug).reshape(n, groups, cg, ho, wo)
    return win.crop(grad.reshape(n, groups * cg, *win.padded_hw))
