"""The node contract, for every node kind: its interval encloses its forward pass on sampled
points of the box, its relaxation's lines (``relax``, ``back_step``) enclose it there, its
secant set holds the sampled secants, its closed-form constant bounds sampled ratios, and the
linear nodes' shared step is exactly their JVP/VJP."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from helpers import assert_secant_holds, make_window
from onnxlip.graph.nodes import Add, Concat, Conv, Dense, MaxPool, Pad, Relu, Reshape, Scale, Transpose

SAMPLES = 40


def _nodes(rng: np.random.Generator) -> dict[str, Any]:
    """One node of every kind, on small random shapes (a pool with overlapping windows)."""
    win = make_window((3, 3), (1, 2), (1, 1), (1, 0, 1, 1), (6, 5))
    pool = make_window((3, 2), (2, 1), pads=(1, 0, 1, 0), in_hw=(6, 5))
    return {
        "dense": Dense(rng.normal(size=(7, 12)), rng.normal(size=7), (12,), (7,)),
        "conv": Conv(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=(4, 1, 1)), win, 1, (2, 6, 5), (4, *win.out_hw)),
        "scale": Scale(rng.normal(size=(2, 1, 1)), rng.normal(size=(2, 1, 1)), (2, 6, 5), (2, 6, 5)),
        "reshape": Reshape((2, 6, 5), (60,)),
        "transpose": Transpose((1, 2, 0), (2, 6, 5), (6, 5, 2)),
        "pad": Pad(((0, 0), (1, 2), (0, 1)), (2, 6, 5), (2, 9, 6)),
        "relu": Relu((2, 6, 5), (2, 6, 5)),
        "maxpool": MaxPool(pool, (2, 6, 5), (2, *pool.out_hw)),
    }


KINDS = sorted(_nodes(np.random.default_rng(0)))
LINEAR = [k for k in KINDS if k not in ("relu", "maxpool")]


def _box(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A box around 0 with some zero-width coordinates, so units of every state occur."""
    lo = rng.normal(size=(1, *shape))
    return lo, lo + rng.exponential(size=lo.shape) * (rng.random(lo.shape) < 0.8)


def _points(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The box's corners lo and hi, and random points in it."""
    return np.concatenate([lo, hi, lo + rng.random((SAMPLES, *lo.shape[1:])) * (hi - lo)])


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).reshape(len(a), -1).sum(axis=1)


@pytest.mark.parametrize("kind", KINDS)
def test_interval_encloses_forward_on_the_box(kind: str) -> None:
    rng = np.random.default_rng(1)
    node = _nodes(rng)[kind]
    lo, hi = _box(rng, node.in_shape)
    out_lo, out_hi = node.interval(lo, hi)
    y = node.forward(_points(rng, lo, hi))
    assert np.all(y >= out_lo) and np.all(y <= out_hi)


@pytest.mark.parametrize("merge", ["add", "concat"])
def test_merge_interval_encloses_forward_on_the_boxes(merge: str) -> None:
    rng = np.random.default_rng(2)
    node = Add((3, 4), (3, 4)) if merge == "add" else Concat(0, ((3, 4), (2, 4)), (5, 4))
    shapes = node.in_shapes if merge == "concat" else (node.in_shape, node.in_shape)
    boxes = [_box(rng, s) for s in shapes]
    out_lo, out_hi = node.interval(*boxes)
    y = node.forward(*(_points(np.random.default_rng(3), lo, hi) for lo, hi in boxes))
    assert np.all(y >= out_lo) and np.all(y <= out_hi)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chosen", [False, True])
def test_relaxation_lines_enclose_the_node_on_the_box(kind: str, chosen: bool) -> None:
    """Λ·f(z) ≥ Λ'·z + c for every sampled z, with the default lower lines or any chosen ones
    (made valid by the node); linear nodes are exact."""
    rng = np.random.default_rng(4)
    node = _nodes(rng)[kind]
    lo, hi = _box(rng, node.in_shape)
    lines = node.relax(lo, hi) if node.nonlinear else None
    lam = rng.normal(size=(3, *node.out_shape))
    choice = rng.uniform(-0.2, 1.2, size=(3, *lines.default.shape[1:])) if chosen and lines is not None else None
    (ins, const, _, _), _ = node.back_step(lines, lam, None, choice)
    z = _points(rng, lo, hi)
    for row in range(len(lam)):
        exact = _dot(np.repeat(lam[row : row + 1], len(z), axis=0), node.forward(z))
        linear = _dot(np.repeat(ins[0][row : row + 1], len(z), axis=0), z) + const[row]
        assert np.all(exact >= linear - 1e-9)
        if lines is None:
            np.testing.assert_allclose(exact, linear, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_relaxation_magnitudes_bound_the_step(kind: str) -> None:
    """The magnitude pass of a step bounds the step's coefficients and constant in absolute value."""
    rng = np.random.default_rng(5)
    node = _nodes(rng)[kind]
    lo, hi = _box(rng, node.in_shape)
    lines = node.relax(lo, hi) if node.nonlinear else None
    lam = rng.normal(size=(2, *node.out_shape))
    (ins, const, mags, mag_const), _ = node.back_step(lines, lam, np.abs(lam), None)
    assert np.all(mags[0] >= np.abs(ins[0]) - 1e-12) and np.all(mag_const >= np.abs(const) - 1e-12)


@pytest.mark.parametrize("kind", LINEAR)
def test_linear_nodes_share_one_step_equal_to_their_jvp_and_vjp(kind: str) -> None:
    rng = np.random.default_rng(6)
    node = _nodes(rng)[kind]
    a, v = rng.normal(size=(1, *node.in_shape)), rng.normal(size=(3, *node.in_shape))
    lam = rng.normal(size=(3, *node.out_shape))
    assert np.array_equal(node.jvp(a, v), node.linear(v))
    np.testing.assert_allclose(node.forward(v) - node.offset, node.linear(v), rtol=1e-12, atol=1e-12)
    (ins, const, _, _), apply = node.back_step(None, lam, None, None)
    np.testing.assert_allclose(ins[0], node.vjp(a, lam), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(const, _dot(lam, np.broadcast_to(node.offset, lam.shape)), rtol=1e-12, atol=1e-12)
    assert apply is None and node.flops() >= np.prod(node.out_shape)


@pytest.mark.parametrize("kind", ["relu", "maxpool"])
def test_secant_set_holds_the_sampled_secants(kind: str) -> None:
    """g(z) − g(z0) = (S̄ + L U R)(z − z0) with ‖U‖₂ ≤ 1: the residual after the centre vanishes
    where L = 0 and, divided by L, is no longer than R(z − z0)."""
    rng = np.random.default_rng(7)
    node = _nodes(rng)[kind]
    lo, hi = _box(rng, node.in_shape)
    z0 = lo + rng.random(lo.shape) * (hi - lo)
    assert_secant_holds(node, node.secant(z0, lo, hi), z0, _points(rng, lo, hi))


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("dense", "conv", "scale")])
def test_closed_form_constants_bound_sampled_ratios(kind: str) -> None:
    """The per-layer step of a node without weights: ‖f(x) − f(x0)‖ ≤ L‖x − x0‖ on its ball,
    only outputs in its mask moving; its global constant and norm bound are no smaller."""
    rng = np.random.default_rng(8)
    node = _nodes(rng)[kind]
    x0, ball = rng.normal(size=(1, *node.in_shape)), 0.5
    step = node.local_constant(x0[0], np.ones(node.in_shape), ball, None)
    assert step.lipschitz <= node.lipschitz_constant() <= node.norm_bound()
    for _ in range(SAMPLES):
        direction = rng.normal(size=x0.shape)
        x = x0 + direction / np.linalg.norm(direction) * ball * rng.random()
        change = node.forward(x) - node.forward(x0)
        assert np.linalg.norm(change) <= step.lipschitz * np.linalg.norm(x - x0) * (1 + 1e-12) + 1e-15
        assert np.all(change[0][step.mask == 0] == 0)
