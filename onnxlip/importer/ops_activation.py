"""Converters for Relu and for the no-ops of an inference graph."""
from __future__ import annotations

import onnx

from ..graph.nodes import Node, Relu
from .registry import FLOAT_TYPES, ConversionError, NodeContext, converter, type_name


@converter("Relu")
def convert_relu(ctx: NodeContext) -> list[Node]:
    return [Relu(ctx.in_shape, ctx.in_shape, ctx.label)]


@converter("Identity")
def convert_identity(ctx: NodeContext) -> list[Node]:
    return []


@converter("Dropout", attrs=("ratio", "seed"), inputs=3)
def convert_dropout(ctx: NodeContext) -> list[Node]:
    """Inference-mode Dropout is the identity."""
    ctx.refuse_extra_outputs()
    training = ctx.const(2, "training_mode")
    if training is not None and bool(training):
        raise ConversionError("training_mode=True is not an inference graph")
    return []


@converter("Cast", attrs=("to", "saturate", "round_mode"))
def convert_cast(ctx: NodeContext) -> list[Node]:
    """A cast to float32 or float64 leaves values as they are for the analysis (saturate and
    round_mode concern 8-bit floats only). Any other target rounds or truncates: the network
    is then a staircase, whose Lipschitz ratio over nearby points is unbounded."""
    to = ctx.attr("to")
    if to not in FLOAT_TYPES:
        raise ConversionError(f"casts data to {type_name(to)}, which rounds it (only float32/float64 are analysed)")
    if to == onnx.TensorProto.FLOAT and ctx.in_type == onnx.TensorProto.DOUBLE:
        raise ConversionError("casts float64 data to float32, which rounds it")
    return []
