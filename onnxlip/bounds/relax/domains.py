"""Domains of branch and bound (β-CROWN's scheme) and their bounds, for margin rows over the
L2 ball (cut by a box of valid inputs when one is given: every minimum below is then over
ball ∩ box).

A *domain* is the ball cut by split constraints on unstable ReLU inputs: s_i·z_i(x) ≥ 0 with
s_i = +1 (active) or −1 (inactive), ``Domain.signs`` per ReLU node. The network is a graph
(``graph.dag``; a chain or a DAG). A domain's bound is ``backsub.lower_bounds`` on ranges
valid on it:
- the ball's ranges, valid on every domain, clamped by the splits (lo = 0 where active,
  hi = 0 where inactive: the split unit's relaxation becomes exact);
- later layers' ranges recomputed by CROWN on those clamped ranges (``ranges.tighten``) and
  intersected with the ball's, both being valid on the domain.
Every relaxation is then valid at every point of the domain, so back-substitution gives a
linear function ≤ row·f on the domain, minimised over the whole ball (a superset): sound.
β multipliers add the split constraints in Lagrangian form: for β ≥ 0 and x in the domain,
row·f(x) ≥ row·f(x) − Σ β_i s_i z_i(x), and the right side is back-substituted like the
row itself (``back_substitute``'s ``shifts``: −β·s added to Λ at the ReLU's input).
Lower lines α and multipliers β are optimised jointly by projected Adam with hand gradients
(``slopes``' envelope argument: ∂bound/∂shift_k is the relaxed forward value z_k(x*), so
∂/∂β_i = −s_i·z_i(x*)); any α in [0, 1] and β ≥ 0 is sound, and the final bound is recomputed
with ``lower_bounds`` (rounded down) for the best iterate. A batch of domains is bounded as
one batch of rows, each row with its own domain's relaxations (every relaxation array carries
the batch axis, so the relaxation engine and ``slopes`` run unchanged).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...graph.dag import Graph
from ..domain import InputBox
from . import crown, slopes
from .backsub import lower_bounds
from .ranges import tighten


STEPS = 20


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
            if prev.weighted:  # a new CROWN range on the clamped ranges before it
                lo, hi = tighten(g, ranges, tensor, x0, eps, lo, hi, box)
            elif tensor - 1 in ranges:  # a pool after a ReLU: the ReLU's clamped range passes through
                p_lo, p_hi = prev.interval(*ranges[tensor - 1])
                lo, hi = np.maximum(lo, p_lo), np.minimum(hi, p_hi)
        ranges[k] = clamp(lo, hi, signs.get(k))
    return ranges


def split_shifts(signs: dict[int, Any], betas: dict[int, Any]) -> dict[int, Any]:
    """−β·s per ReLU node: the Lagrangian term of the split constraints s·z ≥ 0 (zero on
    unsplit units and nodes)."""
    return {k: -np.maximum(betas[k], 0.0) * signs[k] for k in betas if k in signs}


def _step(g: Graph, relaxed: dict[int, Any], rows: Any, x0: Any, eps: float,
          lines: dict[int, Any], free: dict[int, Any], signs: dict[int, Any],
          betas: dict[int, Any], box: InputBox | None) -> tuple[Any, dict[int, Any], dict[int, Any], dict[int, Any]]:
    """Per row (one per domain): the bound before rounding at (α, β), its gradients in α and β,
    and Λ at each nonlinear node's output."""
    value, grad_lines, chosen, inputs = slopes.relaxed_pass(g, relaxed, rows, x0, eps, lines, free, box,
                                                            split_shifts(signs, betas))
    grad_betas = {k: np.where(signs[k] != 0, -signs[k] * inputs[k], 0.0) for k in betas}
    return value, grad_lines, grad_betas, {k: chosen[k][0] for k in chosen}


def stacked_ranges(domains: list[Domain]) -> dict[int, tuple[Any, Any]]:
    """The domains' ranges as one batch, a row per domain."""
    return {k: (np.concatenate([d.ranges[k][0] for d in domains]), np.concatenate([d.ranges[k][1] for d in domains]))
            for k in domains[0].ranges}


def stacked_parameters(domains: list[Domain], relaxed: dict[int, Any], use_beta: bool) -> tuple[dict, dict, dict]:
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
    ranges = stacked_ranges(domains)
    rows = row if len(row) == len(domains) else np.repeat(row, len(domains), axis=0)
    relaxed = crown.relaxations(g.nodes, ranges)
    free = slopes.free_lines(relaxed)
    signs, lines, betas = stacked_parameters(domains, relaxed, use_beta)
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
            lines[k] = relaxed[k].project(lines[k], free[k])
        for k in betas:
            betas[k] = np.maximum(betas[k], 0.0)
    bounds = lower_bounds(g, ranges, rows, x0, eps, best_lines, box, shifts=split_shifts(signs, best_betas))
    scores = intercept_scores(relaxed, best_outs, signs)
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


def intercept_scores(relaxed: dict[int, Any], outs: dict[int, Any],
                     signs: dict[int, Any]) -> dict[int, Any]:
    """Per node with units to split (ReLU): |Λ_i|·u·(−l)/(u − l) for unstable unsplit units
    (the triangle's height weighted by the row's coefficient), 0 elsewhere (``lines.scores``)."""
    scores = {}
    for k, lines in relaxed.items():
        score = lines.scores(outs[k], signs.get(k)) if k in outs else None
        if score is not None:
            scores[k] = score
    return scores
