"""Which local-bound method to run: one entry point for the CLI and library users."""
from __future__ import annotations

from typing import Any

from .bounds import BoundResult, sweep
from .errors import InputError
from .network import Network

METHODS = ("paper",)


def local_bounds(net: Network, x0: Any, eps_grid: list[float], method: str = "paper") -> list[BoundResult]:
    """Local bounds L(x0, ε) for each ε of ``eps_grid`` by ``method``."""
    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got '{method}'")
    return sweep(net, x0, eps_grid)
