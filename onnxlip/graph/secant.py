"""Secant sets of the nonlinear nodes over a ball around x0 (tight mode).

For x in the ball, a nonlinear node maps its input z to g(z) with g(z) − g(z0) = S·(z − z0)
for a *secant* matrix S that depends on x but lies in a known set: S = S̄ + L·U·R with
‖U‖₂ ≤ 1 and diagonal factors L (output side) and R (input side). Units whose secant cannot
vary get L = R = 0 there. Each nonlinear kind gives its own set (``Relu.secant``,
``MaxPool.secant``); a linear node is its own secant (its ``jvp``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, eq=False)
class Secant:
    """Centre linearization of one nonlinear node and its deviation factors (None: stable).
    ``center`` is in the node's factor form (``factored_jvp``): ReLU slopes, max-pool tap
    weights."""

    node: Any
    center: Any
    left: Any = None  # output-side diagonal, batch-1 shaped
    right: Any = None  # input-side diagonal, batch-1 shaped
    unstable: int = 0

    def jvp(self, v: Any) -> Any:
        return self.node.factored_jvp(self.center, v)

    def vjp(self, u: Any) -> Any:
        return self.node.factored_vjp(self.center, u)

    def terms(self) -> int:
        """Most products summed into one value when the centre is applied either way."""
        return self.node.factor_terms()

    def norm_bound(self) -> float:
        """A provable bound on the centre's norm."""
        return self.node.factor_norm(self.center)

    def fixed_units(self) -> tuple[int, int]:
        """(inactive, active) units whose state cannot change (ReLU; 0 for the others)."""
        return self.node.fixed_units(self)
