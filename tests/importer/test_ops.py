"""Every supported ONNX operator: IR forward (float64) against onnxruntime on
the original file, on random inputs, one tiny model per case."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from helpers import assert_rel_close, const, make_model, node, run_ort, save_model
from onnxlip.importer import load_model

RTOL = 1e-5


@dataclass
class Case:
    nodes: list[onnx.NodeProto]
    inits: list[onnx.TensorProto]
    in_shape: tuple[int, ...]
    batch: int = 3
    ops: list[str] | None = None  # expected IR op sequence, when it matters (folding)
    output_type: int = TensorProto.FLOAT
    extra: dict[str, Any] = field(default_factory=dict)


def weight(rng: np.random.Generator, *shape: int) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return rng.standard_normal(shape) / np.sqrt(fan_in)


def check_case(case: Case, tmp_path, rng: np.random.Generator) -> Any:
    """Import the case's model, compare IR forward with onnxruntime; return the Network."""
    model = make_model(case.nodes, case.in_shape, case.inits, output_type=case.output_type)
    path = save_model(model, tmp_path)
    net = load_model(path)
    assert net.input_shape == case.in_shape
    x = rng.standard_normal((case.batch, *case.in_shape)).astype(np.float32)
    expected = run_ort(path, x)
    actual = net.forward(x.astype(np.float64))
    assert_rel_close(actual, expected, RTOL, "IR forward vs onnxruntime")
    if case.ops is not None:
        assert [n.op for n in net.nodes] == case.ops
    return net


def run_cases(builder: Callable[[np.random.Generator], Case], tmp_path, rng) -> Any:
    return check_case(builder(rng), tmp_path, rng)


# --------------------------------------------------------------------------
# Conv
# --------------------------------------------------------------------------


def conv_case(rng, c=4, h=9, w=8, m=6, kernel=(3, 3), group=1, bias=True, **attrs) -> Case:
    inits = [const("W", weight(rng, m, c // group, *kernel))]
    inputs = ["input", "W"]
    if bias:
        inits.append(const("B", rng.standard_normal(m)))
        inputs.append("B")
    return Case([node("Conv", inputs, "output", group=group, **attrs)], inits, (c, h, w), ops=["conv"])


CONV_CASES = {
    "k3": dict(),
    "k1": dict(kernel=(1, 1)),
    "k2x3_s2x1": dict(kernel=(2, 3), strides=[2, 1]),
    "k5_even_input": dict(kernel=(5, 5), h=10, w=10),
    "pads_sym": dict(pads=[1, 1, 1, 1]),
    "pads_asym": dict(kernel=(3, 2), pads=[0, 1, 2, 0]),
    "s2_p1": dict(strides=[2, 2], pads=[1, 1, 1, 1]),
    "s3_nondividing": dict(strides=[3, 3], h=10, w=11),
    "dil2x1": dict(dilations=[2, 1], pads=[2, 1, 2, 1]),
    "dil2_s2": dict(dilations=[2, 2], strides=[2, 2]),
    "groups2": dict(group=2),
    "depthwise": dict(group=4, m=4),
    "depthwise_mult2": dict(group=4, m=8, pads=[1, 1, 1, 1]),
    "same_upper": dict(kernel=(4, 4), auto_pad="SAME_UPPER"),
    "same_lower": dict(kernel=(4, 4), auto_pad="SAME_LOWER"),
    "same_upper_s2": dict(kernel=(3, 3), strides=[2, 2], auto_pad="SAME_UPPER"),
    "same_lower_s2": dict(kernel=(4, 3), strides=[2, 2], auto_pad="SAME_LOWER"),
    "valid_s2": dict(strides=[2, 2], auto_pad="VALID"),
    "no_bias": dict(bias=False),
    "combo": dict(kernel=(3, 3), strides=[2, 3], dilations=[2, 2], pads=[2, 1, 0, 2], group=2, bias=False),
}


@pytest.mark.parametrize("params", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv(params, tmp_path, rng):
    run_cases(partial(conv_case, **params), tmp_path, rng)


# --------------------------------------------------------------------------
# Gemm, MatMul + Add
# --------------------------------------------------------------------------

GEMM_BIAS_SHAPES = {"vec": lambda m: (m,), "row": lambda m: (1, m), "scalar": lambda m: (), "none": None}


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("bias", GEMM_BIAS_SHAPES.keys())
@pytest.mark.parametrize("alpha_beta", [None, (0.5, -2.0)], ids=["default", "alpha_beta"])
def test_gemm(trans_b, bias, alpha_beta, tmp_path, rng):
    k, m = 7, 5
    w = weight(rng, m, k)
    inits = [const("W", w if trans_b else w.T)]
    inputs = ["input", "W"]
    shape = GEMM_BIAS_SHAPES[bias]
    if shape is not None:
        inits.append(const("C", rng.standard_normal(shape(m))))
        inputs.append("C")
    attrs = dict(transB=trans_b)
    if alpha_beta:
        attrs.update(alpha=alpha_beta[0], beta=alpha_beta[1])
    check_case(Case([node("Gemm", inputs, "output", **attrs)], inits, (k,), ops=["dense"]), tmp_path, rng)


@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_add(bias_first, tmp_path, rng):
    k, m = 6, 4
    inits = [const("W", weight(rng, k, m)), const("B", rng.standard_normal(m))]
    add_inputs = ["B", "mm"] if bias_first else ["mm", "B"]
    nodes = [node("MatMul", ["input", "W"], "mm"), node("Add", add_inputs, "output")]
    check_case(Case(nodes, inits, (k,), ops=["dense"]), tmp_path, rng)


# --------------------------------------------------------------------------
# Relu, pooling
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7,), (3, 5, 4)], ids=["flat", "image"])
def test_relu(shape, tmp_path, rng):
    check_case(Case([node("Relu", ["input"], "output")], [], shape, ops=["relu"]), tmp_path, rng)


def pool_case(rng, op="MaxPool", c=3, h=8, w=8, kernel=(2, 2), **attrs) -> Case:
    ir_op = "maxpool" if op == "MaxPool" else "conv"
    return Case([node(op, ["input"], "output", kernel_shape=list(kernel), **attrs)], [], (c, h, w), ops=[ir_op])


MAXPOOL_CASES = {
    "k2_s2": dict(strides=[2, 2]),
    "k3_default_stride": dict(kernel=(3, 3)),
    "k3_s2_p1": dict(kernel=(3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
    "k3_dil2": dict(kernel=(3, 3), dilations=[2, 2]),
    "k2x3_s1x2_asym_pads": dict(kernel=(2, 3), strides=[1, 2], pads=[0, 1, 1, 0]),
    "k3_s2_ceil": dict(kernel=(3, 3), strides=[2, 2], ceil_mode=1),
    "k3_s2_floor": dict(kernel=(3, 3), strides=[2, 2], ceil_mode=0),
    "k3_s2_p1_ceil": dict(h=7, w=6, kernel=(3, 3), strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    "k2_s3_dil2_ceil": dict(h=9, w=10, strides=[3, 3], dilations=[2, 2], pads=[1, 0, 0, 1], ceil_mode=1),
    # auto_pad without dilation only: onnxruntime's SAME pooling ignores dilations in the padding
    # (not the ONNX formula output = ceil(in / stride) that onnxlip and ONNX shape inference use).
    "same_upper_k3_s2": dict(h=7, w=8, kernel=(3, 3), strides=[2, 2], auto_pad="SAME_UPPER"),
    "same_lower_k2": dict(h=7, w=8, auto_pad="SAME_LOWER"),
    "same_lower_k4_s3": dict(h=7, w=8, kernel=(4, 4), strides=[3, 3], auto_pad="SAME_LOWER"),
    "valid_k3_s2": dict(h=7, w=8, kernel=(3, 3), strides=[2, 2], auto_pad="VALID"),
}


MAXPOOL_PARAMS = [pytest.param(v, id=k) for k, v in MAXPOOL_CASES.items()] + [
    pytest.param(dict(h=5, w=7, strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1), id="k2_s2_p1_ceil_drop_last"),
]


@pytest.mark.parametrize("params", MAXPOOL_PARAMS)
def test_maxpool(params, tmp_path, rng):
    run_cases(partial(pool_case, op="MaxPool", **params), tmp_path, rng)


AVGPOOL_CASES = {
    "k2_s2": dict(strides=[2, 2]),
    "k3_s2_nondividing": dict(h=9, w=8, kernel=(3, 3), strides=[2, 2]),
    "k3_s1_p1_include_pad": dict(kernel=(3, 3), pads=[1, 1, 1, 1], count_include_pad=1),
    "k2_asym_pads_include_pad": dict(pads=[1, 0, 0, 1], count_include_pad=1),
    "k3_s2_p1_include_pad": dict(h=7, w=9, kernel=(3, 3), strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
    "same_upper_include_pad": dict(h=7, w=8, kernel=(3, 3), strides=[2, 2], auto_pad="SAME_UPPER",
                                   count_include_pad=1),
    "same_lower_include_pad": dict(h=7, w=8, auto_pad="SAME_LOWER", count_include_pad=1),
    "ceil_mode_without_partial_window": dict(strides=[2, 2], ceil_mode=1),
}


@pytest.mark.parametrize("params", AVGPOOL_CASES.values(), ids=AVGPOOL_CASES.keys())
def test_averagepool(params, tmp_path, rng):
    run_cases(partial(pool_case, op="AveragePool", **params), tmp_path, rng)


@pytest.mark.parametrize("shape", [(3, 5, 6), (2, 1, 1)])
def test_global_averagepool(shape, tmp_path, rng):
    check_case(Case([node("GlobalAveragePool", ["input"], "output")], [], shape), tmp_path, rng)


# --------------------------------------------------------------------------
# Shape operators
# --------------------------------------------------------------------------


def ints(name: str, values: list[int]) -> onnx.TensorProto:
    return const(name, values, np.int64)


SHAPE_CASES = {
    "flatten_axis1_4d": (Case([node("Flatten", ["input"], "output", axis=1)], [], (2, 3, 4)), 3),
    "flatten_default_4d": (Case([node("Flatten", ["input"], "output")], [], (2, 3, 4)), 3),
    "flatten_axis_neg3_4d": (Case([node("Flatten", ["input"], "output", axis=-3)], [], (2, 3, 4)), 3),
    "flatten_axis0_4d": (Case([node("Flatten", ["input"], "output", axis=0)], [], (2, 3, 4)), 1),
    "flatten_axis0_2d": (Case([node("Flatten", ["input"], "output", axis=0)], [], (5,)), 1),
    "flatten_axis1_2d": (Case([node("Flatten", ["input"], "output", axis=1)], [], (5,)), 3),
    "reshape_0_-1": (Case([node("Reshape", ["input", "s"], "output")], [ints("s", [0, -1])], (2, 3, 4)), 3),
    "reshape_0_0_-1": (Case([node("Reshape", ["input", "s"], "output")], [ints("s", [0, 0, -1])], (2, 3, 4)), 3),
    "reshape_-1_n": (Case([node("Reshape", ["input", "s"], "output")], [ints("s", [-1, 24])], (2, 3, 4)), 3),
    "reshape_0_-1_2": (Case([node("Reshape", ["input", "s"], "output")], [ints("s", [0, -1, 2])], (2, 3, 4)), 3),
    "reshape_unflatten": (Case([node("Reshape", ["input", "s"], "output")], [ints("s", [0, 3, 2, 4])], (24,)), 3),
    "squeeze_23": (Case([node("Squeeze", ["input", "a"], "output")], [ints("a", [2, 3])], (4, 1, 1)), 3),
    "squeeze_neg1": (Case([node("Squeeze", ["input", "a"], "output")], [ints("a", [-1])], (4, 1)), 3),
    "unsqueeze_1": (Case([node("Unsqueeze", ["input", "a"], "output")], [ints("a", [1])], (5,)), 3),
    "unsqueeze_neg1": (Case([node("Unsqueeze", ["input", "a"], "output")], [ints("a", [-1])], (5,)), 3),
    "unsqueeze_2_3": (Case([node("Unsqueeze", ["input", "a"], "output")], [ints("a", [2, 3])], (5,)), 3),
    "unsqueeze_then_squeeze": (
        Case([node("Unsqueeze", ["input", "a"], "u"), node("Squeeze", ["u", "a"], "output")],
             [ints("a", [1, 3])], (3, 4)), 3),
    "transpose_nhwc_to_nchw": (Case([node("Transpose", ["input"], "output", perm=[0, 3, 1, 2])], [], (5, 6, 3),
                                    ops=["transpose"]), 3),
    "transpose_nchw_to_nhwc": (Case([node("Transpose", ["input"], "output", perm=[0, 2, 3, 1])], [], (3, 5, 6),
                                    ops=["transpose"]), 3),
    # a network that imports to nothing is the identity, as one explicit node
    "transpose_identity_perm": (Case([node("Transpose", ["input"], "output", perm=[0, 1, 2])], [], (3, 5), ops=["reshape"]), 3),
}


@pytest.mark.parametrize("case_batch", SHAPE_CASES.values(), ids=SHAPE_CASES.keys())
def test_shape_ops(case_batch, tmp_path, rng):
    case, batch = case_batch
    case.batch = batch
    check_case(case, tmp_path, rng)


def test_transpose_then_conv(tmp_path, rng):
    """tf2onnx NHWC pattern: Transpose to NCHW, then Conv."""
    inits = [const("W", weight(rng, 4, 3, 3, 3)), const("B", rng.standard_normal(4))]
    nodes = [node("Transpose", ["input"], "t", perm=[0, 3, 1, 2]), node("Conv", ["t", "W", "B"], "output")]
    check_case(Case(nodes, inits, (7, 6, 3), ops=["transpose", "conv"]), tmp_path, rng)


# --------------------------------------------------------------------------
# Pad
# --------------------------------------------------------------------------

PADS = [0, 0, 1, 2, 0, 0, 2, 1]


def pad_nodes(value: bool) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    inits = [ints("pads", PADS)]
    inputs = ["input", "pads"]
    if value:
        inits.append(const("zero", 0.0))
        inputs.append("zero")
    return [node("Pad", inputs, "p")], inits


@pytest.mark.parametrize("explicit_zero", [False, True], ids=["default_value", "explicit_zero"])
@pytest.mark.parametrize("consumer", ["none", "conv", "maxpool"])
def test_pad(consumer, explicit_zero, tmp_path, rng):
    nodes, inits = pad_nodes(explicit_zero)
    if consumer == "none":
        nodes.append(node("Identity", ["p"], "output"))
        ops = ["pad"]
    elif consumer == "conv":
        inits += [const("W", weight(rng, 4, 3, 3, 3)), const("B", rng.standard_normal(4))]
        nodes.append(node("Conv", ["p", "W", "B"], "output", strides=[2, 1]))
        ops = ["conv"]  # the zero padding folds into the convolution
    else:
        nodes.append(node("MaxPool", ["p"], "output", kernel_shape=[3, 3], strides=[2, 2]))
        ops = ["pad", "maxpool"]  # zero padding is not -inf padding: it must stay
    check_case(Case(nodes, inits, (3, 6, 5), ops=ops), tmp_path, rng)


# --------------------------------------------------------------------------
# BatchNormalization and elementwise affine constants
# --------------------------------------------------------------------------


def batchnorm_inits(rng, channels: int) -> list[onnx.TensorProto]:
    return [
        const("gamma", rng.uniform(0.5, 2.0, channels) * rng.choice([-1, 1], channels)),
        const("beta", rng.standard_normal(channels)),
        const("mean", rng.standard_normal(channels)),
        const("var", rng.uniform(0.1, 3.0, channels)),
    ]


@pytest.mark.parametrize("after", ["conv", "gemm"])
def test_batchnorm(after, tmp_path, rng):
    bn_inputs = ["y", "gamma", "beta", "mean", "var"]
    if after == "conv":
        inits = [const("W", weight(rng, 4, 2, 3, 3)), const("B", rng.standard_normal(4))] + batchnorm_inits(rng, 4)
        nodes = [node("Conv", ["input", "W", "B"], "y", pads=[1, 1, 1, 1])]
        shape, ops = (2, 6, 5), ["conv"]
    else:
        inits = [const("W", weight(rng, 5, 8)), const("B", rng.standard_normal(5))] + batchnorm_inits(rng, 5)
        nodes = [node("Gemm", ["input", "W", "B"], "y", transB=1)]
        shape, ops = (8,), ["dense"]
    nodes.append(node("BatchNormalization", bn_inputs, "output", epsilon=1e-3))
    check_case(Case(nodes, inits, shape, ops=ops), tmp_path, rng)


IMAGE = (3, 5, 4)
CONSTANT_SHAPES = {"per_channel": (3, 1, 1), "per_element": IMAGE, "scalar": (), "batched_per_channel": (1, 3, 1, 1)}


def affine_constant(rng, op: str, shape: tuple[int, ...]) -> np.ndarray:
    c = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return c if op in ("Mul", "Div") else rng.standard_normal(shape)


@pytest.mark.parametrize("consumer", ["conv", "dense"])
@pytest.mark.parametrize("kind", CONSTANT_SHAPES.keys())
@pytest.mark.parametrize("op, data_first", [("Sub", True), ("Div", True), ("Mul", True), ("Add", True),
                                            ("Sub", False), ("Mul", False), ("Add", False)])
def test_elementwise_constant_before(op, data_first, kind, consumer, tmp_path, rng):
    """Normalization layers (x − μ)/σ before a Conv or a Dense layer fold into it (when exact)."""
    inits = [const("c", affine_constant(rng, op, CONSTANT_SHAPES[kind]))]
    nodes = [node(op, ["input", "c"] if data_first else ["c", "input"], "z")]
    if consumer == "conv":
        inits += [const("W", weight(rng, 4, 3, 3, 3)), const("B", rng.standard_normal(4))]
        nodes.append(node("Conv", ["z", "W", "B"], "output", pads=[1, 0, 1, 2]))
        ops = ["scale", "conv"] if kind == "per_element" and op in ("Mul", "Div") else ["conv"]
    else:
        inits += [const("W", weight(rng, 6, int(np.prod(IMAGE)))), const("B", rng.standard_normal(6))]
        nodes += [node("Flatten", ["z"], "f"), node("Gemm", ["f", "W", "B"], "output", transB=1)]
        ops = ["reshape", "dense"]
    check_case(Case(nodes, inits, IMAGE, ops=ops), tmp_path, rng)


def chain_case(rng, steps: list[str], group: int = 1) -> Case:
    """IMAGE input through a chain of small steps ending in (or around) a Conv.

    Steps: sub/div/mul/add (per-channel), addpx/mulpx (per-element, on the current
    shape), sublast/mullast (per last axis: per-channel in NHWC), pad, nhwc (Transpose to NHWC), nchw (back), conv, relu, maxpool.
    """
    nodes, inits, shape = [], [], list(IMAGE)
    src = "input"
    for k, step in enumerate(steps):
        out = "output" if k == len(steps) - 1 else f"t{k}"
        if step in ("sub", "div", "mul", "add", "addpx", "mulpx", "sublast", "mullast"):
            op = {"sub": "Sub", "div": "Div", "mul": "Mul", "add": "Add"}[step[:3]]
            if step.endswith("px"):
                cshape = tuple(shape)
            elif step.endswith("last"):
                cshape = (shape[-1],)
            else:
                cshape = (shape[0], 1, 1)
            inits.append(const(f"c{k}", affine_constant(rng, op, cshape)))
            nodes.append(node(op, [src, f"c{k}"], out))
        elif step == "pad":
            inits.append(ints(f"p{k}", [0, 0, 1, 0, 0, 0, 2, 1]))
            nodes.append(node("Pad", [src, f"p{k}"], out))
            shape = [shape[0], shape[1] + 3, shape[2] + 1]
        elif step in ("nhwc", "nchw"):
            perm = [0, 2, 3, 1] if step == "nhwc" else [0, 3, 1, 2]
            nodes.append(node("Transpose", [src], out, perm=perm))
            shape = [shape[p - 1] for p in perm[1:]]
        elif step == "conv":
            g = group if shape[0] % group == 0 else 1
            inits += [const(f"W{k}", weight(rng, 6, shape[0] // g, 3, 3)), const(f"B{k}", rng.standard_normal(6))]
            nodes.append(node("Conv", [src, f"W{k}", f"B{k}"], out, group=g, pads=[1, 1, 0, 1], strides=[1, 2]))
            shape = [6, shape[1] - 1, (shape[2] + 2 - 3) // 2 + 1]
        elif step == "relu":
            nodes.append(node("Relu", [src], out))
        elif step == "maxpool":
            nodes.append(node("MaxPool", [src], out, kernel_shape=[2, 2]))
            shape = [shape[0], shape[1] - 1, shape[2] - 1]
        src = out
    return Case(nodes, inits, IMAGE)


CHAINS = {
    "sub_div_conv": (["sub", "div", "conv"], 1, ["conv"]),
    "sub_mul_grouped_conv": (["sub", "mul", "conv"], 3, ["conv"]),
    "mul_depthwise_conv": (["mul", "conv"], 3, ["conv"]),
    "sub_pad_conv": (["sub", "pad", "conv"], 1, ["conv"]),
    "pad_sub_conv": (["pad", "sub", "conv"], 1, ["conv"]),
    "pad_mul_conv": (["pad", "mul", "conv"], 1, ["conv"]),
    "sub_nhwc_nchw_conv": (["sub", "nhwc", "nchw", "conv"], 1, ["transpose", "transpose", "conv"]),
    "nhwc_sublast_mullast_nchw_conv": (["nhwc", "sublast", "mullast", "nchw", "conv"], 1,
                                       ["transpose", "transpose", "conv"]),
    "nhwc_mulpx_nchw_conv": (["nhwc", "mulpx", "nchw", "conv"], 1, ["transpose", "transpose", "scale", "conv"]),
    "conv_mul_add": (["conv", "mul", "add"], 1, ["conv"]),
    "conv_addpx": (["conv", "addpx"], 1, ["conv"]),
    "conv_mulpx": (["conv", "mulpx"], 1, ["conv", "scale"]),
    "conv_relu_sub_maxpool": (["conv", "relu", "sub", "maxpool"], 1, ["conv", "relu", "scale", "maxpool"]),
    "conv_relu_mul_conv": (["conv", "relu", "mul", "conv"], 2, ["conv", "relu", "conv"]),
    "sub_relu": (["sub", "relu"], 1, ["scale", "relu"]),
}


@pytest.mark.parametrize("chain", CHAINS.values(), ids=CHAINS.keys())
def test_folding_chains(chain, tmp_path, rng):
    """Elementwise affine maps and zero padding fold into neighbouring Conv layers where exact."""
    steps, group, ops = chain
    case = chain_case(rng, steps, group)
    case.ops = ops
    check_case(case, tmp_path, rng)


# --------------------------------------------------------------------------
# No-ops: Dropout, Identity, Cast; Constant nodes; dynamic flatten
# --------------------------------------------------------------------------


def gemm_relu(rng, k: int = 6, m: int = 5, out: str = "h", src: str = "input") -> tuple[list, list]:
    inits = [const("W", weight(rng, m, k)), const("B", rng.standard_normal(m))]
    return [node("Gemm", [src, "W", "B"], "g", transB=1), node("Relu", ["g"], out)], inits


@pytest.mark.parametrize("noop", ["Dropout", "Dropout_ratio", "Identity", "Cast_float", "Cast_double_last"])
def test_noops(noop, tmp_path, rng):
    nodes, inits = gemm_relu(rng)
    output_type = TensorProto.FLOAT
    if noop == "Dropout":
        nodes.append(node("Dropout", ["h"], "n"))
    elif noop == "Dropout_ratio":
        inits.append(const("ratio", 0.3))
        nodes.append(node("Dropout", ["h", "ratio"], "n"))
    elif noop == "Identity":
        nodes.append(node("Identity", ["h"], "n"))
    elif noop == "Cast_float":
        nodes.append(node("Cast", ["h"], "n", to=TensorProto.FLOAT))
    if noop == "Cast_double_last":
        nodes.append(node("Cast", ["h"], "output", to=TensorProto.DOUBLE))
        output_type = TensorProto.DOUBLE
    else:
        inits += [const("W2", weight(rng, 3, 5))]
        nodes.append(node("Gemm", ["n", "W2"], "output", transB=1))
    ops = ["dense", "relu"] + ([] if noop == "Cast_double_last" else ["dense"])
    check_case(Case(nodes, inits, (6,), ops=ops, output_type=output_type), tmp_path, rng)


def test_constant_nodes(tmp_path, rng):
    """Weights and biases produced by Constant nodes (and arithmetic on constants) are folded."""
    w = weight(rng, 4, 2, 3, 3).astype(np.float32)
    b = rng.standard_normal((4, 1, 1)).astype(np.float32)
    nodes = [
        node("Constant", [], "W", value=onnx.numpy_helper.from_array(w, "W")),
        node("Constant", [], "half_b", value=onnx.numpy_helper.from_array(b / 2, "half_b")),
        node("Add", ["half_b", "half_b"], "b"),  # constant folding of a constant-only node
        node("Conv", ["input", "W"], "y"),
        node("Add", ["y", "b"], "output"),
    ]
    check_case(Case(nodes, [], (2, 5, 6), ops=["conv"]), tmp_path, rng)


def test_dynamic_flatten(tmp_path, rng):
    """PyTorch's x.view(x.size(0), -1): Shape → Gather → Unsqueeze → Concat → Reshape."""
    inits = [const("Wc", weight(rng, 3, 2, 3, 3)), const("Wd", weight(rng, 4, 3 * 4 * 3)), ints("axes", [0])]
    nodes = [
        node("Conv", ["input", "Wc"], "c"),
        node("Relu", ["c"], "r"),
        node("Shape", ["r"], "shape"),
        node("Constant", [], "zero", value=onnx.helper.make_tensor("zero", TensorProto.INT64, [], [0])),
        node("Gather", ["shape", "zero"], "n", axis=0),
        node("Unsqueeze", ["n", "axes"], "n1"),
        node("Constant", [], "minus1", value=onnx.helper.make_tensor("minus1", TensorProto.INT64, [1], [-1])),
        node("Concat", ["n1", "minus1"], "target", axis=0),
        node("Reshape", ["r", "target"], "flat"),
        node("Gemm", ["flat", "Wd"], "output", transB=1),
    ]
    check_case(Case(nodes, inits, (2, 6, 5), ops=["conv", "relu", "reshape", "dense"]), tmp_path, rng)


# --------------------------------------------------------------------------
# Output heads: dropped with a warning, the IR ends at the logits
# --------------------------------------------------------------------------

HEADS = {
    "softmax": (dict(op="Softmax", axis=1), TensorProto.FLOAT),
    "softmax_neg_axis": (dict(op="Softmax", axis=-1), TensorProto.FLOAT),
    "logsoftmax": (dict(op="LogSoftmax", axis=1), TensorProto.FLOAT),
    "argmax": (dict(op="ArgMax", axis=1, keepdims=1), TensorProto.INT64),
}


@pytest.mark.parametrize("head", HEADS.keys())
def test_output_head_dropped(head, tmp_path, rng):
    attrs, out_type = HEADS[head]
    attrs = dict(attrs)
    op = attrs.pop("op")
    body, inits = gemm_relu(rng)
    inits.append(const("W2", weight(rng, 4, 5)))
    body.append(node("Gemm", ["h", "W2"], "logits", transB=1))
    with_head = make_model(body + [node(op, ["logits"], "output", **attrs)], (6,), inits, output_type=out_type)
    logits_only = make_model(body, (6,), inits)
    net = load_model(save_model(with_head, tmp_path, "with_head"))
    assert net.warnings and any(op in w for w in net.warnings)
    assert net.output_name == "logits"
    x = rng.standard_normal((3, 6)).astype(np.float32)
    expected = run_ort(save_model(logits_only, tmp_path, "logits"), x)
    assert_rel_close(net.forward(x.astype(np.float64)), expected, RTOL, "IR output vs onnxruntime logits")


def test_no_head_no_warning(tmp_path, rng):
    body, inits = gemm_relu(rng)
    net = load_model(save_model(make_model(body, (6,), inits), tmp_path))
    assert net.warnings == ()
