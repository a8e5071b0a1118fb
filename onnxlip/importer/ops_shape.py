"""Converters for shape operators: Flatten, Reshape, Squeeze, Unsqueeze,
Transpose, Pad. Where the graph has a batch axis it is fixed to 1 and must stay
the first axis."""
from __future__ import annotations

import numpy as np

from ..graph.nodes import Node, Pad, Reshape, Scale, Transpose
from .registry import ConversionError, NodeContext, converter


def _reshape_node(ctx: NodeContext, full_out: tuple[int, ...]) -> list[Node]:
    if int(np.prod(full_out)) != int(np.prod(ctx.in_shape)):
        raise ConversionError(f"reshape to {list(full_out)} changes the number of elements")
    out = ctx.sample_shape(full_out, "reshape")
    return [] if out == ctx.in_shape else [Reshape(ctx.in_shape, out, ctx.label)]


def _axes(ctx: NodeContext) -> list[int]:
    axes = ctx.const(1, "axes") if len(ctx.node.input) > 1 else ctx.attr("axes")
    return [] if axes is None else [int(a) for a in np.ravel(axes)]


@converter("Flatten", attrs=("axis",))
def convert_flatten(ctx: NodeContext) -> list[Node]:
    full = ctx.full_shape
    axis = ctx.attr("axis", 1) % (len(full) or 1)
    return _reshape_node(ctx, (int(np.prod(full[:axis])), int(np.prod(full[axis:]))))


@converter("Reshape", attrs=("allowzero",), inputs=2)
def convert_reshape(ctx: NodeContext) -> list[Node]:
    target = [int(d) for d in ctx.const(1, "shape")]
    full = ctx.full_shape
    if not ctx.attr("allowzero", 0):
        target = [full[i] if d == 0 else d for i, d in enumerate(target)]
    try:
        out = np.empty(full, dtype=np.int8).reshape(target).shape
    except ValueError as exc:
        raise ConversionError(f"cannot reshape {list(full)} to {target}: {exc}") from None
    return _reshape_node(ctx, out)


@converter("Squeeze", attrs=("axes",), inputs=2)
def convert_squeeze(ctx: NodeContext) -> list[Node]:
    full = ctx.full_shape
    axes = [a % len(full) for a in _axes(ctx)] or [i for i, d in enumerate(full) if d == 1]
    if ctx.batched and 0 in axes:
        raise ConversionError("squeezing the batch axis is not supported")
    return _reshape_node(ctx, tuple(d for i, d in enumerate(full) if i not in axes))


@converter("Unsqueeze", attrs=("axes",), inputs=2)
def convert_unsqueeze(ctx: NodeContext) -> list[Node]:
    out = list(ctx.full_shape)
    rank = len(out) + len(_axes(ctx))
    for a in sorted(a % rank for a in _axes(ctx)):
        out.insert(a, 1)
    return _reshape_node(ctx, tuple(out))


@converter("Transpose", attrs=("perm",))
def convert_transpose(ctx: NodeContext) -> list[Node]:
    rank = len(ctx.full_shape)
    perm = [int(p) for p in ctx.attr("perm", list(range(rank))[::-1])]
    if ctx.batched:
        if perm[0] != 0:
            raise ConversionError(f"perm {perm} moves the batch axis")
        perm = [p - 1 for p in perm[1:]]
    sample_perm = tuple(perm)
    if sample_perm == tuple(range(len(sample_perm))):
        return []
    out = tuple(ctx.in_shape[p] for p in sample_perm)
    return [Transpose(sample_perm, ctx.in_shape, out, ctx.label)]


def _pad_value(ctx: NodeContext) -> float:
    """The constant padding value: an attribute before opset 11, the third input after."""
    if ctx.opset < 11:
        return float(ctx.attr("value", 0.0))
    value = ctx.const(2, "constant_value")
    return 0.0 if value is None else float(np.ravel(value)[0])


@converter("Pad", attrs=("mode", "pads", "value"), inputs=4)
def convert_pad(ctx: NodeContext) -> list[Node]:
    """Constant padding: zero padding, plus a constant shift where the value is not zero
    (reflect/edge/wrap padding is not one affine map of norm 1)."""
    ctx.refuse_attr("mode", "constant")
    full = ctx.full_shape
    rank = len(full)
    pads = ctx.const(1, "pads") if ctx.opset >= 11 else ctx.attr("pads")
    if pads is None:
        raise ConversionError("no pads")
    pads = [int(p) for p in np.ravel(pads)]
    axes = ctx.const(3, "axes")
    axes_list = list(range(rank)) if axes is None else [int(a) % rank for a in np.ravel(axes)]
    if len(pads) != 2 * len(axes_list):
        raise ConversionError(f"{len(pads)} pads for {len(axes_list)} axes")
    begin, end = [0] * rank, [0] * rank
    for k, a in enumerate(axes_list):
        begin[a], end[a] = pads[k], pads[k + len(axes_list)]
    if min(begin + end) < 0 or (ctx.batched and (begin[0] or end[0])):
        raise ConversionError(f"pads {pads} pad the batch axis or crop")
    first = 1 if ctx.batched else 0
    widths = tuple(zip(begin[first:], end[first:]))
    out = tuple(n + b + e for n, (b, e) in zip(ctx.in_shape, widths))
    pad = Pad(widths, ctx.in_shape, out, ctx.label)
    value = _pad_value(ctx)
    if not np.isfinite(value):
        raise ConversionError(f"padding value {value} is not finite")
    if value == 0.0:
        return [pad]
    # Padding with c = zero padding + c on the border: an affine map with the same matrix.
    border = 1.0 - pad.forward(np.ones((1, *ctx.in_shape)))[0]
    return [pad, Scale(np.ones(out), value * border, out, out, ctx.label)]
