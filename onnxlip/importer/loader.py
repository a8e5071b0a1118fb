"""ONNX file → IR Network: read, check, fix the batch axis, keep the nodes that the
declared graph output needs, fold constants, convert node by node through the
registry, number the data path's nodes as a DAG, then simplify the IR.

The analysed tensor is the graph's first declared output (or the logits under an
output head such as Softmax); nodes that do not feed it are ignored, whatever
they read, and a declared output the data path cannot reach is refused.

Branches: a data tensor may be read by any number of nodes; branches merge at an Add of
two data tensors (residual blocks) or a Concat of data tensors (DenseNet, Inception).
Any other op that combines data tensors (a product, a Sub…) is refused, naming it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from ..errors import ModelLoadError, UnsupportedModelError, UnsupportedNode
from ..graph.nodes import Add, Concat, Node, Reshape, Shape
from ..graph.network import Network
from . import ops_activation, ops_affine, ops_pooling, ops_shape  # noqa: F401  (register converters)
from .declared import analysed_output, data_input, fix_batch, needed_nodes, other_outputs, read_model
from .fold import fold
from .registry import (CONVERTERS, HEAD_OPS, INPUTS, NON_RELU_ACTIVATIONS, POSTPROCESS_OPS, ConversionError,
                       NodeContext, unfoldable, unread_attributes, unread_inputs)
from .topology import MERGE_OPS, Step, assemble


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, Shape]:
    """Static shapes from ONNX shape inference, used to cross-check conversion."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:
        return {}
    shapes = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = tuple(d.dim_value for d in dims)
    return shapes


@dataclass
class _Walk:
    """State of the node-by-node conversion."""

    consts: dict[str, np.ndarray]
    shapes: dict[str, Shape | None]  # per-sample shapes of data tensors (None: unknown)
    last: str  # the data tensor produced last
    opset: int
    inferred: dict[str, Shape]
    batched: bool = True
    input_type: int = onnx.TensorProto.FLOAT
    types: dict[str, int] = field(default_factory=dict)  # element type of data tensors after a Cast
    steps: list[Step] = field(default_factory=list)  # the data path, in graph order
    problems: list[UnsupportedNode] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    dropped_tensors: set[str] = field(default_factory=set)
    logits: str | None = None

    def add(self, step: Step) -> None:
        self.steps.append(step)
        self.last = step.output


def _fold_constant(node: onnx.NodeProto, walk: _Walk) -> None:
    reason = unfoldable(node.op_type)
    if reason is not None:
        walk.problems.append(UnsupportedNode(node.name, node.op_type, reason))
        return
    feeds = {name: walk.consts[name] for name in node.input if name}
    try:
        outputs = ReferenceEvaluator(node, opsets={"": walk.opset}).run(None, feeds)
    except Exception as exc:
        walk.problems.append(UnsupportedNode(node.name, node.op_type, f"cannot fold constant node ({exc})"))
        return
    for name, value in zip(node.output, outputs):
        walk.consts[name] = np.asarray(value)


def _full_shape(shape: Shape, walk: _Walk) -> Shape:
    return (1, *shape) if walk.batched else shape


def _shape_of_data(node: onnx.NodeProto, shape: Shape, walk: _Walk) -> None:
    full = np.array(_full_shape(shape, walk), dtype=np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    walk.consts[node.output[0]] = full[attrs.get("start", 0) : attrs.get("end", len(full))]


def _why_unsupported(node: onnx.NodeProto, data_inputs: list[str], walk: _Walk) -> str | None:
    reason = unfoldable(node.op_type)
    if reason is not None:
        return reason
    if node.domain not in ("", "ai.onnx"):
        return f"operator of domain '{node.domain}' is not supported (only the default ONNX domain)"
    if len(data_inputs) > 1:
        return _why_not_merge(node, data_inputs, walk)
    if node.op_type == "Concat":
        return "concatenates data with a constant (only a Concat of data tensors is supported)"
    if node.op_type in NON_RELU_ACTIVATIONS:
        return "non-ReLU activation; onnxlip bounds ReLU networks only"
    if node.op_type not in CONVERTERS:
        return "operator not supported"
    if unread_inputs(node):
        return f"has {len(node.input)} inputs; onnxlip reads the first {INPUTS[node.op_type]}"
    unread = unread_attributes(node)
    if unread:
        return f"attribute{'s' if len(unread) > 1 else ''} {', '.join(unread)} not supported"
    if walk.logits is not None:
        return f"uses the logits after a dropped {', '.join(walk.dropped)}"
    return None


def _why_not_merge(node: onnx.NodeProto, data_inputs: list[str], walk: _Walk) -> str | None:
    """Why a node that reads several data tensors is not a merge onnxlip handles (None if it is)."""
    if node.op_type not in MERGE_OPS:
        count = "two" if len(data_inputs) == 2 else len(data_inputs)
        return (f"combines {count} data tensors (only an Add of two, as in residual blocks, and a "
                "Concat of data tensors are supported)")
    if len(data_inputs) != len([i for i in node.input if i]):
        return "combines data tensors with a constant (not supported)"
    unread = [a.name for a in node.attribute if a.name not in MERGE_OPS[node.op_type]]
    if unread:
        return f"attribute{'s' if len(unread) > 1 else ''} {', '.join(unread)} not supported"
    if walk.logits is not None:
        return f"uses the logits after a dropped {', '.join(walk.dropped)}"
    return None


def _convert_node(step: Step, walk: _Walk) -> None:
    node, in_shape, out = step.node, walk.shapes[step.inputs[0]], step.output
    if in_shape is None:  # an earlier node failed: only op types are still checked
        walk.shapes[out] = None
        return
    in_type = walk.types.get(step.inputs[0], walk.input_type)
    ctx = NodeContext(node, walk.consts, in_shape, list(node.input).index(step.inputs[0]), walk.opset, walk.batched,
                      in_type)
    walk.types[out] = ctx.attr("to", in_type) if node.op_type == "Cast" else in_type
    try:
        step.ir = CONVERTERS[node.op_type](ctx)
    except ConversionError as exc:
        walk.problems.append(UnsupportedNode(node.name, node.op_type, str(exc)))
        walk.shapes[out] = None
        return
    shape = step.ir[-1].out_shape if step.ir else in_shape
    expected = walk.inferred.get(out)
    # ONNX shape inference keeps a ceil_mode window that starts in the padding; onnxruntime
    # and PyTorch drop it, and so do we, so the check does not apply there.
    full = _full_shape(shape, walk)
    if expected is not None and expected != full and not ctx.attr("ceil_mode", 0):
        walk.problems.append(UnsupportedNode(node.name, node.op_type, f"converted shape {full} != inferred {expected}"))
    walk.shapes[out] = shape


def _merge(step: Step, walk: _Walk) -> None:
    """The IR node of a merge: an Add of two tensors of one shape (no broadcasting), or a Concat
    along a sample axis."""
    shapes = [walk.shapes[name] for name in step.inputs]
    walk.shapes[step.output] = None
    if any(s is None for s in shapes):
        return
    label = (step.node.name or step.output,)
    try:
        node = _add(shapes, label, walk) if step.node.op_type == "Add" else _concat(step.node, shapes, label, walk)
    except ConversionError as exc:
        walk.problems.append(UnsupportedNode(step.node.name, step.node.op_type, str(exc)))
        return
    step.ir = [node]
    walk.shapes[step.output] = node.out_shape
    walk.types[step.output] = walk.types.get(step.inputs[0], walk.input_type)


def _add(shapes: list[Shape], label: tuple[str, ...], walk: _Walk) -> Add:
    if shapes[0] != shapes[1]:
        a, b = (_full_shape(s, walk) for s in shapes)
        raise ConversionError(f"adds branches of shapes {a} and {b}; both must have the same shape")
    return Add(shapes[0], shapes[0], label)


def _concat(node: onnx.NodeProto, shapes: list[Shape], label: tuple[str, ...], walk: _Walk) -> Concat:
    full = [_full_shape(s, walk) for s in shapes]
    axis = next((a.i for a in node.attribute if a.name == "axis"), None)
    rank = len(full[0])
    if axis is None or not -rank <= axis < rank:
        raise ConversionError(f"axis {axis} is missing or outside the inputs' {rank} axes")
    axis %= rank
    if walk.batched and axis == 0:
        raise ConversionError("concatenates along the batch axis")
    others = {tuple(s[:axis] + s[axis + 1:]) for s in full}
    if len(others) > 1 or any(len(s) != rank for s in full):
        raise ConversionError(f"concatenates tensors of shapes {', '.join(map(str, full))} along axis {axis}")
    sample_axis = axis - 1 if walk.batched else axis
    out = list(shapes[0])
    out[sample_axis] = sum(s[sample_axis] for s in shapes)
    return Concat(sample_axis, tuple(shapes), tuple(out), label)


def _visit(node: onnx.NodeProto, walk: _Walk) -> None:
    inputs = [i for i in node.input if i]
    if any(i in walk.dropped_tensors for i in inputs):
        if node.op_type not in POSTPROCESS_OPS:
            walk.problems.append(UnsupportedNode(node.name, node.op_type, "follows the output head "
                                                 f"{walk.dropped[0]}; only post-processing may follow it"))
        walk.dropped_tensors.update(node.output)
        walk.dropped.append(f"{node.op_type} '{node.name}'")
        return
    data_inputs = [i for i in inputs if i in walk.shapes]
    if not data_inputs:
        _fold_constant(node, walk)
        return
    if node.op_type == "Shape":
        shape = walk.shapes[data_inputs[0]]
        if shape is not None:
            _shape_of_data(node, shape, walk)
        return
    if node.op_type in HEAD_OPS and data_inputs == [walk.last] and walk.logits is None:
        walk.logits = walk.last
        walk.dropped_tensors.update(node.output)
        walk.dropped.append(f"{node.op_type} '{node.name}'")
        return
    step = Step(node, tuple(data_inputs), node.output[0])
    walk.add(step)
    reason = _why_unsupported(node, data_inputs, walk)
    if reason is not None:
        walk.problems.append(UnsupportedNode(node.name, node.op_type, reason))
        walk.shapes.update({o: None for o in node.output if o})
    elif step.is_merge:
        _merge(step, walk)
    else:
        _convert_node(step, walk)


def _check_finite(nodes: list[Node]) -> None:
    for node in nodes:
        for name in ("weight", "bias", "scale", "shift"):
            value = getattr(node, name, None)
            if value is not None and not np.all(np.isfinite(value)):
                raise ModelLoadError(f"node '{'+'.join(node.names)}': {name} contains NaN or Inf")


def _output_problem(output: str, walk: _Walk, last: str) -> UnsupportedNode | None:
    """Why the data path does not end at the declared output ``output`` (None when it does)."""
    if output in walk.dropped_tensors:
        expected = walk.logits
    elif output in walk.shapes:
        expected = output
    else:
        return UnsupportedNode("<graph>", "outputs", f"graph output '{output}' does not depend on the input")
    if last == expected:
        return None
    return UnsupportedNode("<graph>", "outputs", f"the data path ends at '{last}', not at the graph output "
                                                 f"'{expected}'")


def load_model(path: str | os.PathLike) -> Network:
    """Import an ONNX file as an IR Network (raises OnnxlipError subclasses)."""
    model = read_model(path)
    data = data_input(model)
    sample_shape, batched = fix_batch(data)
    output = analysed_output(model)
    kept = needed_nodes(model.graph, output)
    notes = other_outputs(model, kept)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    walk = _Walk(
        consts={t.name: numpy_helper.to_array(t) for t in model.graph.initializer},
        shapes={data.name: sample_shape},
        last=data.name,
        opset=opset,
        inferred=_inferred_shapes(model),
        batched=batched,
        input_type=data.type.tensor_type.elem_type,
    )
    for node in kept:
        _visit(node, walk)
    problem = None if walk.problems else _output_problem(output, walk, walk.last)
    if problem is not None:
        walk.problems.append(problem)
    if walk.problems:
        raise UnsupportedModelError(walk.problems)
    nodes, wiring, _ = assemble(walk.steps, data.name)
    nodes, wiring = fold(nodes, wiring)
    if not nodes:  # a network that imports to no operation is the identity, as one explicit node
        nodes, wiring = [Reshape(sample_shape, sample_shape, (output,))], [(0,)]
    _check_finite(nodes)
    if walk.dropped:
        notes += (f"dropped output head: {', '.join(walk.dropped)} (bounds are on the logits)",)
    return Network(tuple(nodes), sample_shape, data.name, walk.logits or walk.last, os.fspath(path), notes, batched,
                   tuple(wiring))
