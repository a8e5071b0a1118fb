"""Masked row norms ‖a_iᵀ D‖₂ of an affine layer in one pass.

‖a_iᵀ D‖₂² = Σ_j A_ij² d_j, i.e. the layer's linear map with every weight squared
applied to the mask d: one matvec for Dense, one convolution of d with W∘W (same
stride, padding, dilation, groups; no bias) for Conv. The paper instead pushed
basis vectors through a transposed convolution — one convolution per input.
"""
from __future__ import annotations

from typing import Any

from ...linalg.backend import array_module
from ...graph.nodes import Affine, with_weights


def masked_row_norms(node: Affine, d: Any) -> Any:
    """‖a_iᵀ D‖₂ for every output i of ``node`` (per-sample shape), 0/1 mask d.

    For a fractional d this is sqrt(Σ_j A_ij² d_j), i.e. ‖a_iᵀ D^{1/2}‖₂.
    """
    xp = array_module(d)
    squared = with_weights(node, xp.square).linear(d[None])[0]
    return xp.sqrt(xp.maximum(squared, 0))
