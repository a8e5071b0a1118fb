"""Certified L2 robustness radius at a nominal input.

The label c is certified on the ball of radius ε when no output change allowed by
the bound can overturn the margin m = y_c − max_{j≠c} y_j:
- paper-style: ε·L(ε) < m/√2 (a class change needs ‖Δy‖₂ ≥ m/√2);
- global: ε < m/(√2·L_global);
- margin folding: ε·L_{<last}(ε)·‖(w_c − w_j)ᵀD‖₂ < y0_c − y0_j for every j ≠ c,
  with L_{<last} the bound up to the input of the last affine layer (ȳ also capped
  by interval bounds);
- tight: ε·‖(e_c − e_j)ᵀ·M‖₂ < y0_c − y0_j for every j ≠ c, bounded over all secant
  matrices M of the ball (``tight``), or a positive linear-relaxation lower bound of every
  margin (``crown``) on the same ranges; with a time budget, branch and bound on ReLU splits
  (``branching``) where both fail.
L(ε) grows with ε, so the largest certified ε is found by bisection on log ε (``search``). With provable
norms (``certified``) each search runs on estimates and the radius it finds is then proven
(``search.proven``): only radii a provable test confirmed are reported.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..bounds.relax import branching
from ..bounds.relax import crown
from ..linalg.backend import single_blas_thread
from ..bounds.domain import InputBox, box_reach
from .deadline import Deadline
from .search import bisect, grow_until_fails, proven, search
from ..bounds.perlayer.engine import BoundResult, WarmStart, global_bound, local_bound
from ..errors import InputError
from ..bounds.methods import choose, unstable_units
from ..graph.nodes import Dense, chain_flops
from ..graph.network import Network
from ..graph.pool_tree import relaxation_graph
from ..bounds.relax.margins import (focused_bounds, margin_bounds, margin_gaps, margin_rows, optimised_bounds,
                                    tight_margins)
from ..bounds.relax.focus import REACH, Memory
from ..bounds.tight.chain import build_secants, supports

SQRT2 = math.sqrt(2.0)
# Branch and bound extends the tight radius by steps of this factor, then bisects to this
# relative tolerance: about 6 radii tested, half of which spend the whole budget.
BRANCH_STEP, BRANCH_REL_TOL = 1.25, 5e-3


@dataclass(frozen=True)
class RadiusResult:
    """Certified radii by each method; ``radius`` is the largest one proven."""

    label: int
    margin: float
    radius: float
    radius_paper: float
    radius_global: float
    radius_folded: float | None
    radius_tight: float | None
    global_bound: float
    method: str
    seconds: float
    evaluations: int
    certified: bool = False  # every figure provable (certified layer norms), not an estimate
    in_box: bool = False  # the ball is cut by a box of valid inputs: only inputs in it are covered
    branch_seconds: float = 0.0  # budget of branch and bound per radius tested (0: none)
    choice: dict[str, Any] | None = None  # ``best``'s choice of tests (``methods.choose``), when it chose

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def margin_of(logits: np.ndarray, label: int) -> float:
    """y_c − max_{j≠c} y_j (negative when x0 is not classified as c)."""
    others = np.delete(logits, label)
    return float(logits[label] - others.max())


def _folding_holds(net: Network, result: BoundResult, y0: np.ndarray, label: int) -> bool:
    """Margin-folding test at result.eps: needs the last layer to be a lone Dense layer."""
    last = net.nodes[-1]
    prefix = result.bound / result.layers[-1].lipschitz if result.layers[-1].lipschitz > 0 else 0.0
    diff = last.weight[label][None, :] - np.delete(last.weight, label, axis=0)
    d = result.final_mask
    spread = result.eps * prefix * np.sqrt((diff**2) @ d)
    return bool(np.all(spread < y0[label] - np.delete(y0, label)))


def _secant_holds(net: Network, state: Any, eps: float, y0: np.ndarray, label: int) -> bool:
    """ε·‖(e_c − e_j)ᵀ·M‖ < y0_c − y0_j for every j ≠ c over the secants M of ``state`` (the
    closest runner-up first: fail fast)."""
    others = np.delete(np.arange(y0.size), label)
    rows, gaps = margin_rows(y0, label, net.output_shape), y0[label] - y0[others]
    return all(eps * state.prefix_bound(len(net.nodes), rows[i : i + 1], ("margin", int(others[i])),
                                        target=gaps[i] / eps) < gaps[i]
               for i in np.argsort(gaps))


class TightMemory(Memory):
    """What the tight tests of one radius search learned: the optimised lines (``focus.Memory``)
    and the smallest radius at which the secant test failed; from there on, focused ranges are
    tried before the secant test, which fails again but for the noise of its estimates."""

    def __init__(self) -> None:
        super().__init__()
        self.secant_fails = math.inf


def _tight_passes(net: Network, state: Any, eps: float, acts: list, y0: np.ndarray, label: int,
                  box: InputBox | None, memory: TightMemory | None = None,
                  reach: float = REACH) -> tuple[bool, dict[int, tuple[Any, Any]]]:
    """The tight margin test on ``state``'s ranges: every margin has a positive lower bound by
    the linear relaxation (lower lines optimised for the margin rows), or by the secant test
    (``_secant_holds``), or by the relaxation on focused ranges (``margins.focused_bounds``, with
    ``memory`` and ``reach``); the relaxation is skipped where the back-substitution of the margin
    rows is not affordable (many classes through a big net). Also the tightest ranges met, for
    branch and bound."""
    if not crown.affordable(net.nodes, y0.size - 1):
        return _secant_holds(net, state, eps, y0, label), state.relaxed

    def secant() -> bool:
        holds = _secant_holds(net, state, eps, y0, label)
        if not holds and memory is not None:
            memory.secant_fails = min(memory.secant_fails, eps)
        return holds

    g, x0 = relaxation_graph(net.graph).graph, acts[0][0]
    rows = margin_rows(y0, label, net.output_shape)
    bounds, lines = optimised_bounds(g, state.relaxed, rows, x0, eps, box, memory)
    secant_first = memory is None or eps < memory.secant_fails
    if bounds.min() > 0 or (secant_first and secant()):
        return True, state.relaxed
    gaps = margin_gaps(rows, y0)
    bounds, ranges = focused_bounds(g, state.relaxed, rows, x0, eps, gaps, bounds, lines, box, memory, reach)
    return bool(bounds.min() > 0) or (not secant_first and secant()), ranges


def _tight_holds(net: Network, x0: np.ndarray, eps: float, acts: list, y0: np.ndarray, label: int,
                 paper: BoundResult | None = None, certified: bool = False, box: InputBox | None = None,
                 branch_seconds: float = 0.0, memory: TightMemory | None = None) -> bool:
    """Tight margin test, on the ranges of tight mode (built from ``paper``'s ball radii;
    ``certified``: provable segment norms; ``box``: only for the ball's inputs in it; focused
    ranges with ``memory``), or else branch and bound within ``branch_seconds`` (from the focused
    ranges where the test computed them)."""
    state = build_secants(net, x0, eps, paper, acts, certified=certified, box=box)
    branch = branch_seconds > 0 and crown.affordable(net.nodes, y0.size - 1)
    holds, ranges = _tight_passes(net, state, eps, acts, y0, label, box, memory, np.inf if branch else REACH)
    if holds or not branch:
        return holds
    rows = margin_rows(y0, label, net.output_shape)
    return branching.certify_margins(relaxation_graph(net.graph).graph, ranges, rows, acts[0][0], eps,
                                     branch_seconds, box=box).certified


def _dag_branching_holds(net: Network, x0: np.ndarray, eps: float, y0: np.ndarray, label: int,
                         box: InputBox | None, seconds: float, memory: Memory | None = None) -> bool:
    """The margin test of a DAG over the ball, or else branch and bound on its margins from the
    ranges it rests on (focused where it computed them); False when the margin rows'
    back-substitution is not affordable."""
    if not crown.affordable(net.nodes, y0.size - 1):
        return False
    g = relaxation_graph(net.graph).graph
    x0 = np.asarray(x0, dtype=np.float64).reshape(net.input_shape)
    bounds, ranges = tight_margins(g, x0, eps, y0, label, box, memory, reach=np.inf)
    if bounds.min() > 0:
        return True
    rows = margin_rows(y0, label, net.output_shape)
    return branching.certify_margins(g, ranges, rows, x0, eps, seconds, box=box).certified


@single_blas_thread
def certified_radius(net: Network, x0: np.ndarray, label: int | None = None, rel_tol: float = 1e-3,
                     method: str = "best", certified: bool = False, box: InputBox | None = None,
                     branch_seconds: float = 0.0, time_limit: float | None = None) -> RadiusResult:
    """Largest certified L2 radius around x0: paper test, global bound, margin folding and,
    unless ``method`` is 'paper', the tight margin test. With ``certified`` every norm is
    provable (layers and tight-mode segments), so every radius is a proof, not an estimate.
    With ``box`` (valid inputs, see ``domain``) the label is certified for the ball's inputs
    inside the box only: the tight and margin-folding tests use it (folding through its interval
    caps), the paper-style and global radii hold on the whole ball; no radius is reported past
    the box's farthest corner (``domain.box_reach``), where the ball holds the whole box.
    ``branch_seconds``: budget of branch and bound per radius the tight test fails otherwise
    (each failing radius of the bisection spends all of it). ``time_limit``: seconds for the whole
    search, checked before each margin test; past it, ``deadline.SearchTimeout`` carries the
    largest radius proven so far."""
    start = time.perf_counter()
    clock = Deadline(time_limit, start)
    net.classes()
    acts = net.activations(x0)
    y0 = np.asarray(acts[-1][0]).reshape(-1)
    label = int(np.argmax(y0)) if label is None else net.label_at(x0, label)  # the outputs are at hand
    if not (math.isfinite(branch_seconds) and branch_seconds >= 0):
        raise InputError(f"the branch-and-bound budget must be a finite number of seconds ≥ 0, got {branch_seconds}")
    margin = margin_of(y0, label)
    # only a floor for the other tests: provable norms without large factorizations suffice
    g = global_bound(net, certified=certified, quick=True).bound
    warm, calls = WarmStart(), [0]

    @functools.lru_cache(maxsize=None)  # the searches revisit their end points
    def bound_at(eps: float, interval: bool = False, proof: bool = False) -> BoundResult:
        calls[0] += 1
        return local_bound(net, x0, eps, acts, warm, proof, interval, box)

    # With ``certified``, each search runs on estimated norms (fast), and only the radius it
    # finds is then proven by the same test on provable norms (``search.proven``).
    def searched(test: Callable[[float, bool], bool], find: Callable[[Callable[[float], bool]], float],
                 floor: float) -> float:
        cached = functools.lru_cache(maxsize=None)(test)  # the searches revisit their end points
        guess = find((clock.guide if certified else clock.guard)(lambda e: cached(e, False)))
        return proven(clock.guard(lambda e: cached(e, True)), guess, floor, rel_tol) if certified else guess

    if margin <= 0 or g == 0:  # misclassified, or a constant network: no input changes the output
        r = 0.0 if margin <= 0 else math.inf
        return RadiusResult(label, margin, r, r, r, None, None, g, "misclassified" if margin <= 0 else "constant",
                            time.perf_counter() - start, 0, certified, box is not None, branch_seconds)
    r_global = margin / (SQRT2 * g) * (1 - 1e-9)
    clock.margin = margin
    clock.proved(r_global)
    reach = np.inf if box is None else box_reach(x0, box)  # past it, a ball ∩ box is the whole box
    at_global = bound_at(r_global).bound
    paper = searched(lambda e, proof: e * bound_at(e, proof=proof).bound < margin / SQRT2,
                     lambda holds: bisect(holds, *(grow_until_fails(holds, r_global) if at_global == 0 else
                                                   (r_global, margin / SQRT2 / at_global * (1 + 1e-9))), rel_tol),
                     r_global)
    folded = None
    if isinstance(net.nodes[-1], Dense):
        folded = searched(lambda e, proof: _folding_holds(net, bound_at(e, True, proof), y0, label),
                          lambda holds: bisect(holds, *grow_until_fails(holds, paper, reach=reach), rel_tol), paper)
    best_so_far = max(paper, folded or 0.0)
    choice = None
    if method == "best":  # each tight test costs about one secant bound: skipped where ``best`` would skip it
        at = max(best_so_far, r_global)
        choice = choose(at, chain_flops(net.nodes), unstable_units(bound_at(at, interval=True)))
        method = "paper" if choice.method == "paper" else method
    tight, tight_name = None, "tight"
    memory = TightMemory()  # a test starts from what the last ones learned
    if method != "paper" and not supports(net):  # a DAG (residual blocks): the relaxation margin test
        graph = net.graph
        holds = functools.lru_cache(maxsize=None)(clock.guard(
            lambda e: bool(margin_bounds(graph, x0, e, y0, label, box, memory=memory).min() > 0)))
        tight, tight_name = search(holds, best_so_far, r_global, reach, rel_tol), "crown"
        split = functools.lru_cache(maxsize=None)(clock.guard(lambda e: _dag_branching_holds(
            net, x0, e, y0, label, box, clock.budget(branch_seconds), memory)))
    elif method != "paper":
        def test(e: float, proof: bool, budget: float = 0.0) -> bool:
            return _tight_holds(net, x0, e, acts, y0, label, bound_at(e, True, proof), proof, box, clock.budget(budget),
                                memory)

        tight = searched(test, lambda holds: search(holds, best_so_far, r_global, reach, rel_tol), best_so_far)
        split = functools.lru_cache(maxsize=None)(clock.guard(lambda e: test(e, certified, branch_seconds)))
    start_from = max(tight or 0.0, best_so_far)  # what the other tests prove needs no splitting
    if method != "paper" and branch_seconds > 0 and start_from < reach:
        # every radius it fails costs the budget: a coarser search
        branched = bisect(split, *grow_until_fails(split, start_from, BRANCH_STEP, reach),
                          max(rel_tol, BRANCH_REL_TOL))
        if branched > tight:
            tight, tight_name = branched, f"{tight_name}+branching"
    radius, chosen = max((paper, "paper"), (folded or 0.0, "margin-folding"), (tight or 0.0, tight_name),
                         (r_global, "global"))
    return RadiusResult(label, margin, radius, paper, r_global, folded, tight, g, chosen,
                        time.perf_counter() - start, calls[0], certified, box is not None, branch_seconds,
                        None if choice is None else choice.as_dict())
