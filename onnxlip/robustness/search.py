"""Searches for the largest radius ε at which a test holds (tests are monotone in ε: a ball
proven for ε holds for every smaller one), and the proof of a radius found with estimates."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

# A radius found with estimated norms is proven at these fractions of it, in turn (estimates
# and proofs differ by about 1e-6 relative), before a bisection below it.
PROOF_STEPS = (1.0, 1 - 1e-4, 1 - 1e-3, 1 - 1e-2)


def largest_certified(holds: Callable[[float], bool], lo: float, hi: float, rel_tol: float) -> float:
    """Largest ε in [lo, hi] found by log-bisection with ``holds(ε)``; ``holds(lo)`` must be true."""
    while hi > lo * (1 + rel_tol):
        mid = math.sqrt(lo * hi)
        if holds(mid):
            lo = mid
        else:
            hi = mid
    return lo


def search(holds: Callable[[float], bool], start: float, floor: float, reach: float, rel_tol: float,
           factor: float = 4.0) -> float:
    """Largest ε that ``holds`` within ``rel_tol``: growing by ``factor`` from ``start`` (a radius
    other tests proved) when it holds there, else bisecting down towards ``floor``; then
    log-bisection. The tests' values fall ever faster towards the radius and step where a test
    switches method, so regula falsi on them took more tests than bisection (docs/tight_mode.md)."""
    if not holds(start):
        return bisect(holds, floor, start, rel_tol)
    return largest_certified(holds, *grow_until_fails(holds, start, factor, reach), rel_tol)


def bisect(holds: Callable[[float], bool], lo: float, hi: float, rel_tol: float) -> float:
    """``largest_certified`` that first checks ``lo`` itself (0 when even lo fails)."""
    if not holds(lo):
        return 0.0
    return lo if hi <= lo else largest_certified(holds, lo, hi, rel_tol)


def grow_until_fails(holds: Callable[[float], bool], eps: float, factor: float = 2.0,
                      reach: float = np.inf, limit: int = 60) -> tuple[float, float]:
    """(the last ε that holds, the first that fails), growing by ``factor`` from a certified ε;
    (reach, reach) when even ``reach`` holds (a ball past the box's farthest corner)."""
    for _ in range(limit):
        bigger = min(eps * factor, reach)
        if not holds(bigger):
            return eps, bigger
        if bigger >= reach:
            return reach, reach
        eps = bigger
    return eps, eps


def proven(holds: Callable[[float], bool], guess: float, floor: float, rel_tol: float) -> float:
    """The largest radius at or below ``guess`` (found with estimated norms) that the provable
    test ``holds`` confirms: ``guess`` or a hair below it (``PROOF_STEPS``), else log-bisection
    down to ``floor``; 0 when even ``floor`` fails. Only radii ``holds`` confirmed are returned."""
    if guess <= 0:
        return 0.0
    for step in PROOF_STEPS:
        if guess * step <= floor:
            break
        if holds(guess * step):
            return guess * step
    return bisect(holds, min(floor, guess), guess * PROOF_STEPS[-1], rel_tol)
