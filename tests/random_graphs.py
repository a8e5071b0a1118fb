"""Random valid ONNX graphs over the supported operators, their opset variants and attribute
forms, built with ``onnx.helper`` (shared by the importer fuzz and the DAG-engine tests)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from helpers import exposing
from onnxlip.importer import load_model

OPSETS = (10, 11, 13, 17, 19)
SEEDS = range(24)


@dataclass
class Graph:
    """A graph under construction: the data tensor so far and its full shape (batch 1 first)."""

    rng: np.random.Generator
    opset: int
    tensor: str = "input"
    shape: tuple[int, ...] = ()
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    count: int = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def const(self, array: np.ndarray, dtype=np.float32) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def op(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.tensor, self.shape = out, shape
        return out

    def axes(self, op: str, axes: list[int], shape: tuple[int, ...]) -> str:
        """Squeeze/Unsqueeze with axes as an attribute (before opset 13) or an input."""
        if self.opset < 13:
            return self.op(op, [self.tensor], shape, axes=axes)
        return self.op(op, [self.tensor, self.const(axes, np.int64)], shape)


def _window_out(size: int, k: int, s: int, d: int, pad: int, ceil: bool = False) -> int:
    span = size + pad - (d * (k - 1) + 1)
    return (-(-span // s) if ceil else span // s) + 1


def conv(g: Graph, out_channels: int | None = None, same: bool = False) -> None:
    r, (_, c, h, w) = g.rng, g.shape
    m = out_channels or int(r.integers(2, 4))
    groups = c if (not same and c == m and r.random() < 0.3) else 1
    k = 3 if same else int(r.integers(1, 4))
    stride = 1 if same else int(r.integers(1, 3))
    dil = 1 if same or k == 1 else int(r.integers(1, 3))
    weight = r.standard_normal((m, c // groups, k, k)) / np.sqrt(k * k * c / groups)
    inputs = [g.tensor, g.const(weight)] + ([g.const(0.3 * r.standard_normal(m))] if r.random() < 0.7 else [])
    attrs: dict = {"kernel_shape": [k, k]} if r.random() < 0.5 else {}
    form = "same" if same else r.choice(["pads", "SAME_UPPER", "SAME_LOWER", "VALID", "none"])
    if form.startswith("SAME"):
        dil = 1  # onnxruntime runs no dilated convolution with auto_pad SAME
    if form == "same":
        attrs["pads"] = [1, 1, 1, 1]
        out_hw = (h, w)
    elif form in ("SAME_UPPER", "SAME_LOWER"):
        attrs["auto_pad"] = form
        out_hw = (-(-h // stride), -(-w // stride))
    else:
        pads = [int(p) for p in r.integers(0, 2, 4)] if form == "pads" else [0, 0, 0, 0]
        if form == "pads":
            attrs["pads"] = pads
        elif form == "VALID":
            attrs["auto_pad"] = "VALID"
        out_hw = (_window_out(h, k, stride, dil, pads[0] + pads[2]), _window_out(w, k, stride, dil, pads[1] + pads[3]))
    if min(out_hw) < 1:
        return
    if stride > 1 or r.random() < 0.3:
        attrs["strides"] = [stride, stride]
    if dil > 1:
        attrs["dilations"] = [dil, dil]
    if groups > 1:
        attrs["group"] = groups
    g.op("Conv", inputs, (1, m, *out_hw), **attrs)


def maxpool(g: Graph) -> None:
    r, (_, c, h, w) = g.rng, g.shape
    k, s = int(r.integers(2, 4)), int(r.integers(1, 3))
    pad = int(r.integers(0, 2)) if k > 2 else 0
    ceil = g.opset >= 10 and r.random() < 0.4
    dil = 2 if g.opset >= 10 and r.random() < 0.2 else 1
    hw = [_window_out(n, k, s, dil, 2 * pad, ceil) for n in (h, w)]
    hw = [o - 1 if ceil and (o - 1) * s >= n + pad else o for o, n in zip(hw, (h, w))]
    if min(hw) < 1:
        return
    attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": [pad] * 4}
    if ceil:
        attrs["ceil_mode"] = 1
    if dil > 1:
        attrs["dilations"] = [dil, dil]
    g.op("MaxPool", [g.tensor], (1, c, *hw), **attrs)


def avgpool(g: Graph) -> None:
    r, (_, c, h, w) = g.rng, g.shape
    k = int(r.integers(2, 4))
    if min(h, w) < k:
        return
    pad = int(r.integers(0, 2))
    attrs = {"kernel_shape": [k, k], "strides": [1, 1]}
    if pad:
        attrs.update(pads=[pad] * 4, count_include_pad=1)
    g.op("AveragePool", [g.tensor], (1, c, h + 2 * pad - k + 1, w + 2 * pad - k + 1), **attrs)


def pad(g: Graph) -> None:
    r, (_, c, h, w) = g.rng, g.shape
    pads = [0, 0, *[int(p) for p in r.integers(0, 2, 2)], 0, 0, *[int(p) for p in r.integers(0, 2, 2)]]
    value = float(r.choice([0.0, 0.5, -1.0]))
    shape = (1, c, h + pads[2] + pads[6], w + pads[3] + pads[7])
    if g.opset < 11:
        g.op("Pad", [g.tensor], shape, pads=pads, value=value, mode="constant")
    else:
        g.op("Pad", [g.tensor, g.const(pads, np.int64), g.const(value)], shape)


def normalise(g: Graph) -> None:
    """Per-channel or per-pixel Sub/Div/Mul/Add with a constant, or BatchNormalization."""
    r, c = g.rng, g.shape[1]
    kind = r.choice(["Sub", "Div", "Mul", "Add", "BatchNormalization"])
    if kind == "BatchNormalization":
        params = [r.uniform(0.5, 1.5, c), r.standard_normal(c), r.standard_normal(c), r.uniform(0.5, 2, c)]
        g.op(kind, [g.tensor, *(g.const(p) for p in params)], g.shape, epsilon=1e-3)
        return
    per_pixel = len(g.shape) == 4 and r.random() < 0.3
    shape = g.shape[1:] if per_pixel else ((c, 1, 1) if len(g.shape) == 4 else (c,))
    value = r.uniform(0.5, 2.0, shape) if kind in ("Div", "Mul") else r.standard_normal(shape)
    operands = [g.tensor, g.const(value)] if kind == "Div" or r.random() < 0.7 else [g.const(value), g.tensor]
    g.op(kind, operands, g.shape)


def passthrough(g: Graph) -> None:
    r = g.rng
    kind = r.choice(["Identity", "Dropout", "Cast"])
    if kind == "Cast":
        g.op("Cast", [g.tensor], g.shape, to=TensorProto.FLOAT)
    elif kind == "Dropout" and g.opset >= 12:
        g.op("Dropout", [g.tensor, g.const(0.5)], g.shape)
    else:
        g.op(kind, [g.tensor], g.shape)


def residual(g: Graph, depth: int = 0) -> None:
    """x + Conv(Relu(Conv(x))) with 'same' convolutions; the main branch may hold a nested block,
    the skip path a Conv or a BatchNormalization."""
    fork, shape = g.tensor, g.shape
    conv(g, shape[1], same=True)
    g.op("Relu", [g.tensor], g.shape)
    if depth < 1 and g.rng.random() < 0.3:
        residual(g, depth + 1)
    conv(g, shape[1], same=True)
    main = g.tensor
    g.tensor, g.shape = fork, shape
    skip = g.rng.random()
    if skip < 0.25:
        conv(g, shape[1], same=True)
    elif skip < 0.4:
        params = [g.rng.uniform(0.5, 1.5, shape[1]), g.rng.standard_normal(shape[1]),
                  g.rng.standard_normal(shape[1]), g.rng.uniform(0.5, 2, shape[1])]
        g.op("BatchNormalization", [g.tensor, *(g.const(p) for p in params)], shape)
    g.op("Add", [main, g.tensor] if g.rng.random() < 0.5 else [g.tensor, main], shape)


def concat(g: Graph) -> None:
    """DenseNet/Inception-style: [x, Relu(Conv(x))] or [Conv(x), Relu(Conv(x))] joined along the
    channels (axis 1 or -3)."""
    fork, shape = g.tensor, g.shape
    conv(g, int(g.rng.integers(1, 3)), same=True)
    g.op("Relu", [g.tensor], g.shape)
    grown = g.tensor, g.shape
    g.tensor, g.shape = fork, shape
    if g.rng.random() < 0.4:
        conv(g, shape[1], same=True)
    parts = [g.tensor, grown[0]] if g.rng.random() < 0.5 else [grown[0], g.tensor]
    axis = 1 if g.opset < 11 or g.rng.random() < 0.5 else -3  # negative axes from opset 11
    g.op("Concat", parts, (1, g.shape[1] + grown[1][1], *shape[2:]), axis=axis)


def flatten(g: Graph) -> None:
    r, size = g.rng, int(np.prod(g.shape[1:]))
    kind = r.choice(["Flatten", "Reshape0", "Reshape1", "GlobalAveragePool"])
    if kind == "Flatten":
        g.op("Flatten", [g.tensor], (1, size), **({"axis": 1} if r.random() < 0.5 else {}))
    elif kind == "GlobalAveragePool":
        g.op("GlobalAveragePool", [g.tensor], (1, g.shape[1], 1, 1))
        negative = g.opset >= 11 and r.random() < 0.5  # negative axes from opset 11
        g.axes("Squeeze", [-1, -2] if negative else [2, 3], (1, g.shape[1]))
    else:
        target = [0, -1] if kind == "Reshape0" else [1, -1]
        g.op("Reshape", [g.tensor, g.const(target, np.int64)], (1, size))


def dense(g: Graph, out: int, relu: bool) -> None:
    r, k = g.rng, g.shape[1]
    weight = r.standard_normal((out, k)) / np.sqrt(k)
    if r.random() < 0.5:
        trans = bool(r.random() < 0.7)
        alpha, beta = (float(r.uniform(0.5, 2)), float(r.uniform(0.5, 2))) if r.random() < 0.3 else (1.0, 1.0)
        bias = r.standard_normal((1, out) if r.random() < 0.3 else out)
        g.op("Gemm", [g.tensor, g.const(weight if trans else weight.T), g.const(bias)], (1, out),
             transB=int(trans), alpha=alpha, beta=beta)
    else:
        g.op("MatMul", [g.tensor, g.const(weight.T)], (1, out))
        g.op("Add", [g.tensor, g.const(r.standard_normal(out))], (1, out))
    if relu:
        g.op("Relu", [g.tensor], g.shape)


IMAGE_BLOCKS = (conv, maxpool, avgpool, pad, normalise, passthrough, residual, concat)


def _finish(g: Graph, input_shape: list, seed: int) -> onnx.ModelProto:
    """Dense layers down to 3 logits, sometimes a Softmax head, a dangling node or a second
    output; then a checked model."""
    rng = g.rng
    for _ in range(int(rng.integers(1, 3))):
        dense(g, int(rng.integers(4, 9)), relu=True)
    dense(g, 3, relu=False)
    logits = g.tensor
    outputs = [logits]
    if rng.random() < 0.3:  # a softmax head, the declared output
        outputs = [g.op("Softmax", [logits], g.shape, axis=1)]
    if rng.random() < 0.3:  # a node hanging off the logits that no output reads
        g.op("Relu", [logits], g.shape)
    if rng.random() < 0.2:  # a second declared output that computes more
        outputs.append(g.op("Add", [logits, g.const(np.ones(3))], g.shape))
    graph = helper.make_graph(g.nodes, f"random{seed}",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)])
    model.ir_version = 7
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for out, typed in zip(model.graph.output, inferred.graph.output):
        out.CopyFrom(typed)
    onnx.checker.check_model(model, full_check=True)
    return model


def random_model(seed: int) -> onnx.ModelProto:
    """Any supported graph: an image path of random blocks (every third seed: a vector input)."""
    rng = np.random.default_rng(seed)
    g = Graph(rng, int(rng.choice(OPSETS)))
    image = seed % 3 != 0
    g.shape = (1, 2, 7, 7) if image else (1, 6)
    input_shape = ["N" if rng.random() < 0.5 else 1, *g.shape[1:]]
    if image:
        for _ in range(int(rng.integers(2, 5))):
            block = IMAGE_BLOCKS[int(rng.integers(len(IMAGE_BLOCKS)))]
            block(g)
            if rng.random() < 0.6 and g.nodes and g.nodes[-1].op_type != "Relu":
                g.op("Relu", [g.tensor], g.shape)
        flatten(g)
    elif rng.random() < 0.5:
        normalise(g)
    return _finish(g, input_shape, seed)


def random_resnet(seed: int) -> onnx.ModelProto:
    """A residual conv net: a stem convolution, 1–3 blocks (residual, nested ones, a Conv or
    BatchNorm on some skips; or a channel Concat), ReLU after each merge, then dense layers."""
    rng = np.random.default_rng(seed)
    g = Graph(rng, 17, shape=(1, 2, 6, 6))
    conv(g, 3, same=True)
    g.op("Relu", [g.tensor], g.shape)
    for _ in range(int(rng.integers(1, 4))):
        (residual if rng.random() < 0.7 else concat)(g)
        g.op("Relu", [g.tensor], g.shape)
    flatten(g)
    return _finish(g, ["N", 2, 6, 6], seed)


def saved_resnet(seed: int, tmp_path: Path) -> tuple[Path, Any, Any, np.ndarray]:
    """A random residual net saved under ``tmp_path``: (the file with its logits exposed, for
    onnxruntime; the imported network; its DAG; an input)."""
    path, model = tmp_path / f"resnet{seed}.onnx", random_resnet(seed)
    onnx.save(model, str(path))
    net = load_model(path)
    path = tmp_path / f"logits{seed}.onnx"  # what onnxruntime runs: the logits exposed
    onnx.save(exposing(model, net.output_name), str(path))
    x0 = np.random.default_rng(seed).standard_normal(net.input_shape)
    return path, net, net.graph, x0
