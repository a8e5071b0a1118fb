"""Converters for pooling: MaxPool, and average pools as depthwise convolutions."""
from __future__ import annotations

import numpy as np

from ..graph.nodes import Conv, MaxPool, Node
from ..linalg.windows import Window2d
from .geometry import window_from_attrs
from .registry import ConversionError, NodeContext, converter


def _image_shape(ctx: NodeContext) -> tuple[int, int, int]:
    ctx.require_batch()
    if len(ctx.in_shape) != 3:
        raise ConversionError(f"only 2-D pooling (NCHW) is supported, got per-sample shape {ctx.in_shape}")
    return ctx.in_shape  # type: ignore[return-value]


@converter("MaxPool", attrs=("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"))
def convert_maxpool(ctx: NodeContext) -> list[Node]:
    ctx.refuse_attr("storage_order", 0)
    ctx.refuse_extra_outputs()
    c, h, w = _image_shape(ctx)
    win = window_from_attrs(ctx, tuple(ctx.attr("kernel_shape")), (h, w))  # type: ignore[arg-type]
    return [MaxPool(win, ctx.in_shape, (c, *win.out_hw), ctx.label)]


def _average_conv(ctx: NodeContext, win: Window2d, channels: int) -> Conv:
    """Average pooling = depthwise convolution with weights 1/(kh·kw)."""
    kh, kw = win.kernel
    weight = np.full((channels, 1, kh, kw), 1.0 / (kh * kw))
    bias = np.zeros((channels, 1, 1))
    return Conv(weight, bias, win, channels, ctx.in_shape, (channels, *win.out_hw), ctx.label)


@converter("AveragePool", attrs=("auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"))
def convert_averagepool(ctx: NodeContext) -> list[Node]:
    c, h, w = _image_shape(ctx)
    win = window_from_attrs(ctx, tuple(ctx.attr("kernel_shape")), (h, w))  # type: ignore[arg-type]
    declared = (h + win.pads[0] + win.pads[2], w + win.pads[1] + win.pads[3])
    needs_divisor = any(win.pads) and not ctx.attr("count_include_pad", 0)
    if needs_divisor or win.padded_hw != declared:
        # The divisor then varies with the window's position: not one fixed kernel.
        raise ConversionError("padding excluded from the average (count_include_pad=0 or ceil_mode) is not supported")
    return [_average_conv(ctx, win, c)]


@converter("GlobalAveragePool")
def convert_global_averagepool(ctx: NodeContext) -> list[Node]:
    c, h, w = _image_shape(ctx)
    win = Window2d((h, w), (1, 1), (1, 1), (0, 0, 0, 0), (h, w), (1, 1))
    return [_average_conv(ctx, win, c)]
