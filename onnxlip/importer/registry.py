"""Explicit registry of ONNX → IR converters, one function per operator.

A converter receives a ``NodeContext`` and returns the IR nodes for that ONNX
node (possibly none). It raises ``ConversionError`` with a reason for anything
it does not handle. Each registration names the attributes its converter reads;
the loader refuses a node that carries any other (legacy attributes such as
Add-1's ``broadcast``/``axis`` or BatchNormalization-7's ``spatial`` change the
values), so nothing is silently ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper

from ..graph.nodes import Node, Shape


class ConversionError(Exception):
    """Why a node cannot be converted (collected, then reported all at once)."""


@dataclass
class NodeContext:
    """What a converter may know about one ONNX node."""

    node: onnx.NodeProto
    consts: dict[str, np.ndarray]
    in_shape: Shape  # per-sample shape of the node's one data input
    data_index: int  # position of the data input among node.input
    opset: int
    batched: bool = True  # False: the graph's tensors have no batch axis (nnet-style exports)
    in_type: int = onnx.TensorProto.FLOAT  # element type of the data input
    warnings: list[str] = field(default_factory=list)

    @property
    def full_shape(self) -> Shape:
        """The data input's ONNX shape (with the batch axis of 1 when the graph has one)."""
        return (1, *self.in_shape) if self.batched else self.in_shape

    def sample_shape(self, full: tuple[int, ...], what: str = "the result") -> Shape:
        """Per-sample shape of an ONNX shape; refuses one that moves or resizes the batch axis."""
        if not self.batched:
            return tuple(int(d) for d in full)
        if not full or full[0] != 1:
            raise ConversionError(f"{what} of shape {list(full)} would move the batch axis")
        return tuple(int(d) for d in full[1:])

    def require_batch(self) -> None:
        if not self.batched:
            raise ConversionError(f"needs a batch axis of 1, got {list(self.in_shape)} from a graph input without one "
                                  "(onnxlip takes such an input as one sample)")

    @property
    def label(self) -> tuple[str, ...]:
        return (self.node.name or self.node.output[0],)

    def attr(self, name: str, default: Any = None) -> Any:
        for a in self.node.attribute:
            if a.name == name:
                value = helper.get_attribute_value(a)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def const(self, index: int, what: str = "input") -> np.ndarray | None:
        """Constant value of input ``index``; None when the input is absent."""
        if index >= len(self.node.input) or not self.node.input[index]:
            return None
        name = self.node.input[index]
        if name not in self.consts:
            raise ConversionError(f"{what} '{name}' is not a constant (weights must be initializers)")
        value = self.consts[name]
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ConversionError(f"{what} '{name}' contains NaN or Inf")
        return value

    def refuse_attr(self, name: str, allowed: Any) -> None:
        """Refuse a node whose attribute ``name`` differs from the handled value."""
        value = self.attr(name, allowed)
        if value != allowed:
            raise ConversionError(f"attribute {name}={value!r} is not supported (only {allowed!r})")

    def refuse_extra_outputs(self) -> None:
        if len([o for o in self.node.output if o]) > 1:
            raise ConversionError("only the first output is supported")


Converter = Callable[[NodeContext], list[Node]]
CONVERTERS: dict[str, Converter] = {}
ATTRIBUTES: dict[str, frozenset[str]] = {}  # op -> the attributes its converter reads
INPUTS: dict[str, int] = {}  # op -> how many inputs its converter reads
# A memory hint of opset-1 ops (Relu-1, Add-1, …) with no effect on values.
HARMLESS_ATTRIBUTES = frozenset({"consumed_inputs"})


def converter(*op_types: str, attrs: tuple[str, ...] = (), inputs: int = 1) -> Callable[[Converter], Converter]:
    """Register ``fn`` as the converter of ``op_types`` (each at most once), reading ``attrs``
    and the first ``inputs`` inputs."""

    def register(fn: Converter) -> Converter:
        for op in op_types:
            if op in CONVERTERS:
                raise RuntimeError(f"converter for {op} registered twice")
            CONVERTERS[op] = fn
            ATTRIBUTES[op] = frozenset(attrs)
            INPUTS[op] = inputs
        return fn

    return register


def unread_inputs(node: onnx.NodeProto) -> int:
    """How many given inputs of ``node`` its converter does not read (the node must be refused)."""
    given = [i for i, name in enumerate(node.input) if name]
    return len([i for i in given if i >= INPUTS.get(node.op_type, 0)])


def unread_attributes(node: onnx.NodeProto) -> list[str]:
    """Attributes of ``node`` that its converter does not read (the node must be refused)."""
    known = ATTRIBUTES.get(node.op_type, frozenset()) | HARMLESS_ATTRIBUTES
    return [a.name for a in node.attribute if a.name not in known]


# Ops that map class scores to probabilities or labels: bounds are on the logits,
# so these may end a graph and are dropped with a warning.
HEAD_OPS = frozenset({"Softmax", "LogSoftmax", "ArgMax"})
# Element types a data tensor may have: lower precisions round (the network is then a
# staircase, not piecewise linear) and integers truncate.
FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE})


def type_name(code: int) -> str:
    """'float16' for TensorProto.FLOAT16, the number for an unknown code."""
    try:
        return onnx.TensorProto.DataType.Name(code).lower()
    except ValueError:
        return f"type {code}"


# What may follow a head (labels, probabilities, their reshaping): dropped with it.
POSTPROCESS_OPS = HEAD_OPS | frozenset({
    "Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "ZipMap", "ArrayFeatureExtractor",
    "Normalizer", "LabelEncoder", "TopK", "ReduceMax",
})
# Ops onnxruntime does not run as fixed float maps, refused wherever the output needs them,
# constant subgraphs included: random draws (new values every run) and quantization
# (onnxruntime may fuse DequantizeLinear into an 8-bit kernel that rounds the data).
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                        "Multinomial"})
QUANTIZATION_OPS = frozenset({"DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                              "QLinearMatMul", "MatMulInteger", "ConvInteger"})


def unfoldable(op_type: str) -> str | None:
    """Why an op cannot be part of the analysed network even on constants (None: it can)."""
    if op_type in RANDOM_OPS:
        return "draws new random values on every run: not a fixed network"
    if op_type in QUANTIZATION_OPS:
        return "quantized weights: onnxruntime may run the layer in 8-bit arithmetic, which rounds the data"
    return None


# Ops that make a network non-ReLU: named explicitly in the error.
NON_RELU_ACTIVATIONS = frozenset({
    "Sigmoid", "Tanh", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "HardSigmoid",
    "HardSwish", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Clip", "Abs", "Exp", "Log",
})
