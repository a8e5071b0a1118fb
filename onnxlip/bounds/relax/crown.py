"""The linear relaxations of the nonlinear nodes over the L2 ball (CROWN-style), and the
pieces of back-substitution that do not depend on the graph (``backsub`` walks it). Each
node kind gives its own relaxation (``relax`` and ``back_step`` of the node contract):
- linear nodes are exact: c += Λ·b, Λ ← Λ·A (the node's adjoint);
- ReLU with input range [l, u]: stable units pass (slope 1) or vanish (0); an
  unstable one is replaced by a line below it (α·z, α = 1 when u > −l, else 0) where
  its coefficient is ≥ 0, and by the chord above it (u·(z − l)/(u − l)) where < 0;
- max-pool with input ranges: a window whose winner cannot change is exact; otherwise its
  max is ≥ any convex combination of the elements that can win (by default the one with
  the largest midpoint) and ≤ the chord of max(x_j, c) over x_j's range, x_j the element
  with the largest upper bound and c the largest upper bound of the others (``PoolLines``).
Any lower line in these families is valid; ``slopes`` optimises them per row.
At the input, min over the ball of Λ·x + c is Λ·x0 + c − ε‖Λ‖₂ per row (over the ball cut
by a box of valid inputs: ``domain.concretize``).

Every relaxation is valid for every input in the ranges, so back-substitution gives a sound
lower bound whenever the ranges are; tighter ranges make it tighter. Used for the
pre-activation ranges of tight mode (rows = ± the unstable units of a layer, when affordable)
and for the margin test of the certified radius (rows = e_label − e_j).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..domain import InputBox, concretize
from ...graph.base import row_sums
from ...graph.nodes import Node, chain_flops
from ...linalg.patches import Patches, unit_patches
from .patches import patch_cost

# Back-substitute a layer's rows only when rows × flops of the prefix stay below this.
CROWN_FLOPS = 1e9


def relaxations(nodes: tuple[Node, ...], ranges: dict[int, tuple[Any, Any]]) -> dict[int, Any]:
    """The lines of every nonlinear node of the chain, from its input range."""
    return {k: nodes[k].relax(lo, hi) for k, (lo, hi) in ranges.items() if k < len(nodes)}


def concretize_rows(lam: Any, x0: Any, eps: float, box: InputBox | None) -> tuple[Any, Any, Any]:
    """``domain.concretize`` for a dense or patch batch of input rows (x0 batch-1); the
    minimisers come back flat, on the patches' positions for patches."""
    if isinstance(lam, Patches):
        on_rows = lambda a: lam.gather(a.reshape(x0.shape)).reshape(len(lam), -1)  # noqa: E731
        flat = lam.data.reshape(len(lam), -1)
    else:
        on_rows = lambda a: a.reshape(-1)  # noqa: E731
        flat = lam.reshape(len(lam), -1)
    lo, hi = (None, None) if box is None else (on_rows(box.lo), on_rows(box.hi))
    return concretize(flat, on_rows(x0), eps, lo, hi)


def dot_and_norm(lam: Any, x: Any) -> tuple[Any, Any]:
    """Per row of a dense or patch batch: (row·x, ‖row‖₂), x batch-1."""
    if isinstance(lam, Patches):
        return row_sums(lam.data * lam.gather(x)), np.sqrt(row_sums(lam.data**2))
    flat = lam.reshape(len(lam), -1)
    return flat @ x.reshape(-1), np.linalg.norm(flat, axis=1)


def affordable(nodes: tuple[Node, ...], rows: int, one_hot: bool = False, budget: float = CROWN_FLOPS) -> bool:
    """Whether ``rows`` rows (each output needs two) are cheap enough to back-substitute within
    ``budget`` multiply-adds; ``one_hot``: rows of single units, which travel as patches where
    they can."""
    per_row = chain_flops(nodes)
    if one_hot:
        per_row = min(per_row, patch_cost(nodes))
    return 2 * rows * per_row <= budget


def plus_minus_rows(idx: Any, shape: tuple[int, ...]) -> Any:
    """Rows e_i for i in ``idx`` then −e_i: patches on a feature map, else dense."""
    if len(shape) == 3 and len(idx):
        plus = unit_patches(idx, shape)
        return Patches(np.concatenate([plus.data, -plus.data]), np.concatenate([plus.origin] * 2), plus.hw)
    eye = np.zeros((len(idx), int(np.prod(shape))))
    eye[np.arange(len(idx)), idx] = 1.0
    return np.concatenate([eye, -eye]).reshape(2 * len(idx), *shape)
