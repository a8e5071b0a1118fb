"""Floating-point rounding constants shared by the certified computations (float64)."""
from __future__ import annotations

import numpy as np

UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2
UNDERFLOW = 2.0**-1074  # smallest subnormal: bounds each product's absolute underflow error


def gamma(k: float) -> float:
    """γ_k = k·u / (1 − k·u), the classic bound on the rounding of k-term sums."""
    ku = k * UNIT_ROUNDOFF
    return ku / (1 - ku)
