"""Short text for a network and its nodes, for ``repr`` in notebooks and tracebacks.

The dataclasses' generated ``repr`` prints every weight array (tens of KB on a small CNN);
these name the op, its shapes and its size instead.
"""
from __future__ import annotations

import os
from typing import Any

from .nodes import Node, parameter_count

# Nodes named in a network's one-line summary before "…".
SHOWN_NODES = 4


def _shape(shape: Any) -> str:
    return "×".join(map(str, shape)) or "scalar"


def node_summary(node: Node) -> str:
    """'<Conv conv 6x1x5x5: 1×28×28 → 6×24×24, 156 parameters>'."""
    size = parameter_count(node)
    params = f", {size} parameters" if size else ""
    return f"<{type(node).__name__} {node.describe()}: {_shape(node.in_shape)} → {_shape(node.out_shape)}{params}>"


def network_summary(net: Any) -> str:
    """'<Network mnist_lenet.onnx: 1×28×28 → 10, 12 nodes (conv 6x1x5x5, relu, …), 44426 parameters>'."""
    shown = ", ".join(n.describe() for n in net.nodes[:SHOWN_NODES])
    more = ", …" if len(net.nodes) > SHOWN_NODES else ""
    name = os.path.basename(net.source) or "network"
    params = sum(parameter_count(n) for n in net.nodes)
    return (f"<Network {name}: {_shape(net.input_shape)} → {_shape(net.output_shape)}, {len(net.nodes)} nodes "
            f"({shown}{more}), {params} parameters>")
