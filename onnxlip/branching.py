"""Branch and bound on ReLU splits (β-CROWN's scheme) for one margin row over the L2 ball
(cut by a box of valid inputs when one is given: every minimum below is then over ball ∩ box).

A *domain* is the ball cut by split constraints on unstable ReLU inputs: s_i·z_i(x) ≥ 0 with
s_i = +1 (active) or −1 (inactive), ``Domain.signs`` per ReLU node. Splitting a unit replaces
a domain by its two children, whose union is the parent (z_i ≥ 0 or z_i ≤ 0), so the root
(the whole ball) is covered by the leaves at every stage: the row is certified positive when
every leaf's lower bound is.

The network is a graph (``graph.dag``; a chain or a DAG). A leaf's bound is
``graph.relax.lower_bounds`` on ranges valid on the leaf:
- the ball's ranges (``tight.build_secants``), valid on every domain, clamped by the splits
  (lo = 0 where active, hi = 0 where inactive: the split unit's relaxation becomes exact);
- later layers' ranges recomputed by CROWN on those clamped ranges (``graph.ranges.tighten``) and
  intersected with the ball's, both being valid on the domain.
Every relaxation is then valid at every point of the domain, so back-substitution gives a
linear function ≤ row·f on the domain, minimised over the whole ball (a superset): sound.
β multipliers add the split constraints in Lagrangian form: for β ≥ 0 and x in the domain,
row·f(x) ≥ row·f(x) − Σ β_i s_i z_i(x), and the right side is back-substituted like the
row itself (``back_substitute``'s ``shifts``: −β·s added to Λ at the ReLU's input).
Lower lines α and multipliers β are optimised jointly by projected Adam with hand gradients
(``slopes``' envelope argument: ∂bound/∂shift_k is the relaxed forward value z_k(x*), so
∂/∂β_i = −s_i·z_i(x*)); any α in [0, 1] and β ≥ 0 is sound, and the final bound is recomputed
with ``lower_bounds`` (rounded down) for the best iterate.

Branching (β-CROWN's filtered smart branching): candidates are the unsplit unstable units with
the largest intercept scores |Λ_i|·u_i·(−l_i)/(u_i − l_i) (the height of the relaxation triangle
weighted by the row's coefficient; BaBSR's idea) and each dense ReLU layer's best; each
candidate's children are estimated cheaply (clamped ranges, warm-start lines, no optimisation)
and the split whose worse child estimates highest is taken. The estimate only chooses: the
children's bounds are computed as below.
Search: best first (lowest bound), ``BATCH`` parents split per round and their children bounded
as one batch of rows, each row with its own domain's relaxations (every relaxation array
carries the batch axis, so the relaxation engine and ``slopes`` run unchanged).

Only ReLU units are split; max-pool windows keep their relaxation (their inputs' ranges tighten
under the splits). mnist_lenet at its nominal input, ball alone (``tools/bab_probe.py``):
α-CROWN alone certifies 0.2272; this search certifies 0.25 in ~7.5 s (159 domains) and 0.255 in
~37–41 s (751), not 0.26 within 60 s (one thread; by the intercept score alone: 0.25 in ~18 s,
771 domains, 0.255 not within 60 s).
"""
from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import crown, slopes
from .domain import InputBox
from .graph.dag import Graph
from .graph.ranges import tighten
from .graph.relax import back_substitute, lower_bounds
from .ir import AFFINE_TYPES, Relu
from .ranges import monotone_range

STEPS = 20
# Domains split per round; their children's bounds are computed as one batch of rows.
BATCH = 16
# Branching candidates per parent (``candidate_units``): the best by intercept score, plus each
# dense ReLU layer's best.
CANDIDATES = 3


@dataclass
class Domain:
    """A leaf of the search: split signs per ReLU node (+1 active, −1 inactive, 0 free), its
    ranges, its certified lower bound, and warm starts for its children's optimisation."""

    signs: dict[int, Any]
    ranges: dict[int, tuple[Any, Any]]
    bound: float = -np.inf
    lines: dict[int, Any] = field(default_factory=dict)
    betas: dict[int, Any] = field(default_factory=dict)
    scores: dict[int, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return int(sum(np.count_nonzero(s) for s in self.signs.values()))


@dataclass(frozen=True)
class SearchResult:
    """Outcome of ``branch_and_bound`` for one row."""

    certified: bool
    domains: int  # bounds computed (the root included)
    worst: float  # lowest open leaf's bound when the search stopped (inf when certified)
    seconds: float
    max_depth: int


def clamp(lo: Any, hi: Any, signs: Any) -> tuple[Any, Any]:
    """Range of a ReLU input under its split constraints."""
    if signs is None:
        return lo, hi
    return np.where(signs > 0, np.maximum(lo, 0.0), lo), np.where(signs < 0, np.minimum(hi, 0.0), hi)


def domain_ranges(g: Graph, base: dict[int, tuple[Any, Any]], signs: dict[int, Any],
                  x0: Any, eps: float, start: int = 0, box: InputBox | None = None) -> dict[int, tuple[Any, Any]]:
    """Ranges valid on the domain ``signs``: the ball's (``base``) clamped by the splits, and
    those of nonlinear nodes after ``start`` recomputed on the clamped earlier ones."""
    ranges: dict[int, tuple[Any, Any]] = {}
    for k in sorted(base):
        lo, hi = base[k]
        tensor = g.inputs[k][0]
        if k > start and tensor > 0:
            prev = g.nodes[tensor - 1]
            if isinstance(prev, AFFINE_TYPES):  # a new CROWN range on the clamped ranges before it
                lo, hi = tighten(g, ranges, tensor, x0, eps, lo, hi, box)
            elif tensor - 1 in ranges:  # a pool after a ReLU: the ReLU's clamped range passes through
                p_lo, p_hi = monotone_range(prev, *ranges[tensor - 1])
                lo, hi = np.maximum(lo, p_lo), np.minimum(hi, p_hi)
        ranges[k] = clamp(lo, hi, signs.get(k))
    return ranges


def _shifts(signs: dict[int, Any], betas: dict[int, Any]) -> dict[int, Any]:
    """−β·s per ReLU node: the Lagrangian term of the split constraints s·z ≥ 0 (zero on
    unsplit units and nodes)."""
    return {k: -np.maximum(betas[k], 0.0) * signs[k] for k in betas if k in signs}


def _step(g: Graph, relaxed: dict[int, Any], rows: Any, x0: Any, eps: float,
          lines: dict[int, Any], free: dict[int, Any], signs: dict[int, Any],
          betas: dict[int, Any], box: InputBox | None) -> tuple[Any, dict[int, Any], dict[int, Any], dict[int, Any]]:
    """Per row (one per domain): the bound before rounding at (α, β), its gradients in α and β,
    and Λ at each nonlinear node's output."""
    value, grad_lines, chosen, inputs = slopes.relaxed_pass(g, relaxed, rows, x0, eps, lines, free, box,
                                                            _shifts(signs, betas))
    grad_betas = {k: np.where(signs[k] != 0, -signs[k] * inputs[k], 0.0) for k in betas}
    return value, grad_lines, grad_betas, {k: chosen[k][0] for k in chosen}


def _stacked_ranges(domains: list[Domain]) -> dict[int, tuple[Any, Any]]:
    """The domains' ranges as one batch, a row per domain."""
    return {k: (np.concatenate([d.ranges[k][0] for d in domains]), np.concatenate([d.ranges[k][1] for d in domains]))
            for k in domains[0].ranges}


def _stack(domains: list[Domain], relaxed: dict[int, Any], use_beta: bool) -> tuple[dict, dict, dict]:
    """The domains' split signs, warm-start lines (else the defaults) and multipliers, one row each."""
    keys = sorted({k for d in domains for k, s in d.signs.items() if np.any(s)})
    shape = {k: domains[0].ranges[k][0].shape for k in keys}
    signs = {k: np.concatenate([d.signs.get(k, np.zeros(shape[k], np.int8)) for d in domains]) for k in keys}
    lines = {}
    for k, lines_k in relaxed.items():
        lines[k] = np.concatenate([d.lines[k] if k in d.lines else lines_k.default[i : i + 1]
                                   for i, d in enumerate(domains)])
    betas = {k: np.concatenate([d.betas.get(k, np.zeros(shape[k])) for d in domains]) for k in keys} if use_beta else {}
    return signs, lines, betas


def bound_domains(g: Graph, domains: list[Domain], row: Any, x0: Any, eps: float,
                  steps: int = STEPS, use_beta: bool = True, threshold: float = 0.0,
                  box: InputBox | None = None) -> list[Domain]:
    """Optimise α (and β) for a batch of domains (one back-substitution row each, with its own
    relaxations; ``row``: one for all, or one per domain), then set each one's sound bound
    (``lower_bounds`` with its best iterate's lines and multipliers) and branching
    scores. Stops early once every row's (unrounded) bound is above ``threshold``."""
    ranges = _stacked_ranges(domains)
    rows = row if len(row) == len(domains) else np.repeat(row, len(domains), axis=0)
    relaxed = crown.relaxations(g.nodes, ranges)
    free = slopes.free_lines(relaxed)
    signs, lines, betas = _stack(domains, relaxed, use_beta)
    lines = {k: lines[k] for k in free}
    best_value = np.full(len(domains), -np.inf)
    best_lines = {k: a.copy() for k, a in lines.items()}
    best_betas = {k: b.copy() for k, b in betas.items()}
    best_outs: dict[int, Any] = {}
    moments: dict[Any, Any] = {}
    for step in range(1, steps + 1):
        value, g_lines, g_betas, outs = _step(g, relaxed, rows, x0, eps, lines, free, signs, betas, box)
        better = value > best_value
        best_value = np.maximum(best_value, value)
        for store, now in ((best_lines, lines), (best_betas, betas), (best_outs, outs)):
            for k, a in now.items():
                if k not in store:
                    store[k] = a.copy()
                store[k][better] = a[better]
        if step == steps or np.all(best_value > threshold):
            break
        params = {("a", k): a for k, a in lines.items()} | {("b", k): b for k, b in betas.items()}
        grads = {("a", k): g for k, g in g_lines.items()} | {("b", k): g for k, g in g_betas.items()}
        slopes.adam_ascent(params, grads, moments, step)
        for k in lines:
            lines[k] = slopes._project(g, k, lines[k], free[k])
        for k in betas:
            betas[k] = np.maximum(betas[k], 0.0)
    bounds = lower_bounds(g, ranges, rows, x0, eps, best_lines, box, shifts=_shifts(signs, best_betas))
    scores = intercept_scores(g, relaxed, best_outs, signs)
    for i, d in enumerate(domains):
        d.bound = float(bounds[i]) if np.isfinite(bounds[i]) else -np.inf  # fail closed: NaN proves nothing
        d.lines = {k: a[i : i + 1] for k, a in best_lines.items()}
        d.betas = {k: b[i : i + 1] for k, b in best_betas.items()}
        d.scores = {k: s[i : i + 1] for k, s in scores.items()}
    return domains


def bound_domain(g: Graph, domain: Domain, row: Any, x0: Any, eps: float,
                 steps: int = STEPS, use_beta: bool = True, box: InputBox | None = None) -> Domain:
    """``bound_domains`` for one domain."""
    return bound_domains(g, [domain], row, x0, eps, steps, use_beta, np.inf, box)[0]


def intercept_scores(g: Graph, relaxed: dict[int, Any], outs: dict[int, Any],
                     signs: dict[int, Any]) -> dict[int, Any]:
    """Per ReLU node: |Λ_i|·u·(−l)/(u − l) for unstable unsplit units (the triangle's height
    weighted by the row's coefficient), 0 elsewhere."""
    scores = {}
    for k, lines in relaxed.items():
        if not isinstance(g.nodes[k], Relu) or k not in outs:
            continue
        free = lines.unstable & (signs[k] == 0 if k in signs else True)
        scores[k] = np.where(free, np.abs(outs[k]) * lines.offset, 0.0)  # offset = u·(−l)/(u − l)
    return scores


def splittable(domain: Domain) -> bool:
    """Whether an unstable unsplit unit is left (one with a positive score)."""
    return any(s.size and s.max() > 0 for s in domain.scores.values())


def candidate_units(domain: Domain, top: int = CANDIDATES) -> list[tuple[int, int]]:
    """The ``top`` units with the largest intercept scores, and each dense ReLU layer's best one.
    The score ranks units within a layer but over-rates the last layer (its Λ is the row itself),
    so layers compete through ``best_split``'s estimate. Convolutional layers enter only through
    the top scores: as extra candidates the estimate picked their units over and over (mnist_lenet
    at 0.255: 543–767 domains, the row still open after 60 s; without them: certified in 37 s)."""
    scored = [(float(v), k, int(i)) for k, s in domain.scores.items()
              for i in np.argsort(s.reshape(-1))[::-1][:top] if (v := s.reshape(-1)[i]) > 0]
    picked = {(k, i) for _, k, i in sorted(scored, reverse=True)[:top]}
    picked |= {(k, int(np.argmax(s))) for k, s in domain.scores.items() if s.ndim == 2 and s.size and s.max() > 0}
    return sorted(picked)


def estimate(g: Graph, domains: list[Domain], row: Any, x0: Any, eps: float,
             box: InputBox | None = None) -> Any:
    """Each domain's bound with its warm-start lines and multipliers, unrounded and not
    optimised: a score to choose a split by, never a certificate."""
    relaxed = crown.relaxations(g.nodes, _stacked_ranges(domains))
    signs, lines, betas = _stack(domains, relaxed, True)
    rows = np.repeat(row, len(domains), axis=0)
    lam, const, _, _ = back_substitute(g, relaxed, rows, lines, magnitudes=False,
                                             shifts=_shifts(signs, betas))
    value, _, _ = crown.concretize_rows(lam, x0.reshape(1, *g.input_shape), eps, box)
    return value + const


def best_split(g: Graph, parents: list[Domain], row: Any, x0: Any, eps: float,
               box: InputBox | None = None) -> list[list[Domain]]:
    """Per parent, its children on the candidate unit whose worse child has the highest estimated
    bound (β-CROWN's filtered smart branching). The candidates' children are estimated on the
    parent's ranges clamped by the split, without recomputing later ranges (which costs more than
    bounding a domain); the chosen split's children get them recomputed."""
    units = [candidate_units(d) for d in parents]
    trial = [child for d, per in zip(parents, units) for unit in per
             for child in split(g, d, unit, x0, eps, box, recompute=False)]
    worse = estimate(g, trial, row, x0, eps, box).reshape(-1, 2).min(axis=1)
    chosen, at = [], 0
    for d, per in zip(parents, units):
        chosen.append(split(g, d, per[int(np.argmax(worse[at : at + len(per)]))], x0, eps, box))
        at += len(per)
    return chosen


def split(g: Graph, domain: Domain, unit: tuple[int, int], x0: Any, eps: float,
          box: InputBox | None = None, recompute: bool = True) -> list[Domain]:
    """The two children of ``domain`` on ``unit`` (active, inactive), with their ranges: the
    parent's (valid on a child, a subset) clamped, and those after the unit recomputed unless
    not ``recompute`` (still valid, only looser)."""
    k, i = unit
    children = []
    for sign in (1, -1):
        signs = {j: s.copy() for j, s in domain.signs.items()}
        signs.setdefault(k, np.zeros(domain.ranges[k][0].shape, dtype=np.int8)).reshape(-1)[i] = sign
        ranges = domain_ranges(g, domain.ranges, signs, x0, eps, k if recompute else len(g.nodes), box)
        children.append(Domain(signs, ranges, lines=domain.lines, betas=domain.betas))
    return children


def branch_and_bound(g: Graph, base: dict[int, tuple[Any, Any]], row: Any, x0: Any, eps: float,
                     max_domains: int = 200, max_seconds: float = 60.0, steps: int = STEPS,
                     use_beta: bool = True, root: Domain | None = None,
                     record: list[Domain] | None = None, threshold: float = 0.0, batch: int = BATCH,
                     box: InputBox | None = None) -> SearchResult:
    """Best-first search (lowest bound first) until every leaf's bound is above ``threshold``
    (certified: row·f > threshold on the ball), a leaf cannot be split further with a bound
    below it, or a budget runs out. ``batch``: parents split per round, their children bounded
    together. ``record``: filled with every domain bounded (for checks)."""
    start = time.perf_counter()
    if root is None:
        root = bound_domain(g, Domain({}, dict(base)), row, x0, eps, steps, use_beta, box)
    if record is not None:
        record.append(root)
    count, tie = 1, itertools.count()
    heap = [] if root.bound > threshold else [(root.bound, next(tie), root)]  # (bounds are never NaN)
    max_depth = 0
    while heap:
        if count + 2 > max_domains or time.perf_counter() - start > max_seconds:
            break
        parents = [heapq.heappop(heap)[2] for _ in range(min(batch, len(heap), (max_domains - count) // 2))]
        if not all(splittable(domain) for domain in parents):  # fully split and still not above: cannot be proven
            for domain in parents:
                heapq.heappush(heap, (domain.bound, next(tie), domain))
            break
        children = [child for pair in best_split(g, parents, row, x0, eps, box) for child in pair]
        bound_domains(g, children, row, x0, eps, steps, use_beta, threshold, box)
        count += len(children)
        for child in children:
            max_depth = max(max_depth, child.depth)
            if record is not None:
                record.append(child)
            if child.bound <= threshold:
                heapq.heappush(heap, (child.bound, next(tie), child))
    worst = heap[0][0] if heap else np.inf
    return SearchResult(not heap, count, float(worst), time.perf_counter() - start, max_depth)


@dataclass(frozen=True)
class MarginResult:
    """Outcome of ``certify_margins`` at one radius."""

    certified: bool
    domains: int  # bounds computed over all rows
    seconds: float
    root_worst: float  # the lowest margin bound before any split
    open_worst: float  # lowest open leaf of the failing row (inf when certified)


def certify_margins(g: Graph, base: dict[int, tuple[Any, Any]], rows: Any, x0: Any, eps: float,
                    max_seconds: float = 60.0, max_domains: int = 100_000, use_beta: bool = True,
                    record: list[tuple[int, Domain]] | None = None, box: InputBox | None = None) -> MarginResult:
    """Whether every row·f (the margins e_c − e_j) is positive on the ball, by a search per row
    sharing one time budget; the rows whose root bound is lowest go first, and the first row
    that cannot be proven stops the test. ``record``: (row, domain) for every domain bounded."""
    start = time.perf_counter()
    roots = bound_domains(g, [Domain({}, dict(base)) for _ in rows], rows, x0, eps, use_beta=use_beta,
                          threshold=np.inf, box=box)  # one batch: as costly as one optimised margin test
    count, root_worst = len(roots), min(d.bound for d in roots)
    for r in np.argsort([d.bound for d in roots]):
        if record is not None:
            record.append((int(r), roots[r]))
        if roots[r].bound > 0:
            continue
        found: list[Domain] = []
        res = branch_and_bound(g, base, rows[r : r + 1], x0, eps, max_domains - count + 1,
                               max_seconds - (time.perf_counter() - start), use_beta=use_beta, root=roots[r],
                               record=found, box=box)
        if record is not None:
            record.extend((int(r), d) for d in found[1:])
        count += res.domains - 1
        if not res.certified:
            return MarginResult(False, count, time.perf_counter() - start, root_worst, res.worst)
    return MarginResult(True, count, time.perf_counter() - start, root_worst, np.inf)
