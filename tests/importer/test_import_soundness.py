"""Importer soundness: files that onnxruntime runs and onnxlip once misread are either
analysed with numbers that agree with onnxruntime or refused (exit 2, one line)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from helpers import const, node, run_ort
from onnxlip.importer import load_model
from onnxlip.cli.app import app
from onnxlip.errors import ModelMismatchError, UnsupportedModelError
from onnxlip.graph.network import Network
from onnxlip.importer.verify import ensure_matches

runner = CliRunner()
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def build(nodes: Sequence[onnx.NodeProto], input_shape: Sequence[int | str], inits: Sequence[onnx.TensorProto] = (),
          outputs: Sequence[str] = ("output",), opset: int = 17, input_type: int = TensorProto.FLOAT,
          domains: Sequence[tuple[str, int]] = (), output_shape: Sequence[int | str] | None = None) -> onnx.ModelProto:
    """A checked model with one data input 'input' and the declared ``outputs``."""
    graph = helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info("input", input_type, list(input_shape))],
                              [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
                              initializer=list(inits))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 7
    inferred = onnx.shape_inference.infer_shapes(model)
    for out, typed in zip(model.graph.output, inferred.graph.output):
        out.CopyFrom(typed if output_shape is None else
                     helper.make_tensor_value_info(out.name, TensorProto.FLOAT, list(output_shape)))
    return model


def save(model: onnx.ModelProto, tmp_path: Path, name: str = "m") -> Path:
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def gemm(src: str, out: str, k: int, m: int, tag: str, rng: np.random.Generator, bias: float = 0.0):
    inits = [const(f"W{tag}", rng.standard_normal((m, k))), const(f"b{tag}", rng.standard_normal(m) + bias)]
    return [node("Gemm", [src, f"W{tag}", f"b{tag}"], out, transB=1)], inits


def run(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def assert_refused(args: Sequence[object], *says: str) -> None:
    code, _, err = run(*args)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "internal" not in err and "Traceback" not in err, err
    for text in says:
        assert text in err, err


def assert_agrees(path: Path, x: np.ndarray, rtol: float = 1e-5) -> Network:
    """The IR computes the declared graph output, as onnxruntime does, at x and nearby points."""
    net = load_model(path)
    points = x[None] + 0.5 * np.random.default_rng(0).standard_normal((8, *x.shape))
    ours = np.asarray(net.forward(points.astype(np.float32).astype(np.float64)))
    theirs = np.concatenate([run_ort(path, p[None] if net.batched else p) for p in points]).reshape(ours.shape)
    assert np.max(np.abs(ours - theirs)) <= rtol * max(1.0, np.max(np.abs(theirs)))
    return net


# 1. a node hanging off the graph output -------------------------------------------------------

@pytest.mark.parametrize("tail", ["Add", "Relu"])
def test_node_after_the_declared_output_is_ignored(tail, tmp_path, rng):
    nodes, inits = gemm("input", "output", 4, 3, "1", rng)
    extra = (node("Add", ["output", "c"], "dangling") if tail == "Add" else node("Relu", ["output"], "dangling"))
    inits.append(const("c", [100.0, -100.0, 0.0]))
    path = save(build(nodes + [extra], ["N", 4], inits), tmp_path)
    x0 = rng.standard_normal(4)
    net = assert_agrees(path, x0)
    assert net.output_name == "output"
    w = onnx.numpy_helper.to_array(inits[0]).astype(np.float64)
    code, out, err = run("local", path, "--input", _npy(tmp_path, x0), "--eps", "1", "--json", "--certified")
    assert code == 0, err
    import json
    assert json.loads(out)["bounds"][0]["bound"] >= np.linalg.norm(w, 2) * (1 - 1e-6)


def test_first_of_several_outputs_is_analysed_and_others_named(tmp_path, rng):
    nodes, inits = gemm("input", "y", 4, 3, "1", rng)
    path = save(build(nodes + [node("Relu", ["y"], "z")], ["N", 4], inits, outputs=("y", "z")), tmp_path)
    net = load_model(path)
    assert net.output_name == "y" and net.nodes[-1].op == "dense"
    assert any("'y' only, not z" in w for w in net.warnings)


def test_output_that_does_not_depend_on_the_input_is_refused(tmp_path, rng):
    nodes, inits = gemm("input", "y", 4, 3, "1", rng)
    nodes.append(node("Identity", ["c"], "output"))
    inits.append(const("c", [1.0, 2.0]))
    path = save(build(nodes, ["N", 4], inits, outputs=("output", "y")), tmp_path)
    with pytest.raises(UnsupportedModelError, match="does not depend on the input"):
        load_model(path)


# 2. Pad's constant value ---------------------------------------------------------------------

@pytest.mark.parametrize("opset", [7, 10, 11, 13, 18])
def test_pad_with_a_nonzero_value_is_analysed(opset, tmp_path, rng):
    pads = [0, 0, 1, 2, 0, 0, 2, 1]
    if opset < 11:
        pad = [node("Pad", ["input"], "p", pads=pads, value=1.5, mode="constant")]
        inits = []
    else:
        pad = [node("Pad", ["input", "pads", "v"], "p")]
        inits = [const("pads", pads, np.int64), const("v", 1.5)]
    conv = [node("Conv", ["p", "W"], "c"), node("Relu", ["c"], "r"), node("Flatten", ["r"], "output")]
    inits.append(const("W", rng.standard_normal((2, 2, 3, 3))))
    path = save(build(pad + conv, [1, 2, 5, 5], inits, opset=opset), tmp_path)
    assert_agrees(path, rng.standard_normal((2, 5, 5)))


# 3. precision-lowering Cast, and inputs below float32 -----------------------------------------

@pytest.mark.parametrize("to", [TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT32])
def test_cast_that_rounds_is_refused(to, tmp_path, rng):
    nodes, inits = gemm("input", "y", 4, 3, "1", rng)
    nodes += [node("Cast", ["y"], "h", to=to), node("Cast", ["h"], "output", to=TensorProto.FLOAT)]
    path = save(build(nodes, ["N", 4], inits), tmp_path)
    name = helper.tensor_dtype_to_np_dtype(to).name if to != TensorProto.BFLOAT16 else "bfloat16"
    assert_refused(["global", path], "(Cast)", "rounds", name)


def test_float16_input_is_refused(tmp_path):
    path = save(build([node("Relu", ["input"], "output")], ["N", 4], input_type=TensorProto.FLOAT16), tmp_path)
    assert_refused(["global", path], "float16")


def test_cast_to_double_is_analysed(tmp_path, rng):
    nodes, inits = gemm("input", "y", 4, 3, "1", rng)
    nodes += [node("Cast", ["y"], "d", to=TensorProto.DOUBLE), node("Relu", ["d"], "output")]
    assert_agrees(save(build(nodes, ["N", 4], inits), tmp_path), rng.standard_normal(4))


# 4. folding is exact ---------------------------------------------------------------------------

def test_sub_folded_into_padded_conv_keeps_its_per_pixel_bias(tmp_path, rng):
    inits = [const("mean", rng.uniform(0.1, 0.5, (1, 2, 1, 1))), const("W", rng.standard_normal((3, 2, 3, 3))),
             const("B", np.full(3, 1000.0))]
    nodes = [node("Sub", ["input", "mean"], "s"), node("Conv", ["s", "W", "B"], "c", pads=[1, 1, 1, 1]),
             node("Relu", ["c"], "r"), node("Flatten", ["r"], "output")]
    path = save(build(nodes, ["N", 2, 4, 4], inits), tmp_path)
    net = assert_agrees(path, rng.standard_normal((2, 4, 4)), rtol=1e-7)
    assert net.nodes[0].op == "conv" and net.nodes[0].bias.shape == (3, 4, 4)  # folded, exactly


# 5. dead networks ------------------------------------------------------------------------------

def _npy(tmp_path: Path, x: np.ndarray, name: str = "x0") -> Path:
    path = tmp_path / f"{name}.npy"
    np.save(path, np.asarray(x, dtype=np.float32)[None])
    return path


def _two_layer(tmp_path: Path, rng: np.random.Generator, scale_out: float, bias: float) -> Path:
    first, inits = gemm("input", "h", 4, 5, "1", rng, bias=bias)
    inits += [const("W2", scale_out * rng.standard_normal((3, 5))), const("b2", [1.0, 0.0, 0.0])]
    nodes = first + [node("Relu", ["h"], "r"), node("Gemm", ["r", "W2", "b2"], "output", transB=1)]
    return save(build(nodes, ["N", 4], inits), tmp_path)


@pytest.mark.parametrize("command", [["certify"], ["certify", "--certified"], ["local", "--eps", "1", "--radius"]])
def test_constant_network_has_an_infinite_radius(command, tmp_path, rng):
    path = _two_layer(tmp_path, rng, scale_out=0.0, bias=0.0)
    code, out, err = run(command[0], path, "--input", _npy(tmp_path, np.ones(4)), *command[1:], "--json")
    assert code == 0, err
    import json
    data = json.loads(out)
    radius = data["radius"] if command[0] == "certify" else data["radius"]["radius"]
    assert radius is None  # JSON's infinity
    assert (data if command[0] == "certify" else data["radius"])["method"] == "constant"


def test_dead_relu_layer_has_a_sound_finite_radius(tmp_path, rng):
    path = _two_layer(tmp_path, rng, scale_out=1.0, bias=-50.0)
    net = load_model(path)
    from onnxlip.robustness.attacks import min_adversarial_distance
    from onnxlip.robustness.radius import certified_radius
    r = certified_radius(net, np.ones(4))
    attack = min_adversarial_distance(net, np.ones(4))
    assert 0 < r.radius < np.inf
    assert not attack.found or r.radius <= attack.distance


# 6. single-output models -----------------------------------------------------------------------

SINGLE_OUTPUT_COMMANDS = [["certify", "--input", "X"], ["attack", "--input", "X"],
                          ["check", "--input", "X", "--min-radius", "0.1"], ["certify", "--inputs", "X"],
                          ["local", "--input", "X", "--eps", "0.1", "--radius"]]


@pytest.mark.parametrize("command", SINGLE_OUTPUT_COMMANDS, ids=lambda c: "-".join(c[:2] + c[3:4]))
def test_single_output_model_needs_no_label_for_bounds_and_says_so_for_radii(command, tmp_path, rng):
    nodes, inits = gemm("input", "h", 4, 5, "1", rng)
    last, more = gemm("r", "output", 5, 1, "2", rng)
    path = save(build(nodes + [node("Relu", ["h"], "r")] + last, ["N", 4], inits + more), tmp_path)
    x = _npy(tmp_path, rng.standard_normal(4))
    assert run("local", path, "--input", x, "--eps", "0.1")[0] == 0
    assert_refused([command[0], path] + [x if a == "X" else a for a in command[1:]], "at least 2 outputs")


# 7. inputs without a batch axis ----------------------------------------------------------------

def test_vnncomp_tiny_network_without_batch_axis(tmp_path):
    path = CORPUS / "test_tiny.onnx"
    if not path.is_file():
        pytest.skip("shared corpus not present")
    net = assert_agrees(path, np.array([0.3]))
    assert not net.batched and net.input_shape == (1,)
    code, out, err = run("local", path, "--input", CORPUS / "test_tiny.vnnlib", "--json")
    assert code == 0, err


@pytest.mark.parametrize("column", [False, True])
def test_weights_multiplied_from_the_left(column, tmp_path, rng):
    shape = [6, 1] if column else [6]
    inits = [const("W0", rng.standard_normal((5, 6))), const("B0", rng.standard_normal((5, 1) if column else 5)),
             const("W1", rng.standard_normal((3, 5)))]
    nodes = [node("MatMul", ["W0", "input"], "m"), node("Add", ["m", "B0"], "h"), node("Relu", ["h"], "r"),
             node("MatMul", ["W1", "r"], "output")]
    path = save(build(nodes, shape, inits), tmp_path)
    net = assert_agrees(path, rng.standard_normal(shape))
    assert net.input_shape == tuple(shape) and net.output_shape == ((3, 1) if column else (3,))
    x = tmp_path / "x.npy"
    np.save(x, rng.standard_normal(shape).astype(np.float32))
    code, out, err = run("certify", path, "--input", x, "--certified")
    assert code == 0, err


def test_batched_column_multiplied_from_the_left(tmp_path, rng):
    inits = [const("W0", rng.standard_normal((5, 6)))]
    nodes = [node("MatMul", ["W0", "input"], "m"), node("Relu", ["m"], "output")]
    assert_agrees(save(build(nodes, ["N", 6, 1], inits), tmp_path), rng.standard_normal((6, 1)))


# attributes and domains that change values are refused, never ignored ---------------------------

LEGACY = {
    "add_broadcast_axis": (6, [node("Add", ["input", "c"], "output", broadcast=1, axis=1)],
                           [const("c", np.ones(3))], [1, 3, 2, 2], "axis, broadcast"),
    "batchnorm_spatial": (7, [node("BatchNormalization", ["input", "s", "b", "m", "v"], "output", spatial=0)],
                          [const(n, np.ones((3, 2, 2))) for n in "sbmv"], [1, 3, 2, 2], "spatial"),
    "gemm_broadcast": (6, [node("Gemm", ["input", "w", "c"], "output", broadcast=1)],
                       [const("w", np.ones((4, 2))), const("c", np.ones(2))], [1, 4], "broadcast"),
}


@pytest.mark.parametrize("case", LEGACY.values(), ids=LEGACY.keys())
def test_attributes_the_converter_does_not_read_are_refused(case, tmp_path):
    opset, nodes, inits, shape, names = case
    model = build(nodes, shape, inits, opset=opset)
    with pytest.raises(UnsupportedModelError, match=f"attributes? {names} not supported"):
        load_model(save(model, tmp_path))


def test_operator_of_another_domain_is_refused(tmp_path):
    nodes = [helper.make_node("Relu", ["input"], ["output"], name="custom", domain="com.example")]
    model = build(nodes, ["N", 4], domains=[("com.example", 1)], output_shape=["N", 4])
    with pytest.raises(UnsupportedModelError, match="domain 'com.example'"):
        load_model(save(model, tmp_path))


# the forward check before every computing command -----------------------------------------------

def test_a_misread_network_stops_every_command(tmp_path, monkeypatch, rng):
    nodes, inits = gemm("input", "h", 4, 5, "1", rng)
    last, more = gemm("r", "output", 5, 3, "2", rng)
    path = save(build(nodes + [node("Relu", ["h"], "r")] + last, ["N", 4], inits + more), tmp_path)
    good = load_model(path)
    assert ensure_matches(good, [np.ones(4)], 0.5) is None
    first = good.nodes[0]
    wrong = Network((type(first)(first.weight, first.bias + 0.01, first.in_shape, first.out_shape),
                     *good.nodes[1:]), good.input_shape, good.input_name, good.output_name, good.source)
    with pytest.raises(ModelMismatchError, match="disagrees with onnxruntime"):
        ensure_matches(wrong, [np.ones(4)], 0.5)
    from onnxlip.cli import bound_commands, certify_commands, check_commands
    for commands in (bound_commands, certify_commands, check_commands):
        monkeypatch.setattr(commands, "load_model", lambda _: wrong)
    x = _npy(tmp_path, np.ones(4))
    for command in (["global"], ["local", "--input", x, "--eps", "0.1"], ["certify", "--input", x],
                    ["sweep", "--input", x, "--eps-max", "0.1", "--n", "2"], ["attack", "--input", x],
                    ["lower", "--input", x, "--eps", "0.1"], ["check", "--input", x, "--min-radius", "0.1"]):
        assert_refused([command[0], path, *command[1:]], "disagrees with onnxruntime")


# found by a red-team pass after the first fixes ------------------------------------------------

def test_float64_data_cast_to_float32_is_refused(tmp_path, rng):
    layer, inits = gemm("c2", "output", 4, 3, "1", rng)
    inits = [onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t).astype(np.float64), t.name) for t in inits]
    nodes = [node("Cast", ["input"], "c1", to=TensorProto.FLOAT), node("Cast", ["c1"], "c2", to=TensorProto.DOUBLE)]
    nodes += layer
    path = save(build(nodes, ["N", 4], inits, input_type=TensorProto.DOUBLE), tmp_path)
    assert_refused(["global", path], "float64 data to float32")


@pytest.mark.parametrize("op", ["RandomNormal", "DequantizeLinear"])
def test_random_and_quantized_constants_are_refused(op, tmp_path, rng):
    if op == "RandomNormal":
        source = [node(op, [], "w", shape=[3, 4], scale=1e-5)]
        inits = []
    else:
        source = [node(op, ["q", "s", "z"], "w")]
        inits = [const("q", rng.integers(-100, 100, (3, 4)), np.int8), const("s", 0.01), const("z", 0, np.int8)]
    nodes = source + [node("Gemm", ["input", "w"], "output", transB=1)]
    path = save(build(nodes, ["N", 4], inits, opset=13), tmp_path)
    assert_refused(["global", path], f"({op})")


def test_network_that_imports_to_nothing_is_the_identity(tmp_path, rng):
    path = save(build([node("Identity", ["input"], "i"), node("Flatten", ["i"], "output")], [1, 3]), tmp_path)
    x = _npy(tmp_path, rng.standard_normal(3))
    code, out, err = run("local", path, "--input", x, "--eps", "0.5", "--json")
    import json
    assert code == 0 and abs(json.loads(out)["bounds"][0]["bound"] - 1.0) < 1e-9, err
    assert run("certify", path, "--input", x)[0] == 0


def test_graph_that_fixes_its_batch_inside(tmp_path, rng):
    """A dynamic batch axis and a Reshape to [1, -1] (PyTorch's x.view(1, -1)): onnxruntime runs
    one sample at a time, and so does every check."""
    layer, inits = gemm("flat", "output", 8, 3, "1", rng)
    nodes = [node("Reshape", ["input", "shape"], "flat")] + layer
    inits.append(const("shape", [1, -1], np.int64))
    path = save(build(nodes, ["N", 2, 4], inits), tmp_path)
    assert run("certify", path, "--input", _npy(tmp_path, rng.standard_normal((2, 4))))[0] == 0


def test_gemm_on_a_row_without_batch_axis(tmp_path, rng):
    layer, inits = gemm("row", "output", 5, 3, "1", rng)
    nodes = [node("Reshape", ["input", "shape"], "row")] + layer
    inits.append(const("shape", [1, 5], np.int64))
    assert_agrees(save(build(nodes, [5], inits), tmp_path), rng.standard_normal(5))


def test_inputs_a_converter_does_not_read_are_counted():
    """A node with more inputs than its converter reads (a later opset's new input) is refused."""
    from onnxlip.importer.registry import unread_inputs
    assert unread_inputs(node("Relu", ["x"], "y")) == 0
    assert unread_inputs(node("Relu", ["x", "extra"], "y")) == 1
    assert unread_inputs(node("Conv", ["x", "w", ""], "y")) == 0  # an absent optional input
    assert unread_inputs(node("Pad", ["x", "p", "v", "axes", "more"], "y")) == 1
