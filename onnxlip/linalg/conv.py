"""2-D convolution (ONNX Conv semantics, no bias) and its exact adjoint.

Grouped, strided, dilated and padded. ``conv2d`` is the matvec of a Conv layer,
``conv2d_adjoint`` (a transposed convolution) its rmatvec.

Two equivalent evaluations: a loop of one GEMM per kernel offset (no buffer; efficient
when each GEMM's inner dimension, the channels per group, is large), and im2col (one
GEMM over a patch buffer) when there are few channels per group or more output than
input channels — a first layer with 3 channels and an 11×11 kernel would otherwise make
121 GEMMs of inner size 3, each re-reading the whole output (AlexNet, one thread: first
layer 20 → 7 ms, 64→192 channels 18 → 13 ms; VGG16 64→128 at 112²: 100 → 60 ms). On a GPU,
where each GEMM is a kernel launch, im2col is used whenever the buffer fits.
"""
from __future__ import annotations

from typing import Any

from .backend import array_module
from .windows import Window2d


# im2col when a group has fewer input channels than this and the patch buffer stays small.
IM2COL_MAX_CHANNELS = 32
IM2COL_MAX_ELEMENTS = 2**25


def use_im2col(batch: int, w: Any, win: Window2d, groups: int) -> bool:
    """Whether ``conv2d``/``conv2d_adjoint`` take the im2col path for this shape: the offset
    loop re-reads and re-writes the output once per tap, im2col copies the input once per
    tap, so im2col wins when a group has fewer input channels than output channels, or few."""
    taps = win.kernel[0] * win.kernel[1]
    cg, mg = w.shape[1], w.shape[0] // groups
    patch = batch * groups * cg * taps * win.out_hw[0] * win.out_hw[1]
    if array_module(w).__name__ != "numpy":  # a GPU: kernel launches dominate, so one large GEMM wins
        return taps > 1 and patch <= IM2COL_MAX_ELEMENTS
    return (cg < IM2COL_MAX_CHANNELS or cg < mg) and taps > 1 and patch <= IM2COL_MAX_ELEMENTS


def conv2d(x: Any, w: Any, win: Window2d, groups: int) -> Any:
    """Correlate x (N, C, H, W) with w (M, C/groups, kh, kw) -> (N, M, Ho, Wo)."""
    xp = array_module(x, w)
    n = x.shape[0]
    m, cg = w.shape[0], w.shape[1]
    ho, wo = win.out_hw
    xg = win.pad(x, xp).reshape(n, groups, cg, *win.padded_hw)
    wg = w.reshape(groups, m // groups, cg, *win.kernel)
    dtype = xp.result_type(x, w)
    if use_im2col(n, w, win, groups):
        taps = win.kernel[0] * win.kernel[1]
        patches = xp.empty((n, groups, cg, taps, ho * wo), dtype=dtype)
        for t, (_, _, (rows, cols)) in enumerate(win.offsets()):
            patches[:, :, :, t] = xg[:, :, :, rows, cols].reshape(n, groups, cg, ho * wo)
        out = wg.reshape(groups, m // groups, cg * taps) @ patches.reshape(n, groups, cg * taps, ho * wo)
        return out.reshape(n, m, ho, wo)
    out = xp.zeros((n, groups, m // groups, ho * wo), dtype=dtype)
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
    if use_im2col(n, w, win, groups):
        taps = win.kernel[0] * win.kernel[1]
        wcols = w.reshape(groups, m // groups, cg * taps).transpose(0, 2, 1)
        patches = (wcols @ ug).reshape(n, groups, cg, taps, ho, wo)
        for t, (_, _, (rows, cols)) in enumerate(win.offsets()):
            grad[:, :, :, rows, cols] += patches[:, :, :, t]
        return win.crop(grad.reshape(n, groups * cg, *win.padded_hw))
    for i, j, (rows, cols) in win.offsets():
        grad[:, :, :, rows, cols] += (wt[:, :, :, i, j] @ ug).reshape(n, groups, cg, ho, wo)
    return win.crop(grad.reshape(n, groups * cg, *win.padded_hw))
