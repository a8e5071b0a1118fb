"""The data path of an ONNX graph as a chain of steps and residual blocks.

The loader records every node on the data path as a ``Step`` (one data input, or
two for an Add that joins branches) and which steps read each data tensor. A
tensor read by two steps starts a residual block when both paths meet again at
one Add; blocks nest. Anything else (a third reader, paths that never meet, or
that meet at different Adds) is a ``TopologyError`` naming the node to blame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import onnx

from ..errors import UnsupportedNode
from ..ir import Node, Residual, Shape


@dataclass
class Step:
    """One ONNX node on the data path: its data inputs (two for a join) and its IR."""

    node: onnx.NodeProto
    inputs: tuple[str, ...]
    output: str
    ir: list[Node] = field(default_factory=list)

    @property
    def is_join(self) -> bool:
        return len(self.inputs) > 1


@dataclass
class Block:
    """A residual block of the plan: two chains from tensor ``fork`` to the Add ``join``."""

    fork: str
    main: list["Item"]
    skip: list["Item"]
    join: Step


Item = Union[Step, Block]
Users = dict[str, list[Step]]  # data tensor -> the steps that read it, in graph order


class TopologyError(Exception):
    """The data path is not a chain of residual blocks (carries the node to name)."""

    def __init__(self, node: onnx.NodeProto, reason: str):
        super().__init__(reason)
        self.problem = UnsupportedNode(node.name, node.op_type, reason)


def _chain(tensor: str, users: Users) -> tuple[list[Item], str, Step | None]:
    """Steps and blocks from ``tensor`` on: (plan, last tensor, the join that stopped it or None)."""
    plan: list[Item] = []
    while True:
        readers = users.get(tensor, [])
        if not readers:
            return plan, tensor, None
        if len(readers) > 1:
            block = _fork(tensor, readers, users)
            plan.append(block)
            tensor = block.join.output
        elif readers[0].is_join:
            return plan, tensor, readers[0]
        else:
            plan.append(readers[0])
            tensor = readers[0].output


def _fork(tensor: str, readers: list[Step], users: Users) -> Block:
    """The residual block whose two branches start at ``tensor`` and meet at one Add."""
    if len(readers) > 2:
        raise TopologyError(readers[2].node, f"the graph branches {len(readers)} ways at tensor '{tensor}' "
                                             "(only two branches that meet at an Add are supported)")
    ends = []
    for step in readers:
        if step.is_join:  # an identity branch
            ends.append(([], tensor, step))
        else:
            plan, last, join = _chain(step.output, users)
            ends.append(([step, *plan], last, join))
    (a, a_end, a_join), (b, b_end, b_join) = ends
    if a_join is None or a_join is not b_join or set(a_join.inputs) != {a_end, b_end}:
        raise TopologyError(readers[1].node, f"the graph branches at tensor '{tensor}' into paths that do not "
                                             "meet at one Add (only chains and residual blocks are supported)")
    # main: the longer branch (the Add's first input on a tie); skip: the other, often the identity
    a_second = a_join.inputs.index(a_end) == 1
    (main, _), (skip, _) = sorted([(a, a_second), (b, not a_second)], key=lambda t: (-len(t[0]), t[1]))
    return Block(tensor, main, skip, a_join)


def plan_path(start: str, users: Users) -> tuple[list[Item], str]:
    """The data path from the graph input: its plan and its last tensor (the output)."""
    plan, last, join = _chain(start, users)
    if join is not None:
        raise TopologyError(join.node, f"adds tensor '{last}' to a branch that does not start at a "
                                       "common tensor (only residual blocks are supported)")
    return plan, last


def assemble(plan: list[Item], shapes: dict[str, Shape | None]) -> list[Node]:
    """IR nodes of a plan: the steps' nodes, and one ``Residual`` per block."""
    nodes: list[Node] = []
    for item in plan:
        if isinstance(item, Step):
            nodes.extend(item.ir)
            continue
        join = item.join
        nodes.append(Residual(tuple(assemble(item.main, shapes)), tuple(assemble(item.skip, shapes)),
                              shapes[item.fork], shapes[join.output], (join.node.name or join.output,)))
    return nodes
