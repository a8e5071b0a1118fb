"""Bad models fail cleanly: an OnnxlipError subclass with a one-line message that
names the problem (node name and op type for unsupported nodes), never a raw
traceback from onnx, numpy or a converter."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from helpers import DATA_DIR, const, make_model, node, save_model
from onnxlip.errors import ModelLoadError, OnnxlipError, UnsupportedModelError
from onnxlip.importer import load_model


def load_error(path) -> OnnxlipError:
    with pytest.raises(OnnxlipError) as info:
        load_model(path)
    err = info.value
    message = str(err)
    assert message.strip() and "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    assert "Traceback" not in message
    return err


def check_problems(err: OnnxlipError, expected: list[tuple[str, str]]) -> None:
    """An UnsupportedModelError listing exactly ``expected`` (node name, op type), all named in str()."""
    assert isinstance(err, UnsupportedModelError), type(err)
    assert [(p.name, p.op_type) for p in err.problems] == expected
    for name, op in expected:
        assert name in str(err) and op in str(err)


def nodes_of(path: Path, op_type: str) -> list[onnx.NodeProto]:
    return [n for n in onnx.load(path).graph.node if n.op_type == op_type]


# --------------------------------------------------------------------------
# Files in tests/data
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name, ops", [
    ("sigmoid_net", ["Sigmoid"]),
    ("tanh_net", ["Tanh"]),
    ("multi_unsupported", ["Sigmoid", "Tanh"]),
])
def test_non_relu_activations(name, ops):
    path = DATA_DIR / f"{name}.onnx"
    err = load_error(path)
    expected = [(n.name, n.op_type) for op in ops for n in nodes_of(path, op)]
    assert len(expected) == len(ops)
    check_problems(err, expected)
    assert "ReLU" in str(err)


def test_multi_unsupported_reports_both_in_one_error():
    err = load_error(DATA_DIR / "multi_unsupported.onnx")
    assert len(err.problems) == 2
    assert {p.op_type for p in err.problems} == {"Sigmoid", "Tanh"}
    assert "Sigmoid" in str(err) and "Tanh" in str(err)


@pytest.mark.parametrize("name", ["truncated", "random_bytes"])
def test_unreadable_files(name):
    path = DATA_DIR / f"{name}.onnx"
    err = load_error(path)
    assert isinstance(err, ModelLoadError)
    assert str(path) in str(err) and "ONNX" in str(err)


def test_two_inputs():
    path = DATA_DIR / "two_inputs.onnx"
    err = load_error(path)
    assert isinstance(err, UnsupportedModelError)
    for value in onnx.load(path).graph.input:
        assert value.name in str(err)
    assert "one data input" in str(err)


def test_nonconst_weight():
    path = DATA_DIR / "nonconst_weight.onnx"
    model = onnx.load(path)
    (matmul,) = nodes_of(path, "MatMul")
    weight_name = matmul.input[1]
    assert weight_name not in {t.name for t in model.graph.initializer}
    err = load_error(path)
    assert isinstance(err, UnsupportedModelError)
    assert weight_name in str(err)


def test_nan_weights():
    path = DATA_DIR / "nan_weights.onnx"
    bad = [t.name for t in onnx.load(path).graph.initializer if not np.all(np.isfinite(numpy_helper.to_array(t)))]
    assert bad
    err = load_error(path)
    assert "NaN" in str(err)
    assert any(name in str(err) for name in bad)


def test_missing_file(tmp_path):
    err = load_error(tmp_path / "does_not_exist.onnx")
    assert isinstance(err, ModelLoadError)
    assert "does_not_exist.onnx" in str(err)


def test_directory_instead_of_file(tmp_path):
    assert isinstance(load_error(tmp_path), ModelLoadError)


@pytest.mark.parametrize("content", [b"", b"hello, not a protobuf\n", b"\x08\x07" + bytes(range(256))],
                         ids=["empty", "text", "garbage"])
def test_not_onnx_files(content, tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    assert isinstance(load_error(path), ModelLoadError)


# --------------------------------------------------------------------------
# In-memory models
# --------------------------------------------------------------------------


def gemm(k: int, m: int, src: str, out: str, tag: str) -> tuple[list, list]:
    rng = np.random.default_rng(len(tag))
    inits = [const(f"W{tag}", rng.standard_normal((m, k))), const(f"B{tag}", rng.standard_normal(m))]
    return [node("Gemm", [src, f"W{tag}", f"B{tag}"], out, transB=1)], inits


def ints(name: str, values) -> onnx.TensorProto:
    return const(name, values, np.int64)


@dataclass
class Bad:
    """A bad in-memory model and what its error must say."""

    build: Callable[[], onnx.ModelProto]
    problems: list[tuple[str, str]] | None = None  # (node name, op type) for UnsupportedModelError
    says: list[str] = field(default_factory=list)
    error: type = UnsupportedModelError


def chain(*parts: tuple[list, list], in_shape=(4,), **kw) -> onnx.ModelProto:
    nodes = [n for p in parts for n in p[0]]
    inits = [t for p in parts for t in p[1]]
    return make_model(nodes, in_shape, inits, **kw)


def one(op: str, inputs: list[str], out: str = "output", inits=(), **attrs) -> tuple[list, list]:
    return [node(op, inputs, out, **attrs)], list(inits)


IMG = (3, 4, 4)

BAD_MODELS = {
    "leaky_relu": Bad(
        lambda: chain(gemm(4, 5, "input", "g", "1"), one("LeakyRelu", ["g"], "l", alpha=0.1),
                      gemm(5, 2, "l", "output", "2")),
        [("LeakyRelu_l", "LeakyRelu")], ["non-ReLU"]),
    "gather_on_data": Bad(
        lambda: chain(gemm(4, 5, "input", "g", "1"), one("Gather", ["g", "idx"], inits=[ints("idx", [0, 2])], axis=1)),
        [("Gather_output", "Gather")], ["not supported"]),
    "mul_of_two_data_tensors": Bad(  # an Add of these two is a residual block (tests/test_residual.py)
        lambda: chain(gemm(4, 5, "input", "g", "1"), one("Relu", ["g"], "r"), one("Mul", ["g", "r"])),
        [("Mul_output", "Mul")], ["two data tensors"]),
    "two_unsupported_nodes": Bad(
        lambda: chain(gemm(4, 5, "input", "g", "1"), one("LeakyRelu", ["g"], "l"),
                      one("Gather", ["l", "idx"], inits=[ints("idx", [0])], axis=1)),
        [("LeakyRelu_l", "LeakyRelu"), ("Gather_output", "Gather")]),
    "constant_divided_by_data": Bad(
        lambda: chain(one("Div", ["c", "input"], inits=[const("c", np.ones(4))])),
        [("Div_output", "Div")], ["divided by data"]),
    "division_by_zero_constant": Bad(
        lambda: chain(one("Div", ["input", "c"], inits=[const("c", [1.0, 0.0, 2.0, 3.0])])),
        [("Div_output", "Div")], ["containing 0"]),
    "constant_changes_shape": Bad(
        lambda: chain(one("Mul", ["input", "c"], inits=[const("c", np.ones((2, 1, 4)))])),
        [("Mul_output", "Mul")], ["shape"]),
    "maxpool_storage_order": Bad(
        lambda: chain(one("MaxPool", ["input"], kernel_shape=[2, 2], storage_order=1), in_shape=IMG),
        [("MaxPool_output", "MaxPool")], ["storage_order"]),
    "maxpool_1d": Bad(
        lambda: chain(one("MaxPool", ["input"], kernel_shape=[2]), in_shape=(3, 6)),
        [("MaxPool_output", "MaxPool")], ["2-D"]),
    "averagepool_excludes_padding": Bad(
        lambda: chain(one("AveragePool", ["input"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), in_shape=IMG),
        [("AveragePool_output", "AveragePool")], ["count_include_pad"]),
    "averagepool_ceil_partial_window": Bad(
        lambda: chain(one("AveragePool", ["input"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), in_shape=(2, 5, 5)),
        [("AveragePool_output", "AveragePool")], ["ceil_mode"]),
    "averagepool_same_excludes_padding": Bad(
        lambda: chain(one("AveragePool", ["input"], kernel_shape=[3, 3], auto_pad="SAME_UPPER"), in_shape=IMG),
        [("AveragePool_output", "AveragePool")], ["count_include_pad"]),
    "conv_1d": Bad(
        lambda: chain(one("Conv", ["input", "W"], inits=[const("W", np.ones((2, 3, 2)))]), in_shape=(3, 6)),
        [("Conv_output", "Conv")], ["2-D"]),
    "pad_reflect": Bad(
        lambda: chain(one("Pad", ["input", "p"], inits=[ints("p", [0, 0, 1, 1, 0, 0, 1, 1])], mode="reflect"),
                      in_shape=IMG),
        [("Pad_output", "Pad")], ["mode"]),
    "pad_infinite_value": Bad(
        lambda: chain(one("Pad", ["input", "p", "v"], inits=[ints("p", [0, 0, 1, 1, 0, 0, 1, 1]),
                                                             const("v", -np.inf)]), in_shape=IMG),
        [("Pad_output", "Pad")], ["NaN or Inf"]),
    "pad_batch_axis": Bad(
        lambda: chain(one("Pad", ["input", "p"], inits=[ints("p", [1, 0, 0, 0, 0, 0, 0, 0])]), in_shape=IMG),
        [("Pad_output", "Pad")], ["batch"]),
    "transpose_moves_batch": Bad(
        lambda: chain(one("Transpose", ["input"], perm=[1, 0, 2, 3]), in_shape=IMG),
        [("Transpose_output", "Transpose")], ["batch"]),
    "flatten_axis2_moves_batch": Bad(
        lambda: chain(one("Flatten", ["input"], axis=2), in_shape=IMG),
        [("Flatten_output", "Flatten")], ["batch"]),
    "reshape_moves_batch": Bad(
        lambda: chain(one("Reshape", ["input", "s"], inits=[ints("s", [3, -1])]), in_shape=IMG),
        [("Reshape_output", "Reshape")], ["batch"]),
    "dropout_training": Bad(
        lambda: chain(one("Dropout", ["input", "r", "t"], inits=[const("r", 0.5), const("t", True, np.bool_)])),
        [("Dropout_output", "Dropout")], ["training_mode"]),
    "cast_to_int": Bad(
        lambda: chain(one("Cast", ["input"], to=TensorProto.INT64), output_type=TensorProto.INT64),
        [("Cast_output", "Cast")], ["int64", "rounds"]),
    "fixed_batch_2": Bad(lambda: chain(gemm(4, 2, "input", "output", "1"), batch_dim=2),
                         [("Gemm_output", "Gemm")], ["batch axis of 1"]),
    "dynamic_feature_axis": Bad(
        lambda: chain(one("Relu", ["input"]), in_shape=("features",)),
        [("<graph>", "input")], ["dynamic axis 1"]),
    "no_feature_axis": Bad(lambda: chain(one("Relu", ["input"]), in_shape=()),
                           [("<graph>", "input")], ["dynamic size"]),
    "unknown_operator": Bad(
        lambda: chain(one("NoSuchOp", ["input"]), output_shape=["batch", 4]),
        error=ModelLoadError, says=["invalid ONNX model"]),
    "no_nodes": Bad(lambda: make_model([], (4,), output="input", output_shape=["batch", 4]),
                    error=ModelLoadError, says=["no nodes"]),
}


BAD_PARAMS = [pytest.param(v, id=k) for k, v in BAD_MODELS.items()] + [
    pytest.param(Bad(lambda: chain(gemm(4, 5, "input", "g", "1"), one("Softmax", ["g"], "s", axis=1),
                                   gemm(5, 2, "s", "output", "2")), says=["Softmax"]),
                 id="softmax_in_the_middle"),
]


@pytest.mark.parametrize("bad", BAD_PARAMS)
def test_in_memory_bad_models(bad, tmp_path):
    err = load_error(save_model(bad.build(), tmp_path))
    assert isinstance(err, bad.error), f"{type(err).__name__}: {err}"
    if bad.problems is not None:
        check_problems(err, bad.problems)
    for text in bad.says:
        assert text in str(err), f"{text!r} not in {str(err)!r}"
