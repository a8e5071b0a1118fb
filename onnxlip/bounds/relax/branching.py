"""Branch and bound on ReLU splits (β-CROWN's scheme) for margin rows over the L2 ball: the
search over ``domains``.

Splitting a unit replaces a domain by its two children, whose union is the parent (z_i ≥ 0 or
z_i ≤ 0), so the root (the whole ball) is covered by the leaves at every stage: the row is
certified positive when every leaf's lower bound is.

Branching (β-CROWN's filtered smart branching): candidates are the unsplit unstable units with
the largest intercept scores |Λ_i|·u_i·(−l_i)/(u_i − l_i) (the height of the relaxation triangle
weighted by the row's coefficient; BaBSR's idea) and each dense ReLU layer's best; each
candidate's children are estimated cheaply (clamped ranges, warm-start lines, no optimisation)
and the split whose worse child estimates highest is taken. The estimate only chooses: the
children's bounds are computed by ``domains.bound_domains``.
Search: best first (lowest bound), ``BATCH`` parents split per round and their children bounded
as one batch.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...graph.dag import Graph
from ..domain import InputBox
from . import crown
from .backsub import back_substitute
from .domains import (STEPS, Domain, bound_domain, bound_domains, domain_ranges, split_shifts, stacked_parameters,
                      stacked_ranges)

# Domains split per round; their children's bounds are computed as one batch of rows.
BATCH = 16
# Branching candidates per parent (``candidate_units``): the best by intercept score, plus each
# dense ReLU layer's best.
CANDIDATES = 3


@dataclass(frozen=True)
class SearchResult:
    """Outcome of ``branch_and_bound`` for one row."""

    certified: bool
    domains: int  # bounds computed (the root included)
    worst: float  # lowest open leaf's bound when the search stopped (inf when certified)
    seconds: float
    max_depth: int


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
    relaxed = crown.relaxations(g.nodes, stacked_ranges(domains))
    signs, lines, betas = stacked_parameters(domains, relaxed, True)
    rows = np.repeat(row, len(domains), axis=0)
    lam, const, _, _ = back_substitute(g, relaxed, rows, lines, magnitudes=False,
                                             shifts=split_shifts(signs, betas))
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
