"""Converters for affine operators: Gemm, MatMul, Conv, BatchNormalization and
elementwise arithmetic with a constant (normalization layers)."""
from __future__ import annotations

import numpy as np

from ..graph.nodes import Conv, Dense, Node, Reshape, Scale
from .geometry import window_from_attrs
from .registry import ConversionError, NodeContext, converter


def _flat_input(ctx: NodeContext) -> int:
    if len(ctx.in_shape) != 1:
        raise ConversionError(f"needs a (batch, features) input, got per-sample shape {ctx.in_shape}")
    return ctx.in_shape[0]


def _matrix(ctx: NodeContext, index: int, features: int, transposed: bool = False) -> np.ndarray:
    """The constant 2-D operand ``index`` of a product, checked to take ``features`` inputs
    along its rows (its columns when it multiplies from the left)."""
    b = ctx.const(index, "weight")
    if b.ndim != 2 or b.shape[1 if transposed else 0] != features:
        raise ConversionError(f"weight of shape {b.shape} does not fit {features} input features")
    return b


def _bias_vector(c: np.ndarray | None, size: int) -> np.ndarray:
    if c is None:
        return np.zeros(size)
    try:
        return np.broadcast_to(c, (1, size))[0].astype(np.float64)
    except ValueError:
        raise ConversionError(f"bias of shape {c.shape} does not broadcast to ({size},)") from None


@converter("Gemm", attrs=("alpha", "beta", "transA", "transB"), inputs=3)
def convert_gemm(ctx: NodeContext) -> list[Node]:
    """Y = alpha·A·B' + beta·C with A the data input."""
    if ctx.data_index != 0:
        raise ConversionError("the data input must be A (first input)")
    ctx.refuse_attr("transA", 0)
    row = not ctx.batched and len(ctx.in_shape) == 2 and ctx.in_shape[0] == 1  # (1, k) without batch axis
    if not row:
        ctx.require_batch()
    features = ctx.in_shape[-1] if row else _flat_input(ctx)
    b = _matrix(ctx, 1, features, transposed=bool(ctx.attr("transB", 0)))
    b = b.T if ctx.attr("transB", 0) else b
    weight = ctx.attr("alpha", 1.0) * b.T.astype(np.float64)
    bias = ctx.attr("beta", 1.0) * _bias_vector(ctx.const(2, "bias"), b.shape[1])
    dense = Dense(weight, bias, (features,), (b.shape[1],), ctx.label)
    return _around(ctx, dense, (1, b.shape[1])) if row else [dense]


@converter("MatMul", inputs=2)
def convert_matmul(ctx: NodeContext) -> list[Node]:
    """X·B (X the data, B a constant matrix) or A·x (A constant, x a column of data, as
    nnet-format converters emit)."""
    if ctx.data_index == 1:
        return _left_product(ctx)
    b = _matrix(ctx, 1, _flat_input(ctx))
    return [Dense(b.T.astype(np.float64), np.zeros(b.shape[1]), ctx.in_shape, (b.shape[1],), ctx.label)]


def _left_product(ctx: NodeContext) -> list[Node]:
    """A·x for a data vector x of shape (k,) (no batch axis) or a column (k, 1) per sample."""
    shape = ctx.in_shape
    column = len(shape) == 2 and shape[1] == 1
    if not column and (len(shape) != 1 or ctx.batched):
        raise ConversionError(f"a constant on the left of MatMul needs a data vector (k,) or column (k, 1), "
                              f"got {list(ctx.full_shape)}")
    a = _matrix(ctx, 0, shape[0], transposed=True).astype(np.float64)
    dense = Dense(a, np.zeros(a.shape[0]), (shape[0],), (a.shape[0],), ctx.label)
    return _around(ctx, dense, (a.shape[0], 1)) if column else [dense]


def _around(ctx: NodeContext, dense: Dense, out_shape: tuple[int, ...]) -> list[Node]:
    """A Dense layer on a row or column: flattened before it, reshaped to ``out_shape`` after."""
    return [Reshape(ctx.in_shape, dense.in_shape, ctx.label), dense, Reshape(dense.out_shape, out_shape, ctx.label)]


def _per_sample(ctx: NodeContext, c: np.ndarray) -> np.ndarray:
    """A constant that broadcasts against the data without changing its shape, per sample."""
    full = ctx.full_shape
    try:
        fits = c.ndim <= len(full) and np.broadcast_shapes(c.shape, full) == full
    except ValueError:
        fits = False
    if not fits:
        raise ConversionError(f"constant of shape {list(c.shape)} would change the data shape {list(full)}")
    c = c.astype(np.float64).reshape((1,) * (len(full) - c.ndim) + c.shape)
    return c[0] if ctx.batched else c


@converter("Add", "Sub", "Mul", "Div", inputs=2)
def convert_arithmetic(ctx: NodeContext) -> list[Node]:
    """Elementwise op with a constant: an affine Scale node."""
    op = ctx.node.op_type
    c = _per_sample(ctx, ctx.const(1 - ctx.data_index, "operand"))
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


@converter("BatchNormalization", attrs=("epsilon", "momentum", "training_mode"), inputs=5)
def convert_batchnorm(ctx: NodeContext) -> list[Node]:
    """Inference-mode BatchNorm: a per-channel Scale (folded into Conv/Gemm later); momentum
    only matters in training."""
    ctx.require_batch()
    ctx.refuse_attr("training_mode", 0)
    ctx.refuse_extra_outputs()
    gamma, beta, mean, var = (ctx.const(i, name) for i, name in enumerate(("scale", "bias", "mean", "var"), 1))
    s = gamma / np.sqrt(var + ctx.attr("epsilon", 1e-5))
    channel = (-1,) + (1,) * (len(ctx.in_shape) - 1)
    scale = s.astype(np.float64).reshape(channel)
    shift = (beta - mean * s).astype(np.float64).reshape(channel)
    return [Scale(scale, shift, ctx.in_shape, ctx.in_shape, ctx.label)]


@converter("Conv", attrs=("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"), inputs=3)
def convert_conv(ctx: NodeContext) -> list[Node]:
    """2-D convolution with constant weights."""
    if ctx.data_index != 0:
        raise ConversionError("the data input must be X (first input)")
    ctx.require_batch()
    w = ctx.const(1, "weight")
    if w.ndim != 4 or len(ctx.in_shape) != 3:
        raise ConversionError("only 2-D convolutions (NCHW) are supported")
    kernel = ctx.attr("kernel_shape")
    if kernel is not None and tuple(kernel) != w.shape[2:]:
        raise ConversionError(f"kernel_shape {list(kernel)} does not match the weight's {list(w.shape[2:])}")
    groups = int(ctx.attr("group", 1))
    channels = ctx.in_shape[0]
    if w.shape[1] * groups != channels or w.shape[0] % groups:
        raise ConversionError(f"weight {w.shape} with group={groups} does not fit {channels} channels")
    win = window_from_attrs(ctx, (w.shape[2], w.shape[3]), ctx.in_shape[1:])  # type: ignore[arg-type]
    bias = _bias_vector(ctx.const(2, "bias"), w.shape[0]).reshape(-1, 1, 1)
    out_shape = (w.shape[0], *win.out_hw)
    return [Conv(w.astype(np.float64), bias, win, groups, ctx.in_shape, out_shape, ctx.label)]
