"""Batches of vectors in input space: norms per sample, unit directions, random points on the
sphere, scaling into a shell around x0 — what the lower bounds and the attacks share."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..graph.network import Network


def one_sample(net: Network, x0: Any, eps: float = 1.0) -> np.ndarray:
    """x0 as one float64 sample; checks that the radius is positive."""
    if not eps > 0:
        raise InputError(f"the radius must be positive, got {eps}")
    return np.asarray(x0, dtype=np.float64).reshape(net.input_shape)


def batch_norms(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(a.reshape(len(a), int(np.prod(a.shape[1:]))) ** 2, axis=1))


def per_row(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape(-1, *([1] * (ndim - 1)))


def unit_rows(a: np.ndarray) -> np.ndarray:
    n = batch_norms(a)
    return a / per_row(np.where(n > 0, n, 1.0), a.ndim)


def sphere_points(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return unit_rows(rng.standard_normal((n, *shape)))




def into_shell(delta: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Scale each row of ``delta`` into the shell lo ≤ ‖δ‖ ≤ hi."""
    n = batch_norms(delta)
    return delta * per_row(np.clip(n, lo, hi) / np.where(n > 0, n, 1.0), delta.ndim)
