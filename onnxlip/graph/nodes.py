"""Framework-neutral IR: the node kinds of a network's graph (one module per family), no ONNX
import, and what engines ask of any node.

Shapes are per sample (no batch axis); every method takes and returns arrays
with a leading batch axis. Affine nodes split into ``linear`` (the matrix A,
applied matrix-free) and a bias, and expose ``adjoint`` (Aᵀ); ``with_weights``
gives the same map with a function applied to every weight (|A| for interval
bounds, A∘A for masked row norms).
Activation nodes expose ``jvp``/``vjp`` at a fixed nominal input, so a whole
network with its activation pattern fixed is one linear operator.
Merge nodes (``merge = True``: ``Add``, ``Concat``) read several tensors; they are linear,
with ``linear(*parts)`` and ``adjoint(u)`` giving one cotangent per input.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Union

import numpy as np

from .activation import MaxPool, Relu
from .affine import Conv, Dense, Scale
from .base import Shape
from .merge import Add, Concat
from .shape import Pad, Reshape, Transpose

# The node kinds, re-exported: engines import them from here.
__all__ = ["Add", "Concat", "Conv", "Dense", "MaxPool", "Pad", "Relu", "Reshape", "Scale", "Shape", "Transpose"]


Affine = Union[Dense, Conv, Scale]
ShapeOp = Union[Reshape, Transpose, Pad]
Merge = Union[Add, Concat]
Node = Union[Dense, Conv, Scale, Reshape, Transpose, Pad, Relu, MaxPool, Add, Concat]
AFFINE_TYPES = (Dense, Conv, Scale)
SHAPE_TYPES = (Reshape, Transpose, Pad)
NONLINEAR_TYPES = (Relu, MaxPool)  # nodes with jvp/vjp at x0 instead of linear/adjoint
ARRAY_FIELDS = ("weight", "bias", "scale", "shift")


def node_jvp(node: Node, a: Any, v: Any) -> Any:
    """J·v of a one-input node at its nominal input ``a`` (its linear part if it is linear)."""
    return node.jvp(a, v) if isinstance(node, NONLINEAR_TYPES) else node.linear(v)


def node_vjp(node: Node, a: Any, u: Any) -> Any:
    """Jᵀ·u of a one-input node at its nominal input ``a``."""
    return node.vjp(a, u) if isinstance(node, NONLINEAR_TYPES) else node.adjoint(u)


def node_flops(node: Node) -> int:
    """Rough multiply-adds of one pass through a node."""
    weight = getattr(node, "weight", None)
    per_output = int(np.prod(weight.shape[1:])) if weight is not None else 1
    return int(np.prod(node.out_shape)) * per_output


def chain_flops(nodes: tuple[Node, ...]) -> int:
    """Rough multiply-adds of one pass through nodes (a chain, or a graph's nodes)."""
    return sum(node_flops(n) for n in nodes)


def node_cached(node: Node, key: Any, build: Callable[[], Any]) -> Any:
    """``build()`` computed once per node and ``key`` and kept on the node (frozen dataclasses:
    a cache, not a field) — for what every bound of a sweep would otherwise recompute."""
    cache = node.__dict__.setdefault("_cache", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def with_weights(node: Affine, fn: Callable[[Any], Any]) -> Affine:
    """The linear part of ``node`` with ``fn`` applied to each weight, and no bias; kept on
    the node per ``fn`` (row norms and interval bounds map the same weights in every bound)."""
    return node_cached(node, ("with_weights", fn), lambda: _mapped_weights(node, fn))


def node_offset(node: Node) -> Any:
    """The node's output at a zero input (its bias, batch-1 shaped; zero for shape nodes)."""
    return node_cached(node, "offset", lambda: node.forward(np.zeros((1, *node.in_shape))))


def fan_in(node: Node) -> int:
    """Most products summed into one value when a linear node is applied either way
    (its matvec or its adjoint); 0 for nodes that only select, mask or move values."""
    if isinstance(node, Dense):
        return max(node.weight.shape)
    if isinstance(node, Conv):
        m, cg, kh, kw = node.weight.shape
        return max(cg, m // node.groups) * kh * kw
    return 1 if isinstance(node, Scale) else 0


def _mapped_weights(node: Affine, fn: Callable[[Any], Any]) -> Affine:
    if isinstance(node, Scale):
        return dataclasses.replace(node, scale=fn(node.scale), shift=node.shift * 0)
    mapped = dataclasses.replace(node, weight=fn(node.weight), bias=node.bias * 0)
    if isinstance(node, Conv) and node.matrix is not None:  # reuse the sparsity pattern
        matrix = node.matrix.copy()
        matrix.data = fn(matrix.data)
        mapped.__dict__["matrix"] = matrix
    return mapped


def parameter_count(node: Node) -> int:
    """Number of stored parameters (weights and biases) of a node."""
    return sum(int(np.size(getattr(node, f))) for f in ARRAY_FIELDS if hasattr(node, f))


def map_arrays(node: Node, fn: Callable[[Any], Any]) -> Node:
    """A copy of ``node`` with ``fn`` applied to each parameter array."""
    changes = {f: fn(getattr(node, f)) for f in ARRAY_FIELDS if hasattr(node, f)}
    return dataclasses.replace(node, **changes) if changes else node


def _short(value: Any) -> str:
    """(2, 2) -> '2', (1, 2) -> '1x2': compact attribute text."""
    if isinstance(value, int):
        return str(value)
    return str(value[0]) if len(set(value)) == 1 else "x".join(map(str, value))


def describe(node: Node) -> str:
    """Short human description of a node's op and key attributes."""
    if isinstance(node, Conv):
        w = node.window
        extras = "".join(f" {tag}{_short(v)}" for tag, v, plain in (
            ("s", w.strides, (1, 1)), ("p", w.pads, (0, 0, 0, 0)), ("d", w.dilations, (1, 1)), ("g", node.groups, 1))
            if v != plain)
        return f"conv {node.weight.shape[0]}x{node.weight.shape[1]}x{w.kernel[0]}x{w.kernel[1]}{extras}"
    if isinstance(node, MaxPool):
        return f"maxpool {_short(node.window.kernel)} s{_short(node.window.strides)}"
    if isinstance(node, Dense):
        return f"dense {node.weight.shape[1]}->{node.weight.shape[0]}"
    if isinstance(node, Transpose):
        return f"transpose {node.perm}"
    if isinstance(node, Concat):
        return f"concat axis {node.axis}"
    return node.op
