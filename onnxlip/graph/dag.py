"""The network as a DAG of IR nodes in topological order.

Tensor 0 is the network input and tensor k + 1 the output of node k; ``inputs[k]`` lists
the tensors node k reads. A merge of branches (``Add``, ``Concat``) is a node like any
other, so an engine that walks the DAG needs no notion of blocks: back-substitution
accumulates a tensor's coefficients over all of its consumers. A chain is the DAG where
node k reads tensor k.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .nodes import Node, Shape

Wiring = tuple[tuple[int, ...], ...]


def chain_wiring(count: int) -> Wiring:
    """Node k reads tensor k: the wiring of a chain of ``count`` nodes."""
    return tuple((k,) for k in range(count))


@dataclass(frozen=True, eq=False)
class Graph:
    """Nodes in topological order and, per node, the tensors it reads."""

    nodes: tuple[Node, ...]
    inputs: Wiring
    input_shape: Shape

    @property
    def output(self) -> int:
        """The tensor the network returns: the last node's."""
        return len(self.nodes)

    @property
    def is_chain(self) -> bool:
        return self.inputs == chain_wiring(len(self.nodes))

    def prefix(self, tensor: int) -> "Graph":
        """The part of the graph that computes ``tensor``, which becomes its output."""
        return Graph(self.nodes[:tensor], self.inputs[:tensor], self.input_shape)

    def shape(self, tensor: int) -> Shape:
        return self.input_shape if tensor == 0 else self.nodes[tensor - 1].out_shape

    @cached_property
    def _readers(self) -> dict[int, list[int]]:
        readers: dict[int, list[int]] = {}
        for k, ins in enumerate(self.inputs):
            for t in dict.fromkeys(ins):
                readers.setdefault(t, []).append(k)
        return readers

    def readers(self, tensor: int) -> list[int]:
        """The nodes that read ``tensor``, in order (none for the output)."""
        return self._readers.get(tensor, [])

    def tensors(self, x: Any) -> list[Any]:
        """Every tensor for a batch of inputs x: len(nodes) + 1 arrays."""
        values = [x]
        for node, ins in zip(self.nodes, self.inputs):
            values.append(node.forward(*(values[i] for i in ins)))
        return values

    def forward(self, x: Any) -> Any:
        """The output for a batch x, each tensor dropped once its last reader ran."""
        return self.push(x, lambda k, node, args: node.forward(*args))

    def jvp(self, tensors: list[Any], v: Any) -> Any:
        """J(x0)·v for a batch of directions v, the activation pattern fixed at ``tensors``."""
        def step(k: int, node: Node, args: list[Any]) -> Any:
            return node.linear(*args) if node.merge else node.jvp(tensors[self.inputs[k][0]], args[0])
        return self.push(v, step)

    def push(self, x: Any, step: Any) -> Any:
        """Run ``step(k, node, its inputs' values)`` over the nodes from x; the output's value."""
        values = {0: x}
        for k, (node, ins) in enumerate(zip(self.nodes, self.inputs)):
            values[k + 1] = step(k, node, [values[i] for i in ins])
            for t in set(ins):
                if self.readers(t)[-1] == k:
                    del values[t]
        return values[self.output]

    def vjp(self, tensors: list[Any], u: Any) -> Any:
        """J(x0)ᵀ·u for a batch of output cotangents u."""
        lams = {self.output: u}
        for k in range(len(self.nodes) - 1, -1, -1):
            if k + 1 not in lams:
                continue
            lam, node, ins = lams.pop(k + 1), self.nodes[k], self.inputs[k]
            parts = node.adjoint(lam) if node.merge else (node.vjp(tensors[ins[0]], lam),)
            for t, part in zip(ins, parts):
                lams[t] = part if t not in lams else lams[t] + part
        return lams.get(0, np.zeros((len(u), *self.input_shape)))
