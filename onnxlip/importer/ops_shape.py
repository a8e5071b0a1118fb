"""Converters for shape operators: Flatten, Reshape, Squeeze, Unsqueeze,
Transpose, Pad. The batch axis is fixed to 1 and must stay the first axis."""
from __future__ import annotations

import numpy as np

from ..ir import Node, Pad, Reshape, Transpose
from .registry import ConversionError, NodeContext, converter


def _reshape_node(ctx: NodeContext, full_out: tuple[int, ...]) -> list[Node]:
    if not full_out or full_out[0] != 1 or int(np.prod(full_out)) != int(np.prod(ctx.in_shape)):
        raise ConversionError(f"reshape to {list(full_out)} would move the batch axis")
    out = tuple(int(d) for d in full_out[1:])
    return [] if out == ctx.in_shape else [Reshape(ctx.in_shape, out, ctx.label)]


def _axes(ctx: NodeContext) -> list[int]:
    axes = ctx.const(1, "axes") if len(ctx.node.input) > 1 else ctx.attr("axes")
    return [] if axes is None else [int(a) for a in np.ravel(axes)]


@converter("Flatten")
def convert_flatten(ctx: NodeContext) -> list[Node]:
    full = (1, *ctx.in_shape)
    axis = ctx.attr("axis", 1) % (len(full) or 1)
    return _reshape_node(ctx, (int(np.prod(full[:axis])), int(np.prod(full[axis:]))))


@converter("Reshape")
def convert_reshape(ctx: NodeContext) -> list[Node]:
    target = [int(d) for d in ctx.const(1, "shape")]
    full = (1, *ctx.in_shape)
    if not ctx.attr("allowzero", 0):
        target = [full[i] if d == 0 else d for i, d in enumerate(target)]
    try:
        out = np.empty(full, dtype=np.int8).reshape(target).shape
    except ValueError as exc:
        raise ConversionError(f"cannot reshape {list(full)} to {target}: {exc}") from None
    return _reshape_node(ctx, out)


@converter("Squeeze")
def convert_squeeze(ctx: NodeContext) -> list[Node]:
    full = (1, *ctx.in_shape)
    axes = [a % len(full) for a in _axes(ctx)] or [i for i, d in enumerate(full) if d == 1]
    if 0 in axes:
        raise ConversionError("squeezing the batch axis is not supported")
    return _reshape_node(ctx, tuple(d for i, d in enumerate(full) if i not in axes))


@converter("Unsqueeze")
def convert_unsqueeze(ctx: NodeContext) -> list[Node]:
    out = list((1, *ctx.in_shape))
    rank = len(out) + len(_axes(ctx))
    for a in sorted(a % rank for a in _axes(ctx)):
        out.insert(a, 1)
    return _reshape_node(ctx, tuple(out))


@converter("Transpose")
def convert_transpose(ctx: NodeContext) -> list[Node]:
    rank = len(ctx.in_shape) + 1
    perm = [int(p) for p in ctx.attr("perm", list(range(rank))[::-1])]
    if perm[0] != 0:
        raise ConversionError(f"perm {perm} moves the batch axis")
    sample_perm = tuple(p - 1 for p in perm[1:])
    if sample_perm == tuple(range(rank - 1)):
        return []
    out = tuple(ctx.in_shape[p] for p in sample_perm)
    return [Transpose(sample_perm, ctx.in_shape, out, ctx.label)]


@converter("Pad")
def convert_pad(ctx: NodeContext) -> list[Node]:
    """Zero constant padding only (reflect/edge padding is not linear-norm 1)."""
    ctx.refuse_attr("mode", "constant")
    value = ctx.const(2, "constant_value")
    if value is not None and np.any(value != 0):
        raise ConversionError("only zero constant padding is supported")
    rank = len(ctx.in_shape) + 1
    pads = [int(p) for p in (ctx.const(1, "pads") if ctx.opset >= 11 else ctx.attr("pads"))]
    axes = ctx.const(3, "axes")
    axes_list = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    begin, end = [0] * rank, [0] * rank
    for k, a in enumerate(axes_list):
        begin[a], end[a] = pads[k], pads[k + len(axes_list)]
    if begin[0] or end[0] or min(begin + end) < 0:
        raise ConversionError(f"pads {pads} pad the batch axis or crop")
    widths = tuple(zip(begin[1:], end[1:]))
    out = tuple(n + b + e for n, (b, e) in zip(ctx.in_shape, widths))
    return [Pad(widths, ctx.in_shape, out, ctx.label)]
