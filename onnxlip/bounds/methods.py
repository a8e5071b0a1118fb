"""Which local-bound method to run: one entry point for the CLI and library users.

- paper: the per-layer product of Avant & Morgansen (fast, loose);
- tight: the whole-network secant bound (``tight``);
- best: the minimum of the two, per ε (the default), where the secant bound is affordable
  (``choose``); else the per-layer bound alone, with the reason.

The paper method also runs on a GPU (``xp`` = CuPy: the network's weights and x0 are copied to
the device, Lanczos runs there); tight mode and certified norms compute on the CPU.

The engine is imported inside the functions that run it: the CLI reads ``METHODS`` and
``DEFAULT_METHOD`` for its help text without loading NumPy or SciPy.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

from ..errors import InputError

if TYPE_CHECKING:
    from .perlayer.engine import BoundResult
    from .domain import InputBox
    from ..graph.network import Network

METHODS = ("best", "tight", "paper")
DEFAULT_METHOD = "best"
# Provable norms by default (``certified``); converged Lanczos estimates only when asked for.
DEFAULT_CERTIFIED = True

# Networks below this many multiply-adds per forward pass run faster on the CPU than on a GPU, where
# kernel launches dominate their small products (see docs/benchmarks.md).
GPU_MIN_FLOPS = 1e8

# The secant bound's work grows with one pass through the network per unit that may switch in the
# ball (its segments and range refinements), plus the Lanczos products of the centre Jacobian.
TIGHT_BASE_PASSES = 100
# `best` skips the secant bound above this much work (multiply-adds): it would take minutes on a
# small CPU where the per-layer bound takes seconds. Every shipped model stays far below it.
TIGHT_MAX_WORK = 4e12
# Multiply-adds per second the secant bound reaches on a 2-core CPU: only for the time estimate
# shown to people, never for a decision.
TIGHT_WORK_PER_SECOND = 2e11


def check_method(method: str | None, option: str = "method") -> str:
    """``method`` if it is one of ``METHODS`` (None: the default), else an ``InputError``."""
    method = DEFAULT_METHOD if method is None else method
    if method not in METHODS:
        raise InputError(f"{option} must be one of {', '.join(METHODS)}, got '{method}'")
    return method


@dataclass(frozen=True)
class Choice:
    """What ``best`` ran at one ε, and why (one line for people, also in JSON)."""

    eps: float
    method: str  # "tight" (secant and per-layer, the smaller) or "paper" (per-layer only)
    reason: str
    work: float  # estimated multiply-adds of the secant bound

    def as_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "method": self.method, "reason": self.reason, "work": self.work}


def tight_work(flops: float, unstable: int) -> float:
    """Estimated multiply-adds of the secant bound on a network of ``flops`` per pass with
    ``unstable`` units that may switch in the ball."""
    return float(flops) * (TIGHT_BASE_PASSES + max(int(unstable), 0))


def estimated_seconds(work: float) -> float:
    """A rough wall time for ``work`` multiply-adds of the secant bound (see TIGHT_WORK_PER_SECOND)."""
    return work / TIGHT_WORK_PER_SECOND


def choose(eps: float, flops: float, unstable: int, max_work: float | None = None) -> Choice:
    """``best``'s choice at ε: the secant bound when its estimated work fits ``max_work``
    (default ``TIGHT_MAX_WORK``)."""
    max_work = TIGHT_MAX_WORK if max_work is None else max_work
    work = tight_work(flops, unstable)
    size = f"{flops:.3g} multiply-adds per pass, {unstable} unstable units"
    if work <= max_work:
        return Choice(eps, "tight", f"affordable: {size}", work)
    return Choice(eps, "paper", f"secant bound skipped, about {estimated_seconds(work):.0f} s of work: {size}; "
                                "--method tight runs it anyway", work)


@dataclass(frozen=True)
class LocalRun:
    """Local bounds at each ε, with ``best``'s choice at each (empty for other methods)."""

    results: list[BoundResult]
    choices: list[Choice]


def on_device(net: Network, x0: Any, xp: ModuleType) -> tuple[Network, Any]:
    """The network's parameters and x0 as arrays of ``xp`` (CuPy: on the GPU; NumPy: unchanged)."""
    import numpy as np

    if xp is np:
        return net, x0
    return net.map_arrays(xp.asarray), None if x0 is None else xp.asarray(x0)


def worth_gpu(net: Network) -> bool:
    """Whether the per-layer method gains from a GPU on ``net`` (``GPU_MIN_FLOPS``)."""
    from ..graph.nodes import chain_flops

    return chain_flops(net.nodes) >= GPU_MIN_FLOPS


def runs_on_device(method: str, certified: bool) -> bool:
    """Whether ``method`` computes on the array module it is given (else on the CPU)."""
    return method == "paper" and not certified


def unstable_units(result: BoundResult) -> int:
    """Units that may switch somewhere in the ball, summed over the layers of a per-layer bound."""
    return sum(layer.unstable for layer in result.layers)


def _best_at(net: Network, x0: Any, eps: float, acts: list[Any], flops: float, certified: bool,
             box: InputBox | None, on_phase: Callable[[str], None]) -> tuple[BoundResult, Choice]:
    """``best`` at one ε: the interval-capped per-layer bound, then the secant bound if affordable."""
    from .perlayer.engine import local_bound
    from .tight.chain import tight_bound

    on_phase(f"ε={eps:g}: per-layer bound")
    paper = local_bound(net, x0, eps, acts, certified=certified, interval=True, box=box)
    choice = choose(eps, flops, unstable_units(paper))
    if choice.method == "paper":
        return paper, choice
    on_phase(f"ε={eps:g}: secant bound (about {estimated_seconds(choice.work):.0f} s)")
    return tight_bound(net, x0, eps, acts, best=True, certified=certified, box=box, paper=paper), choice


def run_local(net: Network, x0: Any, eps_grid: list[float], method: str = DEFAULT_METHOD,
              certified: bool = DEFAULT_CERTIFIED,
              box: InputBox | None = None, xp: ModuleType | None = None,
              on_phase: Callable[[str], None] = lambda _: None) -> LocalRun:
    """Local bounds L(x0, ε) for each ε of ``eps_grid`` by ``method``, with ``best``'s choices;
    ``certified`` makes every norm provable (per-layer: certified layer norms; tight:
    ``certified_segments``); ``box``: valid inputs, which tight mode's ranges use (see
    ``domain``); ``xp``: the array module to compute with where the method allows it
    (``runs_on_device``); ``on_phase``: told what starts (for progress lines)."""
    method = check_method(method)
    if method == "paper":
        from .perlayer.engine import sweep

        if xp is not None and runs_on_device(method, certified):
            net, x0 = on_device(net, x0, xp)
        on_phase("per-layer bounds")
        return LocalRun(sweep(net, x0, eps_grid, certified=certified), [])
    from ..graph.nodes import chain_flops
    from .tight.chain import tight_bound

    acts = net.activations(x0)
    if method == "tight":
        on_phase("secant bounds")
        return LocalRun([tight_bound(net, x0, float(e), acts, best=False, certified=certified, box=box)
                         for e in eps_grid], [])
    flops = chain_flops(net.nodes)
    pairs = [_best_at(net, x0, float(e), acts, flops, certified, box, on_phase) for e in eps_grid]
    return LocalRun([p[0] for p in pairs], [p[1] for p in pairs])


def local_bounds(net: Network, x0: Any, eps_grid: list[float], method: str = DEFAULT_METHOD,
                 certified: bool = DEFAULT_CERTIFIED, box: InputBox | None = None, xp: ModuleType | None = None) -> list[BoundResult]:
    """The bounds of ``run_local`` alone."""
    return run_local(net, x0, eps_grid, method, certified, box, xp).results


def global_bound_on(net: Network, certified: bool = DEFAULT_CERTIFIED, xp: ModuleType | None = None) -> BoundResult:
    """``bounds.global_bound`` computed with ``xp`` (certified norms: on the CPU)."""
    import numpy as np

    from .perlayer.engine import global_bound

    if certified or xp is None or xp is np:
        return global_bound(net, certified=certified)
    return global_bound(on_device(net, None, xp)[0], xp)
