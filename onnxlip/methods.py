"""Which local-bound method to run: one entry point for the CLI and library users.

- paper: the per-layer product of Avant & Morgansen (fast, loose);
- tight: the whole-network secant bound (``tight``);
- best: the minimum of the two, per ε (the default).
"""
from __future__ import annotations

from typing import Any

from .bounds import BoundResult, sweep
from .domain import InputBox
from .errors import InputError
from .network import Network
from .tight import tight_bound

METHODS = ("best", "tight", "paper")
DEFAULT_METHOD = "best"


def local_bounds(net: Network, x0: Any, eps_grid: list[float], method: str = DEFAULT_METHOD,
                 certified: bool = False, box: InputBox | None = None) -> list[BoundResult]:
    """Local bounds L(x0, ε) for each ε of ``eps_grid`` by ``method``; ``certified`` makes every
    norm provable (per-layer: certified layer norms; tight: ``certified_segments``); ``box``:
    valid inputs, which tight mode's ranges use (see ``domain``)."""
    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got '{method}'")
    if method == "paper":
        return sweep(net, x0, eps_grid, certified=certified)
    acts = net.activations(x0)
    return [tight_bound(net, x0, float(e), acts, best=method == "best", certified=certified, box=box)
            for e in eps_grid]
