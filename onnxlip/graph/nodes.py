"""Framework-neutral IR: the node kinds of a network's graph (one module per kind or family),
no ONNX import. What engines ask of a node is its contract (``base``): methods every kind
implements, so an engine never asks for the type.

Shapes are per sample (no batch axis); every method takes and returns arrays with a leading
batch axis. Linear nodes (``linear.Linear``: affine ones and those that move values) apply
their matrix matrix-free (``linear``, ``adjoint``) and share one implementation of the
contract; ReLU and max-pool write their own; merge nodes (``merge = True``: ``Add``,
``Concat``) read several tensors, with ``linear(*parts)`` and ``adjoint(u)`` giving one
cotangent per input.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Union

import numpy as np

from .affine import Affine, Conv, Dense, Scale
from .base import Shape
from .maxpool import MaxPool
from .merge import Add, Concat
from .relu import Relu
from .shape import Pad, Reshape, Transpose

# The node kinds, re-exported: engines import them from here.
__all__ = ["Add", "Affine", "Concat", "Conv", "Dense", "MaxPool", "Pad", "Relu", "Reshape", "Scale", "Shape",
           "Transpose"]

Node = Union[Dense, Conv, Scale, Reshape, Transpose, Pad, Relu, MaxPool, Add, Concat]
ARRAY_FIELDS = ("weight", "bias", "scale", "shift")


def chain_flops(nodes: tuple[Node, ...]) -> int:
    """Rough multiply-adds of one pass through nodes (a chain, or a graph's nodes)."""
    return sum(n.flops() for n in nodes)


def parameter_count(node: Node) -> int:
    """Number of stored parameters (weights and biases) of a node."""
    return sum(int(np.size(getattr(node, f))) for f in ARRAY_FIELDS if hasattr(node, f))


def map_arrays(node: Node, fn: Callable[[Any], Any]) -> Node:
    """A copy of ``node`` with ``fn`` applied to each parameter array."""
    changes = {f: fn(getattr(node, f)) for f in ARRAY_FIELDS if hasattr(node, f)}
    return dataclasses.replace(node, **changes) if changes else node
