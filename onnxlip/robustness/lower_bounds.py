"""Empirical lower bounds on L(x0, ε): the other side of every local bound.

Lipschitz lower bounds (L2, one point fixed at x0, as in docs/method.md):
``random_lower_bound`` and ``ascent_lower_bound`` evaluate the ratio
‖f(x) − f(x0)‖/‖x − x0‖ at points x of the ball, so each is ≤ L(x0, ε).
``jacobian_lower_bound`` is the paper's "gradient" lower bound, max ‖J(x)‖₂ over
sampled x in the ball: it bounds the Lipschitz constant over all pairs in the ball
from below, but the one-point-fixed L(x0, ε) only for x = x0, where ‖J(x0)‖₂ is the
limit of the ratio when f is differentiable there (tied max-pool windows or units at 0
make J(x0) one of several one-sided Jacobians; on the MNIST LeNet the ratio near x0
stays near 44.3 while ‖J(x0)‖₂ = 45.5).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..graph.network import Network
from ..graph.nodes import chain_flops
from ..linalg.operators import FlatOperator
from ..linalg.spectral import normal_operator, top_eigen
from .vectors import batch_norms, into_shell, one_sample, per_row, sphere_points, unit_rows

MIN_RADIUS = 1e-3  # ratio points stay at least this fraction of ε away from x0
EXACT_OUTPUTS = 64  # form J(x) by VJPs and take an SVD when the output is this small
JACOBIAN_TOL = 1e-5  # Lanczos tolerance for ‖J(x)‖₂ above that (the value is a lower bound anyway)
# Points of the Jacobian max: each costs a few dozen JVP/VJP pairs (ResNet-18: ~0.35 s a pair).
JACOBIAN_POINTS, JACOBIAN_POINTS_LARGE, LARGE_NETWORK_FLOPS = 32, 4, 1e8


@dataclass(frozen=True, eq=False)
class LowerBound:
    """A lower bound on L(x0, ε), the method that found it and the point reaching it."""

    value: float
    method: str  # "random", "ascent" or "jacobian"
    point: np.ndarray
    jacobian: float | None = None  # paper's gradient bound max ‖J(x)‖₂, from lower_bound




def _ratios(net: Network, x0: np.ndarray, y0: np.ndarray, xs: np.ndarray) -> np.ndarray:
    return batch_norms(net.forward(xs) - y0) / batch_norms(xs - x0)


def _jacobian_top(net: Network, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """‖J(x)‖₂ and a top right singular vector at each x: exact SVD for small outputs, else
    ‖J·v‖ for the Lanczos vector v of JᵀJ (a lower bound at any tolerance)."""
    acts = net.activations(xs)
    n, m = len(xs), int(np.prod(net.output_shape))
    if m <= EXACT_OUTPUTS:
        rep = [np.repeat(a, m, axis=0) for a in acts]
        eye = np.tile(np.eye(m), (n, 1)).reshape(n * m, *net.output_shape)
        jt = net.vjp(rep, eye).reshape(n, m, -1)
        _, s, vh = np.linalg.svd(jt, full_matrices=False)
        return s[:, 0], vh[:, 0].reshape(xs.shape)
    tops = [_jacobian_lanczos(net, [a[i : i + 1] for a in acts]) for i in range(n)]
    return np.array([t[0] for t in tops]), np.stack([t[1] for t in tops])


def _jacobian_lanczos(net: Network, acts: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """‖J·v‖ and v, v the unit top Ritz vector of JᵀJ at one point (``acts``: batch 1).
    Lanczos needs a few dozen JVP/VJP pairs where power iteration took up to 200: the
    difference between minutes and an hour on ImageNet-size networks."""
    jacobian = FlatOperator(lambda v: net.jvp(acts, v), lambda u: net.vjp(acts, u), net.input_shape,
                            net.output_shape, np.float64)
    v = top_eigen(normal_operator(jacobian), tol=JACOBIAN_TOL)[1]
    return float(np.linalg.norm(jacobian.matvec(v))), v.reshape(net.input_shape)


def random_lower_bound(net: Network, x0: Any, eps: float, n: int = 256, seed: int = 0,
                       chunk: int = 64) -> LowerBound:
    """Max ratio over random points of the ball (uniform directions; half at radius ε)."""
    x0 = one_sample(net, x0, eps)
    y0 = net.forward(x0[None])
    rng = np.random.default_rng(seed)
    radii = eps * rng.uniform(MIN_RADIUS, 1.0, n)
    radii[::2] = eps
    best, point = 0.0, x0
    for start in range(0, n, chunk):
        r = radii[start:start + chunk]
        xs = x0 + sphere_points(rng, len(r), net.input_shape) * per_row(r, x0.ndim + 1)
        ratios = _ratios(net, x0, y0, xs)
        if ratios.max() > best:
            best, point = float(ratios.max()), xs[ratios.argmax()]
    return LowerBound(best, "random", point)


def jacobian_lower_bound(net: Network, x0: Any, eps: float, n_points: int = 32, seed: int = 0) -> LowerBound:
    """The paper's gradient bound: max ‖J(x)‖₂ over x0 and random points inside the ball."""
    x0 = one_sample(net, x0, eps)
    rng = np.random.default_rng(seed)
    radii = eps * rng.uniform(0.0, 1.0, n_points)
    xs = np.concatenate([x0[None], x0 + sphere_points(rng, n_points, net.input_shape) * per_row(radii, x0.ndim + 1)])
    chunk = max(1, 512 // int(np.prod(net.output_shape)))
    sigmas = np.concatenate([_jacobian_top(net, xs[i:i + chunk])[0] for i in range(0, len(xs), chunk)])
    return LowerBound(float(sigmas.max()), "jacobian", xs[sigmas.argmax()])



def ascent_lower_bound(net: Network, x0: Any, eps: float, steps: int = 40, restarts: int = 8,
                       seed: int = 0) -> LowerBound:
    """Projected normalized-gradient ascent on ‖f(x)−f(x0)‖/‖x−x0‖ over the ball."""
    x0 = one_sample(net, x0, eps)
    y0 = net.forward(x0[None])
    rng = np.random.default_rng(seed)
    r_min = MIN_RADIUS * eps
    top = _jacobian_top(net, x0[None])[1]
    dirs = np.concatenate([top, -top, top, sphere_points(rng, max(restarts - 3, 0), net.input_shape)])[:restarts]
    radii = np.concatenate([[eps, eps, r_min], eps * rng.uniform(MIN_RADIUS, 1.0, len(dirs))])[:len(dirs)]
    delta = dirs * per_row(radii, dirs.ndim)
    best, point = 0.0, x0
    for k in range(steps + 1):
        acts = net.activations(x0 + delta)
        diff = acts[-1] - y0
        r, dn = batch_norms(delta), batch_norms(diff)
        ratio = dn / r
        if ratio.max() > best:
            best, point = float(ratio.max()), x0 + delta[ratio.argmax()]
        if k == steps:
            break
        u = diff / per_row(np.where(dn > 0, dn, 1.0), diff.ndim)
        grad = net.vjp(acts, u) / per_row(r, delta.ndim) - delta * per_row(ratio / r**2, delta.ndim)
        step = eps * 0.5 * 0.02 ** (k / steps)  # geometric decay from ε/2 to ε/100
        delta = into_shell(delta + step * unit_rows(grad), r_min, eps)
    return LowerBound(best, "ascent", point)


def default_jacobian_points(net: Network) -> int:
    """Points for the Jacobian max: fewer on networks above ``LARGE_NETWORK_FLOPS`` multiply-adds."""
    return JACOBIAN_POINTS if chain_flops(net.nodes) <= LARGE_NETWORK_FLOPS else JACOBIAN_POINTS_LARGE


def lower_bound(net: Network, x0: Any, eps: float, n_random: int = 256, steps: int = 40,
                restarts: int = 8, n_jacobian: int | None = 32, seed: int = 0) -> LowerBound:
    """Best ratio lower bound of L(x0, ε) (random, ascent), with the Jacobian max alongside."""
    found = [random_lower_bound(net, x0, eps, n_random, seed), ascent_lower_bound(net, x0, eps, steps, restarts, seed)]
    best = max(found, key=lambda b: b.value)
    jac = None if n_jacobian is None else jacobian_lower_bound(net, x0, eps, n_jacobian, seed).value
    return LowerBound(best.value, best.method, best.point, jac)
