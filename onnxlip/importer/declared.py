"""What an ONNX file declares, before any conversion: the checked model, its one data
input (with the batch axis fixed, or none), the declared output to analyse and the nodes
that output needs (anything else is ignored, whatever it reads)."""
from __future__ import annotations

import os

import onnx

from ..errors import ModelLoadError, UnsupportedModelError, UnsupportedNode
from ..graph.nodes import Shape
from .registry import FLOAT_TYPES, POSTPROCESS_OPS, type_name


def read_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Load and check an ONNX file; any failure is a one-line ModelLoadError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"{path}: no such file")
    try:
        model = onnx.load(path)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: invalid ONNX model: {first}") from None
    if not model.graph.node:
        raise ModelLoadError(f"{path}: the graph has no nodes")
    return model


def data_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise UnsupportedModelError([UnsupportedNode("<graph>", "inputs", f"needs exactly one data input, found {len(inputs)} ({names})")])
    return inputs[0]


def _input_problem(value: onnx.ValueInfoProto, reason: str) -> UnsupportedModelError:
    return UnsupportedModelError([UnsupportedNode("<graph>", "input", f"input '{value.name}' {reason}")])


def fix_batch(value: onnx.ValueInfoProto) -> tuple[Shape, bool]:
    """Set a dynamic batch axis to 1 in place; return the per-sample shape and whether the
    graph has a batch axis. A 1-D input, or one whose first axis is fixed above 1, has none
    (nnet-format exports): the whole tensor is then the sample."""
    elem = value.type.tensor_type.elem_type
    if elem not in FLOAT_TYPES:
        raise _input_problem(value, f"is {type_name(elem)}; onnxlip analyses float32/float64 inputs")
    if not value.type.tensor_type.HasField("shape"):
        raise _input_problem(value, "has no declared shape")
    dims = value.type.tensor_type.shape.dim
    if len(dims) == 1:
        if dims[0].dim_param or dims[0].dim_value <= 0:
            raise _input_problem(value, "is 1-D with a dynamic size; give it a fixed size")
        return (dims[0].dim_value,), False
    if len(dims) < 1:
        raise _input_problem(value, "is a scalar; onnxlip needs at least one input axis")
    for axis, dim in enumerate(dims):
        if axis == 0 and (dim.dim_param or dim.dim_value in (0, 1)):
            dim.Clear()
            dim.dim_value = 1
        elif dim.dim_param or dim.dim_value <= 0:
            raise UnsupportedModelError([UnsupportedNode("<graph>", "input", f"input '{value.name}' has a dynamic axis {axis}; only the batch axis may be dynamic")])
    if dims[0].dim_value != 1:  # a fixed first axis > 1 is not a batch onnxlip can split: one sample
        return tuple(d.dim_value for d in dims), False
    return tuple(d.dim_value for d in dims[1:]), True


def analysed_output(model: onnx.ModelProto) -> str:
    """The declared graph output to analyse: the first."""
    if not model.graph.output:
        raise UnsupportedModelError([UnsupportedNode("<graph>", "outputs", "the graph declares no output")])
    return model.graph.output[0].name


def other_outputs(model: onnx.ModelProto, kept: list[onnx.NodeProto]) -> tuple[str, ...]:
    """A warning naming the declared outputs that compute more than the analysed one (those
    that only post-process the same logits, such as sklearn's probabilities, are not named)."""
    core = {id(n) for n in kept}
    others = [o.name for o in model.graph.output[1:]
              if any(id(n) not in core and n.op_type not in POSTPROCESS_OPS for n in needed_nodes(model.graph, o.name))]
    if not others:
        return ()
    return (f"analyses graph output '{model.graph.output[0].name}' only, not {', '.join(others)}",)


def needed_nodes(graph: onnx.GraphProto, output: str) -> list[onnx.NodeProto]:
    """The nodes that ``output`` depends on, in graph (topological) order."""
    needed, kept = {output}, []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    return kept[::-1]
