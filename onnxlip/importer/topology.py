"""The data path of an ONNX graph as a DAG of IR nodes.

The loader records every node on the data path as a ``Step``: its data inputs (several
for a merge: an Add of two data tensors, a Concat) and the IR nodes it converts to. The
steps come in graph (topological) order, so numbering each step's IR nodes as they come
gives the DAG: tensor 0 the input, tensor k + 1 node k's output.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from ..graph.nodes import Node

MERGE_OPS = {"Add": (), "Concat": ("axis",)}  # ops that merge data tensors, and the attributes read


@dataclass
class Step:
    """One ONNX node on the data path: its data inputs and its IR nodes."""

    node: onnx.NodeProto
    inputs: tuple[str, ...]
    output: str
    ir: list[Node] = field(default_factory=list)

    @property
    def is_merge(self) -> bool:
        return len(self.inputs) > 1


def assemble(steps: list[Step], source: str) -> tuple[list[Node], list[tuple[int, ...]], dict[str, int]]:
    """The DAG of the steps' IR nodes read from tensor ``source``: (nodes, the tensors each node
    reads, the tensor index of every data tensor name); a step with no IR node (Identity,
    Dropout…) passes its input's index on."""
    index = {source: 0}
    nodes: list[Node] = []
    wiring: list[tuple[int, ...]] = []
    for step in steps:
        reads = tuple(index[name] for name in step.inputs)
        for node in step.ir:
            nodes.append(node)
            wiring.append(reads)
            reads = (len(nodes),)
        index[step.output] = reads[0]
    return nodes, wiring, index
