"""Converters for affine operators: Gemm, MatMul, Conv, BatchNormalization and
elementwise arithmetic with a constant (normalization layers)."""
from __future__ import annotations

import numpy as np

from ..ir import Conv, Dense, Node, Scale
from .geometry import window_from_attrs
from .registry import ConversionError, NodeContext, converter


def _flat_input(ctx: NodeContext) -> int:
    if len(ctx.in_shape) != 1:
        raise ConversionError(f"needs a (batch, features) input, got per-sample shape {ctx.in_shape}")
    return ctx.in_shape[0]


def _bias_vector(c: np.ndarray | None, size: int) -> np.ndarray:
    if c is None:
        return np.zeros(size)
    try:
        return np.broadcast_to(c, (1, size))[0].astype(np.float64)
    except ValueError:
        raise ConversionError(f"bias of shape {c.shape} does not broadcast to ({size},)") from None


@converter("Gemm")
def convert_gemm(ctx: NodeContext) -> list[Node]:
    """Y = alpha·A·B' + beta·C with A the data input."""
    if ctx.data_index != 0:
        raise ConversionError("the data input must be A (first input)")
    ctx.refuse_attr("transA", 0)
    features = _flat_input(ctx)
    b = ctx.const(1, "weight")
    b = b.T if ctx.attr("transB", 0) else b
    if b.ndim != 2 or b.shape[0] != features:
        raise ConversionError(f"weight of shape {b.shape} does not fit input features {features}")
    weight = ctx.attr("alpha", 1.0) * b.T.astype(np.float64)
    bias = ctx.attr("beta", 1.0) * _bias_vector(ctx.const(2, "bias"), b.shape[1])
    return [Dense(weight, bias, ctx.in_shape, (b.shape[1],), ctx.label)]


@converter("MatMul")
def convert_matmul(ctx: NodeContext) -> list[Node]:
    """X·B with X the data input and B a constant matrix."""
    if ctx.data_index != 0:
        raise ConversionError("constant on the left of MatMul is not supported")
    features = _flat_input(ctx)
    b = ctx.const(1, "weight")
    if b.ndim != 2 or b.shape[0] != features:
        raise ConversionError(f"weight of shape {b.shape} does not fit input features {features}")
    return [Dense(b.T.astype(np.float64), np.zeros(b.shape[1]), ctx.in_shape, (b.shape[1],), ctx.label)]


def _per_sample(c: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A constant that broadcasts against (1, *shape) without changing it, per sample."""
    full = (1, *shape)
    if c.ndim > len(full) or np.broadcast_shapes(c.shape, full) != full:
        raise ConversionError(f"constant of shape {c.shape} would change the data shape {full}")
    c = c.astype(np.float64).reshape((1,) * (len(full) - c.ndim) + c.shape)
    return c[0]


@converter("Add", "Sub", "Mul", "Div")
def convert_arithmetic(ctx: NodeContext) -> list[Node]:
    """Elementwise op with a constant: an affine Scale node."""
    op = ctx.node.op_type
    c = _per_sample(ctx.const(1 - ctx.data_index, "operand"), ctx.in_shape)
    one, zero = np.ones_like(c), np.zeros_like(c)
    data_first = ctx.data_index == 0
    if op == "Add":
        scale, shift = one, c
    elif op == "Mul":
        scale, shift = c, zero
    elif op == "Sub":
        scale, shift = (one, -c) if data_first else (-one, c)
    elif data_first:  # Div
        if np.any(c == 0):
            raise ConversionError("division by a constant containing 0")
        scale, shift = 1.0 / c, zero
    else:
        raise ConversionError("constant divided by data is not affine")
    return [Scale(scale, shift, ctx.in_shape, ctx.in_shape, ctx.label)]


@converter("BatchNormalization")
def convert_batchnorm(ctx: NodeContext) -> list[Node]:
    """Inference-mode BatchNorm: a per-channel Scale (folded into Conv/Gemm later)."""
    ctx.refuse_attr("training_mode", 0)
    ctx.refuse_extra_outputs()
    gamma, beta, mean, var = (ctx.const(i, name) for i, name in enumerate(("scale", "bias", "mean", "var"), 1))
    s = gamma / np.sqrt(var + ctx.attr("epsilon", 1e-5))
    channel = (-1,) + (1,) * (len(ctx.in_shape) - 1)
    scale = s.astype(np.float64).reshape(channel)
    shift = (beta - mean * s).astype(np.float64).reshape(channel)
    return [Scale(scale, shift, ctx.in_shape, ctx.in_shape, ctx.label)]


@converter("Conv")
def convert_conv(ctx: NodeContext) -> list[Node]:
    """2-D convolution with constant weights."""
    if ctx.data_index != 0:
        raise ConversionError("the data input must be X (first input)")
    w = ctx.const(1, "weight")
    if w.ndim != 4 or len(ctx.in_shape) != 3:
        raise ConversionError("only 2-D convolutions (NCHW) are supported")
    groups = int(ctx.attr("group", 1))
    channels = ctx.in_shape[0]
    if w.shape[1] * groups != channels or w.shape[0] % groups:
        raise ConversionError(f"weight {w.shape} with group={groups} does not fit {channels} channels")
    win = window_from_attrs(ctx, (w.shape[2], w.shape[3]), ctx.in_shape[1:])  # type: ignore[arg-type]
    bias = _bias_vector(ctx.const(2, "bias"), w.shape[0]).reshape(-1, 1, 1)
    out_shape = (w.shape[0], *win.out_hw)
    return [Conv(w.astype(np.float64), bias, win, groups, ctx.in_shape, out_shape, ctx.label)]
