"""A whole network in IR form: forward pass, nominal activations, and the
network with its activation pattern fixed as one linear operator (JVP/VJP)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from .ir import AFFINE_TYPES, MaxPool, Node, Relu, Shape, map_arrays


@dataclass(frozen=True, eq=False)
class Network:
    """A chain of IR nodes from one data input to the logits."""

    nodes: tuple[Node, ...]
    input_shape: Shape  # per sample
    input_name: str = "input"
    output_name: str = "output"
    source: str = ""
    warnings: tuple[str, ...] = field(default=())

    @property
    def output_shape(self) -> Shape:
        return self.nodes[-1].out_shape if self.nodes else self.input_shape

    def batch(self, x: Any) -> Any:
        """``x`` with a batch axis: accepts (*input_shape) or (N, *input_shape)."""
        return x[None] if x.shape == self.input_shape else x

    def forward(self, x: Any) -> Any:
        """Outputs for a batch of inputs (N, *input_shape)."""
        for node in self.nodes:
            x = node.forward(x)
        return x

    def activations(self, x0: Any) -> list[Any]:
        """Input of every node at ``x0`` (batch 1), then the output: len(nodes)+1 arrays."""
        acts = [self.batch(x0)]
        for node in self.nodes:
            acts.append(node.forward(acts[-1]))
        return acts

    def jvp(self, acts: list[Any], v: Any) -> Any:
        """J(x0)·v for a batch of directions v, activation pattern fixed at ``acts``."""
        for node, a in zip(self.nodes, acts):
            v = node.jvp(a, v) if isinstance(node, (Relu, MaxPool)) else node.linear(v)
        return v

    def vjp(self, acts: list[Any], u: Any) -> Any:
        """J(x0)ᵀ·u for a batch of output cotangents u."""
        for node, a in zip(reversed(self.nodes), reversed(acts[:-1])):
            u = node.vjp(a, u) if isinstance(node, (Relu, MaxPool)) else node.adjoint(u)
        return u

    def map_arrays(self, fn: Callable[[Any], Any]) -> "Network":
        """A copy with ``fn`` applied to every parameter array (dtype/device moves)."""
        return replace(self, nodes=tuple(map_arrays(n, fn) for n in self.nodes))

    def astype(self, dtype: Any, xp: Any = np) -> "Network":
        return self.map_arrays(lambda a: xp.asarray(a, dtype=dtype))

    def affine_nodes(self) -> list[Node]:
        return [n for n in self.nodes if isinstance(n, AFFINE_TYPES)]
