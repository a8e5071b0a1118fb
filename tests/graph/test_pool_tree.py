"""Max-pools as ReLU trees (``pool_tree``): the rewrite computes the pool exactly wherever it is
made, leaves pools it cannot rewrite exactly alone, and its relaxation encloses every window's
max on sampled points of the ball (lower and upper lines, default and optimised)."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_secant_holds, make_window
from onnxlip.bounds.relax import slopes
from onnxlip.bounds.relax.backsub import lower_bounds
from onnxlip.bounds.relax.ranges import graph_ranges, relaxed_ranges
from onnxlip.graph.dag import Graph, chain_wiring
from onnxlip.graph.nodes import Conv, MaxPool, Relu
from onnxlip.graph.pool_tree import relaxation_graph, winners

# (kernel, strides, dilations, pads, ceil_mode, after a ReLU): pools the rewrite takes
POOLS = {
    "2x2 s2": ((2, 2), (2, 2), (1, 1), (0, 0, 0, 0), False, False),
    "3x3 s1 overlapping": ((3, 3), (1, 1), (1, 1), (0, 0, 0, 0), False, False),
    "3x2 s(2,1) dilated": ((3, 2), (2, 1), (2, 1), (0, 0, 0, 0), False, False),
    "3x3 s2 padded after relu": ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False, True),
    "2x2 s2 ceil after relu": ((2, 2), (2, 2), (1, 1), (0, 0, 0, 0), True, True),
}
SHAPE = (2, 7, 6)


def _graph(name: str, rng: np.random.Generator) -> Graph:
    """conv → (ReLU) → max-pool on a 2×7×6 input."""
    kernel, strides, dilations, pads, ceil, relu = POOLS[name]
    conv_win = make_window((2, 2), pads=(1, 1, 0, 0), in_hw=SHAPE[1:])
    conv = Conv(rng.normal(size=(3, 2, 2, 2)), rng.normal(size=(3, 1, 1)), conv_win, 1, SHAPE, (3, 7, 6))
    pool_win = make_window(kernel, strides, dilations, pads, (7, 6), ceil)
    pool = MaxPool(pool_win, (3, 7, 6), (3, *pool_win.out_hw))
    nodes = (conv, Relu((3, 7, 6), (3, 7, 6)), pool) if relu else (conv, pool)
    return Graph(nodes, chain_wiring(len(nodes)), SHAPE)


@pytest.mark.parametrize("name", sorted(POOLS))
def test_tree_computes_the_pool(name: str) -> None:
    rng = np.random.default_rng(1)
    g = _graph(name, rng)
    tree = relaxation_graph(g)
    assert not tree.identity
    x = rng.normal(size=(5, *SHAPE))
    original, rewritten = g.tensors(x), tree.graph.tensors(x)
    for t in range(len(g.nodes) + 1):
        np.testing.assert_allclose(rewritten[tree.tensor(t)], original[t], rtol=1e-12, atol=1e-12)


def test_padded_pool_of_signed_inputs_is_left_alone() -> None:
    """Padding holds −∞ in a max-pool and 0 in a convolution: without a ReLU before it, a padded
    pool cannot be rewritten exactly, so it keeps its one-step lines."""
    win = make_window((3, 3), (2, 2), pads=(1, 1, 1, 1), in_hw=SHAPE[1:])
    g = Graph((MaxPool(win, SHAPE, (2, *win.out_hw)),), chain_wiring(1), SHAPE)
    assert relaxation_graph(g).identity


def _samples(rng: np.random.Generator, x0: np.ndarray, eps: float, n: int) -> np.ndarray:
    """Points of the L2 ball around x0: on its sphere and inside."""
    d = rng.normal(size=(n, *x0.shape[1:]))
    d /= np.linalg.norm(d.reshape(n, -1), axis=1).reshape(-1, 1, 1, 1)
    radius = np.where(np.arange(n) < n // 2, 1.0, rng.random(n)).reshape(n, 1, 1, 1)
    return x0 + eps * d * radius


@pytest.mark.parametrize("name", sorted(POOLS))
@pytest.mark.parametrize("optimised", [False, True])
def test_tree_lines_enclose_every_window_max_on_the_ball(name: str, optimised: bool) -> None:
    """For every window w, the bounds below e_w·pool and −e_w·pool (so above the max) from the
    tree's relaxation hold at sampled points of the ball, with default or optimised lines."""
    rng = np.random.default_rng(2)
    g = _graph(name, rng)
    tree = relaxation_graph(g).graph
    x0, eps = rng.normal(size=(1, *SHAPE)), 0.8
    ranges = graph_ranges(tree, x0, eps)
    size = int(np.prod(g.shape(g.output)))
    rows = np.concatenate([np.eye(size), -np.eye(size)]).reshape(2 * size, *g.shape(g.output))
    lines = slopes.optimise(tree, ranges, rows, x0, eps) if optimised else None
    bounds = lower_bounds(tree, ranges, rows, x0, eps, lines)
    values = g.forward(_samples(rng, x0, eps, 400)).reshape(400, -1)
    assert np.all(bounds[:size] <= values.min(axis=0))
    assert np.all(-bounds[size:] >= values.max(axis=0))
    assert np.isfinite(bounds).all()


def test_tree_ranges_of_the_pool_input_enclose_the_samples() -> None:
    """``relaxed_ranges`` (computed on the rewrite, keyed by the original nodes) holds the
    pool's input at sampled points."""
    rng = np.random.default_rng(3)
    g = _graph("3x3 s2 padded after relu", rng)
    x0, eps = rng.normal(size=(1, *SHAPE)), 0.5
    ranges = relaxed_ranges(g, x0, eps)
    assert sorted(ranges) == [1, 2]
    inputs = g.tensors(_samples(rng, x0, eps, 300))
    for k, (lo, hi) in ranges.items():
        assert np.all(lo <= inputs[k]) and np.all(inputs[k] <= hi)


@pytest.mark.parametrize("name", sorted(POOLS))
def test_secant_with_the_trees_winners_holds_the_sampled_secants(name: str) -> None:
    """With candidates cut by the tree's difference ranges (``winners``), the pool's secant set
    still holds every sampled secant: pool(x) − pool(x0) = (S̄ + L U R)(z − z0), ‖U‖₂ ≤ 1."""
    rng = np.random.default_rng(4)
    g = _graph(name, rng)
    tree = relaxation_graph(g)
    k = len(g.nodes) - 1
    x0, eps = rng.normal(size=(1, *SHAPE)), 0.3
    relaxed = graph_ranges(tree.graph, x0, eps)
    lo, hi = relaxed_ranges(g, x0, eps)[k]
    pool, z0 = g.nodes[k], g.tensors(x0)[k]
    can_win = winners(tree, k, pool, relaxed)
    sec = pool.secant(z0, lo, hi, can_win)
    assert sum(int(c.sum()) for c in can_win) < len(can_win) * can_win[0].size  # the tree rules some taps out
    assert_secant_holds(pool, sec, z0, g.tensors(_samples(rng, x0, eps, 300))[k])
