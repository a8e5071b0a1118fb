"""A whole network in IR form: forward pass, nominal activations, and the
network with its activation pattern fixed as one linear operator (JVP/VJP).
The nodes form a DAG (``graph.dag``); most networks are chains, which every engine
handles, and the graph engines take the rest (residual and concatenated branches)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from .dag import Graph, Wiring, chain_wiring
from .nodes import Node, Shape, map_arrays


@dataclass(frozen=True, eq=False, repr=False)
class Network:
    """IR nodes in topological order from one data input to the logits; ``wiring[k]``: the
    tensors node k reads (tensor 0 the input, k + 1 node k's output); None for a chain."""

    nodes: tuple[Node, ...]
    input_shape: Shape  # per sample
    input_name: str = "input"
    output_name: str = "output"
    source: str = ""
    warnings: tuple[str, ...] = field(default=())
    batched: bool = True  # False: the ONNX input has no batch axis (its shape is input_shape)
    wiring: Wiring | None = None

    def __repr__(self) -> str:
        from .summary import network_summary  # summary describes each node with ``describe``
        return network_summary(self)

    @cached_property
    def graph(self) -> Graph:
        return Graph(self.nodes, self.wiring or chain_wiring(len(self.nodes)), self.input_shape)

    @property
    def is_chain(self) -> bool:
        return self.graph.is_chain

    @property
    def onnx_input_shape(self) -> Shape:
        """The ONNX input's shape, batch axis (1) included where it has one."""
        return (1, *self.input_shape) if self.batched else self.input_shape

    @property
    def output_shape(self) -> Shape:
        return self.nodes[-1].out_shape if self.nodes else self.input_shape

    def batch(self, x: Any) -> Any:
        """``x`` with a batch axis: accepts (*input_shape) or (N, *input_shape)."""
        return x[None] if x.shape == self.input_shape else x

    def forward(self, x: Any) -> Any:
        """Outputs for a batch of inputs (N, *input_shape)."""
        return self.graph.forward(x)

    def activations(self, x0: Any) -> list[Any]:
        """Every tensor at ``x0`` (batch 1): the input, then each node's output (on a chain,
        node k's input is entry k)."""
        return self.graph.tensors(self.batch(x0))

    def jvp(self, acts: list[Any], v: Any) -> Any:
        """J(x0)·v for a batch of directions v, activation pattern fixed at ``acts``."""
        return self.graph.jvp(acts, v)

    def vjp(self, acts: list[Any], u: Any) -> Any:
        """J(x0)ᵀ·u for a batch of output cotangents u."""
        return self.graph.vjp(acts, u)

    def classes(self) -> int:
        """The number of outputs, refused below 2: a single-output model (regressor, one-logit
        classifier) has no class to keep, so no radius or attack applies."""
        classes = int(np.prod(self.output_shape))
        if classes < 2:
            raise InputError(f"{self.source or 'the model'}: certified radii and attacks need a class label, from "
                             f"at least 2 outputs, and this model has {classes} (a regressor or one-logit classifier); "
                             "its Lipschitz bounds come from `local` (without --radius) and `global`")
        return classes

    def label_at(self, x0: Any, label: int | None = None) -> int:
        """The class to certify or attack at x0: ``label``, else the argmax of the outputs."""
        classes = self.classes()
        if label is None:
            return int(np.argmax(np.asarray(self.forward(self.batch(x0))).reshape(-1)))
        if not 0 <= int(label) < classes:
            raise InputError(f"label {label} is outside the model's {classes} outputs")
        return int(label)

    def map_arrays(self, fn: Callable[[Any], Any]) -> "Network":
        """A copy with ``fn`` applied to every parameter array (dtype/device moves)."""
        return replace(self, nodes=tuple(map_arrays(n, fn) for n in self.nodes))

    def astype(self, dtype: Any, xp: Any = np) -> "Network":
        return self.map_arrays(lambda a: xp.asarray(a, dtype=dtype))

    def affine_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.weighted]

