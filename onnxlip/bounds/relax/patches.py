"""What passing one-hot batches on per-row patches (``linalg.patches``) costs, against dense
passes. On cifar10_net's segments the dense passes cost 10–100 ms each (58–155 vectors
through one or two 3×3 convolutions on 14–30 pixel maps); the patches are a few pixels wide.
"""
from __future__ import annotations

import numpy as np

from ...graph.nodes import Node
from ...linalg.patches import MAX_COVER

# A multiply-add on patches (small GEMMs per kernel offset) costs about this many dense ones:
# measured on cifar10_net, where with it the linear-relaxation ranges tighten the tight bound
# 45.60 → 43.87 at ε = 0.001 in the same time (0.65–0.77 s); a budget twice as large tightens
# one more layer (34.41) but takes 1.2–1.6 s.
PATCH_COST = 3.0


def patch_cost(nodes: tuple[Node, ...]) -> float:
    """``pull_flops`` in dense multiply-adds (``PATCH_COST``), the cost of one one-hot vector
    passed through the chain either way."""
    return PATCH_COST * pull_flops(nodes)


def pull_flops(nodes: tuple[Node, ...]) -> float:
    """Multiply-adds of pulling one one-hot row from the chain's output back to its input: on
    a patch through each convolution while the patch stays small, then dense passes."""
    size, dense = np.array([1, 1]), False
    total = 0.0
    for node in reversed(nodes):
        out_area = float(np.prod(node.out_shape[1:])) if len(node.out_shape) == 3 else 0.0
        dense = dense or not node.on_patches or size.prod() > MAX_COVER * out_area
        if dense:
            total += node.flops()
        else:
            flops, size = node.patch_pull_cost(size, out_area)
            total += flops
    return total


