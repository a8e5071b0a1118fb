"""Per-unit value ranges over the ball, needed to fix which units are stable.

Two valid enclosures of an affine layer's output y = Ax + b when its input lies
in a ball of radius ρ around the nominal input (only masked inputs moving) and
in a box [lo, hi]; their intersection is valid and tighter than either:
- ball: y0 ± ρ·‖a_iᵀD‖₂ (the paper's, with ρ from the best prefix bound);
- interval (IBP): A·c + b ± |A|·r with c, r the box centre and half-width.
"""
from __future__ import annotations

from typing import Any

from ..linalg.backend import array_module
from ..graph.nodes import Affine, Node, with_weights
from .perlayer.row_norms import masked_row_norms


def affine_range(node: Affine, y0: Any, lo: Any, hi: Any, rho: float) -> tuple[Any, Any]:
    """Enclosure of the affine output for inputs in box [lo, hi] ∩ ball(ρ) (batch-1 arrays)."""
    xp = array_module(y0)
    moving = (hi > lo).astype(y0.dtype)[0]
    spread = rho * masked_row_norms(node, moving)[None]
    centre, radius = (lo + hi) / 2, (hi - lo) / 2
    ibp_mid = node.forward(centre)
    ibp_rad = with_weights(node, xp.abs).linear(radius)
    return xp.maximum(y0 - spread, ibp_mid - ibp_rad), xp.minimum(y0 + spread, ibp_mid + ibp_rad)


def monotone_range(node: Node, lo: Any, hi: Any) -> tuple[Any, Any]:
    """Range through a monotone non-decreasing node (ReLU, MaxPool, reshapes, zero padding)."""
    return node.forward(lo), node.forward(hi)

