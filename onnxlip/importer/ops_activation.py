"""Converters for Relu and for the no-ops of an inference graph."""
from __future__ import annotations

from ..ir import Node, Relu
from .registry import ConversionError, NodeContext, converter


@converter("Relu")
def convert_relu(ctx: NodeContext) -> list[Node]:
    return [Relu(ctx.in_shape, ctx.in_shape, ctx.label)]


@converter("Identity")
def convert_identity(ctx: NodeContext) -> list[Node]:
    return []


@converter("Dropout")
def convert_dropout(ctx: NodeContext) -> list[Node]:
    """Inference-mode Dropout is the identity."""
    ctx.refuse_extra_outputs()
    training = ctx.const(2, "training_mode")
    if training is not None and bool(training):
        raise ConversionError("training_mode=True is not an inference graph")
    return []


@converter("Cast")
def convert_cast(ctx: NodeContext) -> list[Node]:
    """A cast between float types leaves values as they are for the analysis."""
    if ctx.attr("to") not in (1, 10, 11, 16):  # float, float16, double, bfloat16
        raise ConversionError("cast of data to a non-float type")
    return []
