"""The network as a DAG of IR nodes in topological order.

Tensor 0 is the network input and tensor k + 1 the output of node k; ``inputs[k]`` lists
the tensors node k reads. A merge of branches (``Add``) is a node like any other, so an
engine that walks the DAG needs no notion of blocks: back-substitution accumulates a
tensor's coefficients over all of its consumers.

``from_network`` flattens the importer's chain of nodes and residual blocks into this form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir import Node, Residual, Shape
from ..network import Network


@dataclass(frozen=True, eq=False)
class Add:
    """The sum of two tensors of one shape: where a residual block's branches meet."""

    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "add"

    def forward(self, a: Any, b: Any) -> Any:
        return a + b


GraphNode = Any  # an IR node, or Add


@dataclass(frozen=True, eq=False)
class Graph:
    """Nodes in topological order and, per node, the tensors it reads."""

    nodes: tuple[GraphNode, ...]
    inputs: tuple[tuple[int, ...], ...]
    input_shape: Shape

    @property
    def output(self) -> int:
        """The tensor the network returns: the last node's."""
        return len(self.nodes)

    def shape(self, tensor: int) -> Shape:
        return self.input_shape if tensor == 0 else self.nodes[tensor - 1].out_shape

    def tensors(self, x: Any) -> list[Any]:
        """Every tensor for a batch of inputs x: len(nodes) + 1 arrays."""
        values = [x]
        for node, ins in zip(self.nodes, self.inputs):
            values.append(node.forward(*(values[i] for i in ins)))
        return values

    def forward(self, x: Any) -> Any:
        return self.tensors(x)[-1]


def _append(nodes: tuple[Node, ...], start: int, out: list[GraphNode], ins: list[tuple[int, ...]]) -> int:
    """Append a chain of nodes reading tensor ``start``; return the tensor it ends with."""
    tensor = start
    for node in nodes:
        if isinstance(node, Residual):
            main = _append(node.main, tensor, out, ins)
            skip = _append(node.skip, tensor, out, ins)
            out.append(Add(node.out_shape, node.out_shape, node.names))
            ins.append((main, skip))
        else:
            out.append(node)
            ins.append((tensor,))
        tensor = len(out)
    return tensor


def from_network(net: Network) -> Graph:
    """The DAG of a network whose residual blocks are flattened into their branches and an Add."""
    nodes: list[GraphNode] = []
    inputs: list[tuple[int, ...]] = []
    _append(net.nodes, 0, nodes, inputs)
    return Graph(tuple(nodes), tuple(inputs), net.input_shape)

