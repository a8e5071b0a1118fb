"""Shared helpers for the onnxlip tests: tiny in-memory ONNX models, an
onnxruntime runner, explicit (dense) matrices of IR linear maps, and
independent brute-force references for convolution and max-pooling."""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnxlip.linalg.windows import Window2d

OPSET = 17
IR_VERSION = 8
REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
MODELS = MODELS_DIR
PAPER = json.loads((MODELS_DIR / "paper_numbers.json").read_text())
DATA_DIR = Path(__file__).resolve().parent / "data"


# --------------------------------------------------------------------------
# Building and running ONNX models
# --------------------------------------------------------------------------


def const(name: str, array: Any, dtype: Any = np.float32) -> onnx.TensorProto:
    """An initializer tensor (float32 unless ``dtype`` says otherwise)."""
    return numpy_helper.from_array(np.asarray(array, dtype=dtype), name)


def node(op: str, inputs: Sequence[str], outputs: Sequence[str] | str, name: str | None = None,
         **attrs: Any) -> onnx.NodeProto:
    """An ONNX node; the name defaults to ``<op>_<first output>``."""
    outputs = [outputs] if isinstance(outputs, str) else list(outputs)
    return helper.make_node(op, list(inputs), outputs, name=name or f"{op}_{outputs[0]}", **attrs)


def make_model(
    nodes: Sequence[onnx.NodeProto],
    input_shape: Sequence[int],
    initializers: Iterable[onnx.TensorProto] = (),
    *,
    inputs: Sequence[tuple[str, Sequence[int]]] | None = None,
    output: str | None = None,
    output_type: int = TensorProto.FLOAT,
    output_shape: Sequence[int | str] | None = None,
    batch_dim: int | str = "batch",
) -> onnx.ModelProto:
    """A model whose data input ``input`` has shape (batch_dim, *input_shape).

    ``output`` defaults to the first output of the last node; its shape is
    taken from ONNX shape inference unless ``output_shape`` gives it, in which
    case the model is not checked (for deliberately invalid models). ``inputs``
    replaces the single data input by several (name, per-sample shape) inputs.
    """
    inputs = inputs if inputs is not None else [("input", input_shape)]
    graph_inputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch_dim, *shape]) for name, shape in inputs
    ]
    output = output or nodes[-1].output[0]
    graph = helper.make_graph(
        list(nodes),
        "test_graph",
        graph_inputs,
        [helper.make_tensor_value_info(output, output_type, output_shape)],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnxlip-tests")
    model.ir_version = IR_VERSION
    if output_shape is not None:
        return model
    # The checker wants a shape on the output: take the one ONNX shape inference finds.
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    model.graph.output[0].CopyFrom(inferred.graph.output[0])
    onnx.checker.check_model(model, full_check=True)
    return model


def save_model(model: onnx.ModelProto, directory: os.PathLike | str, name: str = "model") -> Path:
    path = Path(directory) / f"{name}.onnx"
    onnx.save(model, os.fspath(path))
    return path


def run_ort(model: os.PathLike | str | onnx.ModelProto, x: np.ndarray, output: str | None = None) -> np.ndarray:
    """Run a model file (or ModelProto) on onnxruntime (CPU) with the single data input ``x``."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # no warnings about declared vs actual output shapes
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else os.fspath(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    data = session.get_inputs()[0]
    x = np.asarray(x, dtype=np.float32)
    names = [output] if output else None
    if data.shape and data.shape[0] == 1 and len(x) != 1:  # a fixed batch of 1: one sample at a time
        return np.concatenate([session.run(names, {data.name: x[k : k + 1]})[0] for k in range(len(x))])
    return session.run(names, {data.name: x})[0]


def exposing(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    """A copy of the model with ``tensor`` (e.g. the logits under a Softmax head) as a graph output too."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if tensor not in {o.name for o in model.graph.output}:
        model.graph.output.append(helper.make_empty_tensor_value_info(tensor))
    return model


def run_ort_each(model: os.PathLike | str, xs: np.ndarray, output: str | None = None) -> np.ndarray:
    """``run_ort`` one sample at a time, flat outputs (N, -1): a graph may fix its batch to 1 inside."""
    return np.concatenate([run_ort(model, x[None], output).reshape(1, -1) for x in xs])


def assert_rel_close(actual: Any, expected: Any, rtol: float, what: str = "") -> None:
    """max |actual − expected| ≤ rtol · max(|expected|, tiny); shapes must agree."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    scale = max(float(np.max(np.abs(expected))) if expected.size else 0.0, 1e-30)
    err = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    assert err <= rtol * scale, f"{what}: max abs error {err:.3e} > {rtol:g} * {scale:.3e}"


# --------------------------------------------------------------------------
# Dense matrices of linear maps
# --------------------------------------------------------------------------


def dense_matrix(apply: Callable[[np.ndarray], np.ndarray], in_shape: Sequence[int]) -> np.ndarray:
    """The (out_size, in_size) matrix of a batched linear map, from the identity basis."""
    n = int(np.prod(in_shape))
    basis = np.eye(n).reshape(n, *in_shape)
    return apply(basis).reshape(n, -1).T


def node_matrix(node: Any) -> np.ndarray:
    """Dense matrix of an IR linear/affine node's ``linear`` part."""
    return dense_matrix(node.linear, node.in_shape)


def adjoint_gap(forward: Callable, adjoint: Callable, in_shape: Sequence[int], out_shape: Sequence[int],
                rng: np.random.Generator, batch: int = 3) -> float:
    """Largest relative |⟨Ax, y⟩ − ⟨x, Aᵀy⟩| over a batch of random (x, y)."""
    x = rng.standard_normal((batch, *in_shape))
    y = rng.standard_normal((batch, *out_shape))
    ax, aty = forward(x), adjoint(y)
    assert ax.shape == y.shape and aty.shape == x.shape
    lhs = np.sum((ax * y).reshape(batch, -1), axis=1)
    rhs = np.sum((x * aty).reshape(batch, -1), axis=1)
    scale = np.linalg.norm(ax.reshape(batch, -1), axis=1) * np.linalg.norm(y.reshape(batch, -1), axis=1)
    scale = np.maximum(scale, np.linalg.norm(x.reshape(batch, -1), axis=1)
                       * np.linalg.norm(aty.reshape(batch, -1), axis=1))
    return float(np.max(np.abs(lhs - rhs) / np.maximum(scale, 1e-300)))


# --------------------------------------------------------------------------
# Window geometry and brute-force references (independent of onnxlip)
# --------------------------------------------------------------------------


def out_size(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int,
             ceil_mode: bool = False) -> int:
    """ONNX/PyTorch output size of a sliding window along one axis."""
    span = size + pad_begin + pad_end - (dilation * (kernel - 1) + 1)
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def make_window(kernel: Sequence[int], strides: Sequence[int] = (1, 1), dilations: Sequence[int] = (1, 1),
                pads: Sequence[int] = (0, 0, 0, 0), in_hw: Sequence[int] = (5, 5),
                ceil_mode: bool = False) -> Window2d:
    """A Window2d with out_hw computed here (pads in ONNX order top, left, bottom, right)."""
    out_hw = tuple(
        out_size(in_hw[a], kernel[a], strides[a], dilations[a], pads[a], pads[a + 2], ceil_mode) for a in range(2)
    )
    return Window2d(tuple(kernel), tuple(strides), tuple(dilations), tuple(pads), tuple(in_hw), out_hw)


def _taps(win: Window2d, oh: int, ow: int) -> Iterable[tuple[int, int, int, int]]:
    """(i, j, ih, iw) of every kernel tap of output pixel (oh, ow) that lies inside the input."""
    for i, j in itertools.product(range(win.kernel[0]), range(win.kernel[1])):
        ih = oh * win.strides[0] - win.pads[0] + i * win.dilations[0]
        iw = ow * win.strides[1] - win.pads[1] + j * win.dilations[1]
        if 0 <= ih < win.in_hw[0] and 0 <= iw < win.in_hw[1]:
            yield i, j, ih, iw


def conv_matrix(weight: np.ndarray, win: Window2d, groups: int) -> np.ndarray:
    """Explicit matrix of a grouped, strided, dilated, zero-padded 2-D correlation (no bias)."""
    m, cg = weight.shape[:2]
    c = cg * groups
    (h, w), (ho, wo) = win.in_hw, win.out_hw
    mat = np.zeros((m, ho, wo, c, h, w))
    per_group = m // groups
    for o in range(m):
        g = o // per_group
        for oh, ow in itertools.product(range(ho), range(wo)):
            for i, j, ih, iw in _taps(win, oh, ow):
                for k in range(cg):
                    mat[o, oh, ow, g * cg + k, ih, iw] += weight[o, k, i, j]
    return mat.reshape(m * ho * wo, c * h * w)


def maxpool_reference(x0: np.ndarray, win: Window2d) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool of one sample x0 (C, H, W) and its selection matrix at x0 (padding never wins)."""
    c = x0.shape[0]
    (h, w), (ho, wo) = win.in_hw, win.out_hw
    values = np.empty((c, ho, wo))
    select = np.zeros((c, ho, wo, c, h, w))
    for ch, oh, ow in itertools.product(range(c), range(ho), range(wo)):
        taps = list(_taps(win, oh, ow))
        assert taps, "a window lies entirely in the padding"
        best = max(taps, key=lambda t: x0[ch, t[2], t[3]])
        values[ch, oh, ow] = x0[ch, best[2], best[3]]
        select[ch, oh, ow, ch, best[2], best[3]] = 1.0
    return values, select.reshape(c * ho * wo, c * h * w)


def box_text(lo: np.ndarray, hi: np.ndarray, outputs: int = 0, extra: str = "") -> str:
    lines = ["; a VNN-COMP style property", "(set-logic QF_LRA)"]
    lines += [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(outputs)]
    for i, (a, b) in enumerate(zip(lo, hi)):
        lines += [f"(assert (>= X_{i} {float(a)!r}))", f"(assert (<= X_{i} {float(b)!r}))"]
    return "\n".join(lines) + "\n" + extra


def max_sampled_ratio(path: Path, net: Any, x0: np.ndarray, eps: float, n: int, seed: int) -> float:
    """Largest ‖f(x) − f(x0)‖/‖x − x0‖ over n points of the ball, f run by onnxruntime."""
    from onnxlip.importer.runtime import run_onnx
    from random_nets import ball_samples

    points = ball_samples(x0, eps, n, np.random.default_rng(seed))
    outputs = run_onnx(path, np.concatenate([x0[None], points]), net.output_name).astype(np.float64)
    deltas = np.linalg.norm((outputs[1:] - outputs[0]).reshape(n, -1), axis=1)
    dist = np.linalg.norm((points - x0[None]).reshape(n, -1), axis=1)
    return float(np.max(deltas / dist))


def assert_secant_holds(node: Any, sec: Any, z0: np.ndarray, points: Iterable[np.ndarray]) -> None:
    """g(z) − g(z0) = (S̄ + L U R)(z − z0) with ‖U‖₂ ≤ 1 at every point z: the residual after
    the centre vanishes where L = 0 and, divided by L, is no longer than R(z − z0)."""
    for z in points:
        dz = z[None] - z0
        residual = (node.forward(z[None]) - node.forward(z0) - sec.jvp(dz)).reshape(-1)
        if sec.left is None:
            np.testing.assert_allclose(residual, 0.0, atol=1e-12)
            continue
        left, right = sec.left.reshape(-1), sec.right.reshape(-1)
        assert np.all(np.abs(residual[left == 0]) <= 1e-12)
        scaled = residual[left > 0] / left[left > 0]
        assert np.linalg.norm(scaled) <= np.linalg.norm(right * dz.reshape(-1)) * (1 + 1e-9) + 1e-12
