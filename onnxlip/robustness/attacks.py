"""Adversarial attacks: upper bounds on the certified radius, the other side of every certificate.

FGSM, DeepFool, DDN and PGD (L2) search for the closest misclassified point; every point
they return is checked to be misclassified by ``net.forward``. Attacks are unconstrained in
input space unless a box of valid inputs is given.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..bounds.domain import InputBox
from ..graph.network import Network
from .vectors import batch_norms, into_shell, one_sample, per_row, sphere_points, unit_rows

CONFIDENCE = 1e-3  # adversarial: max_{j≠c} y_j − y_c ≥ this (room for float32 rounding)


@dataclass(frozen=True, eq=False)
class Attack:
    """An adversarial point for label ``label`` (None and distance inf when none found)."""

    distance: float  # ‖point − x0‖₂
    point: np.ndarray | None
    method: str
    label: int
    adv_label: int | None

    @property
    def found(self) -> bool:
        return self.point is not None



def _margins(y: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """max_{j≠c} y_j − y_c per sample, and the j reaching it."""
    other = y.reshape(len(y), -1).copy()
    yc = other[:, c].copy()
    other[:, c] = -np.inf
    j = other.argmax(axis=1)
    return other[np.arange(len(y)), j] - yc, j


def _margin_grad(net: Network, xs: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Margin loss at each x and its gradient ∇(y_j − y_c), j the runner-up at x."""
    acts = net.activations(xs)
    m, j = _margins(acts[-1], c)
    u = np.zeros((len(xs), int(np.prod(net.output_shape))))
    u[np.arange(len(xs)), j] = 1.0
    u[:, c] -= 1.0
    return m, net.vjp(acts, u.reshape(len(xs), *net.output_shape))


def _attack(net: Network, x0: np.ndarray, point: np.ndarray | None, method: str, c: int) -> Attack:
    """An Attack for ``point``, checked to be misclassified by ``net.forward``."""
    if point is None:
        return Attack(float("inf"), None, method, c, None)
    adv = int(np.argmax(net.forward(point[None]).reshape(-1)))
    if adv == c:
        raise RuntimeError(f"{method}: the point found is not misclassified by net.forward")
    return Attack(float(np.linalg.norm(point - x0)), point, method, c, adv)


def _ray_search(net: Network, x0: np.ndarray, d: np.ndarray, ts: np.ndarray, c: int,
                confidence: float, iters: int = 20) -> float | None:
    """Smallest t on the grid ``ts`` (then bisected) with x0 + t·d adversarial."""
    m, _ = _margins(net.forward(x0 + per_row(ts, d.ndim + 1) * d), c)
    hits = np.flatnonzero(m >= confidence)
    if not hits.size:
        return None
    lo, hi = (ts[hits[0] - 1] if hits[0] else 0.0), ts[hits[0]]
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if _margins(net.forward((x0 + mid * d)[None]), c)[0][0] >= confidence:
            hi = mid
        else:
            lo = mid
    return float(hi)


def _shrink(net: Network, x0: np.ndarray, found: Attack, confidence: float) -> Attack:
    """Move ``found`` along its ray from x0 to the first adversarial point."""
    if found.distance == 0:
        return found
    d = (found.point - x0) / found.distance
    t = _ray_search(net, x0, d, np.linspace(0, found.distance, 33)[1:], found.label, confidence)
    return _attack(net, x0, x0 + t * d, found.method, found.label) if t is not None else found


def fgsm(net: Network, x0: Any, label: int | None = None, confidence: float = CONFIDENCE) -> Attack:
    """L2 fast gradient method: smallest step along the margin gradient that flips the label."""
    x0 = one_sample(net, x0)
    c = net.label_at(x0, label)
    d = unit_rows(_margin_grad(net, x0[None], c)[1])[0]
    ts = max(float(np.linalg.norm(x0)), 1.0) * np.geomspace(1e-5, 10.0, 64)
    t = _ray_search(net, x0, d, ts, c, confidence)
    return _attack(net, x0, None if t is None else x0 + t * d, "fgsm", c)


def deepfool(net: Network, x0: Any, label: int | None = None, max_iter: int = 50,
             overshoot: float = 0.02, candidates: int = 10, confidence: float = CONFIDENCE) -> Attack:
    """DeepFool: step to the nearest linearized boundary among the top-scoring classes."""
    x0 = one_sample(net, x0)
    c = net.label_at(x0, label)
    total, x = np.zeros_like(x0), x0
    for _ in range(max_iter):
        acts = net.activations(x[None])
        y = acts[-1].reshape(-1)
        if _margins(y[None], c)[0][0] >= confidence:
            return _attack(net, x0, x, "deepfool", c)
        js = [j for j in np.argsort(-y) if j != c][:candidates]
        u = np.zeros((len(js), y.size))
        u[np.arange(len(js)), js] = 1.0
        u[:, c] -= 1.0
        w = net.vjp([np.repeat(a, len(js), axis=0) for a in acts], u.reshape(len(js), *net.output_shape))
        gap = y[c] - y[js] + confidence
        wn = np.maximum(batch_norms(w), 1e-30)
        k = int(np.argmin(gap / wn))
        total = total + (gap[k] / wn[k] ** 2) * w[k]
        x = x0 + (1 + overshoot) * total
    return _attack(net, x0, None, "deepfool", c)


def _into_box(box: InputBox | None, x0: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """δ with x0 + δ clipped into ``box``: it stays in the ball (x0 is in the box), so ball then
    box is a feasible projection, if not the nearest point."""
    if box is None:
        return delta
    return np.clip(x0 + delta, box.lo.reshape(x0.shape), box.hi.reshape(x0.shape)) - x0


def _shrink_in(net: Network, x0: np.ndarray, found: Attack, box: InputBox | None, confidence: float) -> Attack:
    """``_shrink`` kept inside ``box``: the ray's point can land an ulp past a face; clipped back,
    or ``found`` itself (inside already) if clipping undoes the flip."""
    shrunk = _boxed(net, x0, _shrink(net, x0, found, confidence), box, confidence)
    return shrunk if shrunk.found else found


def _boxed(net: Network, x0: np.ndarray, found: Attack, box: InputBox | None, confidence: float) -> Attack:
    """``found`` with its point clipped into ``box``, or no point when that undoes the attack."""
    if box is None or not found.found:
        return found
    point = x0 + _into_box(box, x0, found.point - x0)
    if _margins(net.forward(point[None]), found.label)[0][0] < confidence:
        return _attack(net, x0, None, found.method, found.label)
    return _attack(net, x0, point, found.method, found.label)


def pgd_l2(net: Network, x0: Any, eps: float, label: int | None = None, steps: int = 30, restarts: int = 4,
           seed: int = 0, init: np.ndarray | None = None, confidence: float = CONFIDENCE,
           box: InputBox | None = None) -> Attack:
    """L2 PGD on the margin max_{j≠c} y_j − y_c within radius ε (and ``box``); stops at the first success."""
    x0 = one_sample(net, x0, eps)
    c = net.label_at(x0, label)
    rng = np.random.default_rng(seed)
    starts = np.zeros((0, *x0.shape)) if init is None else np.asarray(init, float).reshape(-1, *x0.shape) - x0
    extra = max(restarts - len(starts), 0)
    rand = sphere_points(rng, extra, x0.shape) * per_row(eps * rng.uniform(0, 1, extra), x0.ndim + 1)
    delta = _into_box(box, x0, into_shell(np.concatenate([starts, rand]), 0.0, eps))
    for _ in range(steps + 1):
        m, grad = _margin_grad(net, x0 + delta, c)
        hits = np.flatnonzero(m >= confidence)
        if hits.size:
            return _attack(net, x0, x0 + delta[hits[np.argmin(batch_norms(delta[hits]))]], "pgd", c)
        delta = _into_box(box, x0, into_shell(delta + (2.5 * eps / steps) * unit_rows(grad), 0.0, eps))
    return _attack(net, x0, None, "pgd", c)


def ddn(net: Network, x0: Any, start: Attack, steps: int = 300, gamma: float = 0.05,
        confidence: float = CONFIDENCE, box: InputBox | None = None) -> Attack:
    """Decoupled direction and norm (Rony et al. 2019) from an adversarial ``start`` (inside ``box``)."""
    x0, c = one_sample(net, x0), start.label
    if not start.distance > 0 or not start.found:
        return start
    delta, best = (start.point - x0)[None], start.point
    eps = scale = best_n = start.distance
    for k in range(steps):
        m, grad = _margin_grad(net, x0 + delta, c)
        n = float(batch_norms(delta)[0])
        if m[0] >= confidence and n < best_n:
            best, best_n = x0 + delta[0], n
        eps = min(n, eps) * (1 - gamma) if m[0] >= confidence else eps * (1 + gamma)
        step = scale * (0.5 + 0.5 * np.cos(np.pi * k / steps)) + 0.01 * scale  # cosine decay
        delta = _into_box(box, x0, into_shell(delta + step * unit_rows(grad), eps, eps))
    return _attack(net, x0, best, "ddn", c)


def _closer(best: Attack, found: Attack, method: str) -> Attack:
    """``found`` renamed ``method`` when it is closer than ``best``, else ``best``."""
    return replace(found, method=method) if found.found and found.distance < best.distance else best


def _box_start(net: Network, x0: np.ndarray, c: int, scale: float, box: InputBox, steps: int, restarts: int,
               seed: int, confidence: float, growths: int = 6) -> list[Attack]:
    """An adversarial point inside ``box`` by PGD there at radii ``scale``·2^k (the starts
    outside the box lost their label flip when clipped into it); [] when none is found."""
    for k in range(growths):
        found = pgd_l2(net, x0, scale * 2.0**k, c, steps, restarts, seed, confidence=confidence, box=box)
        if found.found:
            return [found]
    return []


def min_adversarial_distance(net: Network, x0: Any, label: int | None = None, steps: int = 30, restarts: int = 4,
                             bisections: int = 8, ddn_steps: int = 300, seed: int = 0,
                             confidence: float = CONFIDENCE, box: InputBox | None = None) -> Attack:
    """Smallest adversarial L2 distance found: DeepFool/FGSM start, DDN, then bisection on ε with
    PGD; with ``box``, among points inside it (the starts clipped into it, else PGD in the box
    at growing radii from theirs)."""
    x0 = one_sample(net, x0)
    c = net.label_at(x0, label)
    free = [a for a in (deepfool(net, x0, c, confidence=confidence), fgsm(net, x0, c, confidence)) if a.found]
    starts = [a for a in (_boxed(net, x0, a, box, confidence) for a in free) if a.found]
    if not starts and free and box is not None:
        starts = _box_start(net, x0, c, min(a.distance for a in free), box, steps, restarts, seed, confidence)
    if not starts:
        return _attack(net, x0, None, "none", c)
    best = min((_shrink_in(net, x0, a, box, confidence) for a in starts), key=lambda a: a.distance)
    if ddn_steps:
        found = ddn(net, x0, best, ddn_steps, confidence=confidence, box=box)
        best = _closer(best, _shrink_in(net, x0, found, box, confidence), f"{best.method}+ddn")
    lo, method = 0.0, f"{best.method}+pgd"
    for _ in range(bisections if best.distance > 0 else 0):  # a failed PGD proves nothing: lo is only a search bracket
        mid = 0.5 * (lo + best.distance)
        init = x0 + (best.point - x0) * (mid / best.distance)
        found = pgd_l2(net, x0, mid, c, steps, restarts, seed, init[None], confidence, box)
        if found.found:
            best = _closer(best, _shrink_in(net, x0, found, box, confidence), method)
        else:
            lo = mid
    return best
