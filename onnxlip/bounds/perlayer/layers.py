"""Per-layer Lipschitz constants of the paper's method (Avant & Morgansen 2023).

Each function bounds one layer on a ball of radius ``eps`` around its nominal
input, given the mask ``d`` of inputs that may differ from nominal, and returns
the layer constant with the mask of outputs that may change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...linalg.backend import array_module
from ...graph.nodes import Affine
from ...graph.relu import secant_slopes
from .masked import masked_operator, masked_submatrix
from .certified import certified_norm
from ...linalg.spectral import NormResult, fits_exact, matrix_norm, operator_norm


@dataclass(frozen=True)
class LayerStep:
    """One layer's constant, the output mask, and unit counts for reporting."""

    lipschitz: float
    mask: Any
    method: str
    vector: Any = None
    inactive: int = 0
    active: int = 0
    unstable: int = 0
    estimate: float | None = None


# Lanczos products of at least this many flops run in float32 (spectral.operator_norm):
# the ImageNet-size layers; every layer of the reference nets stays in float64.
SINGLE_MIN_FLOPS = 5e7


def product_flops(node: Affine, rows: int, cols: int) -> float:
    """Flops of one product AᵀA·v of a layer masked to ``rows`` outputs and ``cols`` inputs."""
    return 4.0 * node.masked_flops(rows, cols)


def masked_norm(node: Affine, r: Any, d: Any, v0: Any = None, certified: bool = False,
                quick: bool = False) -> NormResult:
    """‖R A D‖₂: exactly when the sliced matrix is small, else by Lanczos; with
    ``certified``, a provable upper bound (with the estimate kept beside it; ``quick``: no
    factorization of large matrices, see ``certified_norm``)."""
    if certified:
        estimate = masked_norm(node, r, d, v0)
        bound = certified_norm(node, r, d, estimate.value, quick)
        return NormResult(max(bound.value, estimate.value), bound.method, estimate.vector, estimate.value)
    closed = node.closed_norm(r, d)
    if closed is not None:
        return NormResult(closed, "closed-form")
    xp = array_module(r, d)
    n_rows, n_cols = int(xp.count_nonzero(r)), int(xp.count_nonzero(d))
    if n_rows == 0 or n_cols == 0:
        return NormResult(0.0, "exact")
    if fits_exact(n_rows, n_cols):
        return matrix_norm(masked_submatrix(node, r, d))
    op, fast, cols = masked_operator(node, r, d, single=product_flops(node, n_rows, n_cols) >= SINGLE_MIN_FLOPS)
    if cols is None:
        return operator_norm(op, v0, fast=fast)
    norm = operator_norm(op, None if v0 is None else v0.reshape(-1)[cols], fast=fast)
    full = xp.zeros(d.size)
    full[cols] = norm.vector
    return NormResult(norm.value, norm.method, full)


def affine_relu_step(node: Affine, y0: Any, d: Any, eps: float, v0: Any = None, certified: bool = False,
                     box: tuple[Any, Any] | None = None) -> LayerStep:
    """Bound of ReLU(Ax + b) on the ball: L = ‖R A D‖₂, d_out = (ȳ > 0); ``box`` is another
    valid enclosure of y (e.g. from interval bounds) that tightens ȳ."""
    xp = array_module(y0)
    spread = eps * node.row_norms(d)
    y_upper, y_lower = y0 + spread, y0 - spread
    if box is not None:
        y_lower, y_upper = xp.maximum(y_lower, box[0]), xp.minimum(y_upper, box[1])
    r = secant_slopes(y0, y_upper)
    norm = masked_norm(node, r, d, v0, certified)
    inactive = int(xp.count_nonzero(y_upper <= 0))
    active = int(xp.count_nonzero(y_lower > 0))
    unstable = int(y0.size) - inactive - active
    mask = (y_upper > 0).astype(y0.dtype)
    return LayerStep(norm.value, mask, norm.method, norm.vector, inactive, active, unstable, norm.estimate)


def affine_step(node: Affine, d: Any, v0: Any = None, certified: bool = False) -> LayerStep:
    """Bound of a lone affine layer: L = ‖A D‖₂; every output may change."""
    xp = array_module(d)
    ones = xp.ones(node.out_shape, dtype=d.dtype)
    norm = masked_norm(node, ones, d, v0, certified)
    return LayerStep(norm.value, ones, norm.method, norm.vector, estimate=norm.estimate)


def full_mask(shape: tuple[int, ...], xp: Any = np, dtype: Any = np.float64) -> Any:
    return xp.ones(shape, dtype=dtype)
