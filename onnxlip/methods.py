"""Which local-bound method to run: one entry point for the CLI and library users.

- paper: the per-layer product of Avant & Morgansen (fast, loose);
- tight: the whole-network secant bound (``tight``);
- best: the minimum of the two, per ε (the default).

The paper method also runs on a GPU (``xp`` = CuPy: the network's weights and x0 are copied to
the device, Lanczos runs there); tight mode and certified norms compute on the CPU.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .bounds import BoundResult, global_bound, sweep
from .domain import InputBox
from .errors import InputError
from .ir import chain_flops
from .network import Network
from .tight import tight_bound

METHODS = ("best", "tight", "paper")
DEFAULT_METHOD = "best"


def on_device(net: Network, x0: Any, xp: ModuleType) -> tuple[Network, Any]:
    """The network's parameters and x0 as arrays of ``xp`` (CuPy: on the GPU; NumPy: unchanged)."""
    if xp is np:
        return net, x0
    return net.map_arrays(xp.asarray), None if x0 is None else xp.asarray(x0)


# Networks below this many multiply-adds per forward pass run faster on the CPU than on a GPU, where
# kernel launches dominate their small products (H200: cifar10_net, 1.5e7, 0.34 s against 0.15 s
# on the CPU; AlexNet, 7e8, 2.1 s against 3.9 s).
GPU_MIN_FLOPS = 1e8


def worth_gpu(net: Network) -> bool:
    """Whether the per-layer method gains from a GPU on ``net`` (``GPU_MIN_FLOPS``)."""
    return chain_flops(net.nodes) >= GPU_MIN_FLOPS


def runs_on_device(method: str, certified: bool) -> bool:
    """Whether ``method`` computes on the array module it is given (else on the CPU)."""
    return method == "paper" and not certified


def local_bounds(net: Network, x0: Any, eps_grid: list[float], method: str = DEFAULT_METHOD,
                 certified: bool = False, box: InputBox | None = None, xp: ModuleType = np) -> list[BoundResult]:
    """Local bounds L(x0, ε) for each ε of ``eps_grid`` by ``method``; ``certified`` makes every
    norm provable (per-layer: certified layer norms; tight: ``certified_segments``); ``box``:
    valid inputs, which tight mode's ranges use (see ``domain``); ``xp``: the array module to
    compute with where the method allows it (``runs_on_device``)."""
    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got '{method}'")
    if method == "paper":
        if runs_on_device(method, certified):
            net, x0 = on_device(net, x0, xp)
        return sweep(net, x0, eps_grid, certified=certified)
    acts = net.activations(x0)
    return [tight_bound(net, x0, float(e), acts, best=method == "best", certified=certified, box=box)
            for e in eps_grid]


def global_bound_on(net: Network, certified: bool = False, xp: ModuleType = np) -> BoundResult:
    """``bounds.global_bound`` computed with ``xp`` (certified norms: on the CPU)."""
    if certified or xp is np:
        return global_bound(net, certified=certified)
    return global_bound(on_device(net, None, xp)[0], xp)
