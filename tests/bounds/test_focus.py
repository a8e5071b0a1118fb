"""Optimised ranges for the units that weigh on the margins (``relax.focus``): sound against
sampling through the graph, never looser than the ranges they refine, picked by weight within
their share and budget, and margin bounds on them sound against onnxruntime and never lower."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import MODELS_DIR, run_ort_each
from onnxlip.bounds.relax import focus, slopes
from onnxlip.bounds.relax.margins import focused_bounds, margin_bounds, margin_gaps, margin_rows, optimised_bounds
from onnxlip.bounds.relax.backsub import lower_bounds
from onnxlip.bounds.relax.ranges import graph_ranges
from onnxlip.importer import load_model
from onnxlip.graph.pool_tree import relaxation_graph
from random_graphs import saved_resnet
from random_nets import ball_samples

SEEDS = range(4)


def _setup(seed, tmp_path, eps):
    path, net, g, x0 = saved_resnet(seed, tmp_path)
    y0 = net.forward(x0[None]).reshape(-1)
    label = int(np.argmax(y0))
    rows = margin_rows(y0, label, g.shape(g.output))
    ranges = graph_ranges(g, x0, eps)
    lines = slopes.optimise(g, ranges, rows, x0, eps)
    return path, net, g, x0, y0, label, rows, ranges, lines


def _unstable(ranges):
    return sum(int(np.count_nonzero((lo < 0) & (hi > 0))) for lo, hi in ranges.values())


@pytest.mark.parametrize("seed", SEEDS)
def test_focused_ranges_enclose_sampled_inputs_and_refine_the_plain_ones(seed, tmp_path):
    eps = 0.4
    _, _, g, x0, _, _, rows, ranges, lines = _setup(seed, tmp_path, eps)
    focused = focus.focused_ranges(g, ranges, rows, lines, x0, eps)
    assert focused is not None and focused.keys() == ranges.keys()
    tensors = g.tensors(ball_samples(x0, eps, 300, np.random.default_rng(seed)))
    narrower = 0
    for k, (lo, hi) in focused.items():
        z = tensors[g.inputs[k][0]]
        assert np.all(z >= lo - 1e-9) and np.all(z <= hi + 1e-9), f"node {k}"
        assert np.all(lo >= ranges[k][0]) and np.all(hi <= ranges[k][1])
        narrower += int(np.count_nonzero((lo > ranges[k][0] + 1e-9) | (hi < ranges[k][1] - 1e-9)))
    assert narrower > 0
    assert _unstable(focused) <= _unstable(ranges)


def test_heaviest_takes_units_by_weight_until_the_share():
    from onnxlip.bounds.relax.ranges import prefix_flops

    g = relaxation_graph(_chain_graph()).graph
    relus = [k for k, n in enumerate(g.nodes) if n.nonlinear]
    weights = {relus[0]: np.array([0.0, 6.0, 1.0, 0.2]), relus[1]: np.array([2.5, 0.3, 0.0])}
    listed = lambda picked: {t: list(u) for t, u in picked.items()}  # noqa: E731
    picked = listed(focus.heaviest(g, weights))
    # total 10, share 0.95: 6, 2.5 and 1 (the heavier ones weigh 8.5 < 9.5 before the 1 is
    # taken, 9.5 before the 0.3)
    assert picked == {g.inputs[relus[0]][0]: [1, 2], g.inputs[relus[1]][0]: [0]}
    flops = prefix_flops(g)
    cost = 4 * focus.STEPS * (2 * flops[g.inputs[relus[0]][0]] + flops[g.inputs[relus[1]][0]])
    old = focus.FOCUS_FLOPS
    try:
        focus.FOCUS_FLOPS = cost
        assert listed(focus.heaviest(g, weights)) == picked
        focus.FOCUS_FLOPS = cost - 1  # no room for all three: none
        assert focus.heaviest(g, weights) == {}
    finally:
        focus.FOCUS_FLOPS = old
    assert focus.heaviest(g, {relus[0]: np.zeros(4)}) == {}


def _chain_graph():
    from onnxlip.graph.dag import Graph, chain_wiring
    from onnxlip.graph.nodes import Dense, Relu

    rng = np.random.default_rng(0)
    nodes = (Dense(rng.standard_normal((4, 3)), rng.standard_normal(4), (3,), (4,)), Relu((4,), (4,)),
             Dense(rng.standard_normal((3, 4)), rng.standard_normal(3), (4,), (3,)), Relu((3,), (3,)),
             Dense(rng.standard_normal((2, 3)), rng.standard_normal(2), (3,), (2,)))
    return Graph(nodes, chain_wiring(len(nodes)), (3,))


@pytest.mark.parametrize("seed", SEEDS)
def test_focused_margin_bounds_are_sound_and_never_lower(seed, tmp_path):
    path, net, g, x0 = saved_resnet(seed, tmp_path)
    y0 = net.forward(x0[None]).reshape(-1)
    label = int(np.argmax(y0))
    points = ball_samples(x0, 0.5, 200, np.random.default_rng(seed)).astype(np.float32)
    for eps in (0.2, 0.5):
        plain = margin_bounds(g, x0, eps, y0, label, focus=False)
        focused = margin_bounds(g, x0, eps, y0, label)
        assert np.all(focused >= plain)
        ys = run_ort_each(path, (x0 + (points - x0) * (eps / 0.5)).astype(np.float32), net.output_name)
        margins = ys[:, [label]].astype(np.float64) - np.delete(ys, label, axis=1)
        assert np.all(focused <= margins.min(axis=0) + 1e-4 * (1 + np.abs(ys).max()))


def test_focus_raises_a_failing_margin_of_the_shipped_resnet():
    net = load_model(MODELS_DIR / "resnet_small.onnx")
    x0 = np.load(MODELS_DIR / "resnet_small_x0.npy").reshape(net.input_shape).astype(np.float64)
    y0 = net.forward(x0[None]).reshape(-1)
    g = relaxation_graph(net.graph).graph
    rows = margin_rows(y0, int(np.argmax(y0)), g.shape(g.output))
    eps, gaps = 0.095, margin_gaps(rows, y0)  # just past the radius the plain ranges certify
    ranges = graph_ranges(g, x0, eps)
    plain, lines = optimised_bounds(g, ranges, rows, x0, eps)
    assert -focus.REACH * gaps.min() < plain.min() <= 0
    focused, focused_ranges = focused_bounds(g, ranges, rows, x0, eps, gaps, plain, lines)
    assert np.all(focused >= plain) and focused.min() > plain.min() + 0.25 * abs(plain.min())
    # the ranges branch and bound would start from: the focused ones, within the plain ones
    assert focused_ranges is not ranges and focused_ranges.keys() == ranges.keys()
    assert all(np.all(focused_ranges[k][0] >= lo) and np.all(focused_ranges[k][1] <= hi)
               for k, (lo, hi) in ranges.items())


def test_optimise_starts_from_the_given_lines_where_they_are_not_nan(tmp_path):
    eps = 0.4
    _, _, g, x0, _, _, rows, ranges, lines = _setup(0, tmp_path, eps)
    bound = lambda chosen: lower_bounds(g, ranges, rows, x0, eps, chosen)  # noqa: E731
    again = slopes.optimise(g, ranges, rows, x0, eps, steps=1, start=lines)
    assert np.all(bound(again) >= bound(lines) - 1e-12)  # one step from the start: the start itself
    unknown = {k: np.full_like(a, np.nan) for k, a in lines.items()}
    default = slopes.optimise(g, ranges, rows, x0, eps, steps=1)
    assert all(np.array_equal(default[k], a) for k, a in slopes.optimise(g, ranges, rows, x0, eps, steps=1,
                                                                            start=unknown).items())


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_focused_ranges_from_the_lines_a_memory_kept_stay_sound(seed, tmp_path):
    _, _, g, x0, _, _, rows, ranges, lines = _setup(seed, tmp_path, 0.4)
    memory = focus.Memory()
    assert focus.focused_ranges(g, ranges, rows, lines, x0, 0.4, memory=memory) is not None
    assert memory.rows and all(np.all((a >= 0) & (a <= 1)) for row in memory.rows.values() for a in row.values())
    eps = 0.41  # the next test of a radius search, from the lines kept at 0.4
    ranges = graph_ranges(g, x0, eps)
    focused = focus.focused_ranges(g, ranges, rows, slopes.optimise(g, ranges, rows, x0, eps), x0, eps, memory=memory)
    tensors = g.tensors(ball_samples(x0, eps, 300, np.random.default_rng(seed)))
    for k, (lo, hi) in focused.items():
        z = tensors[g.inputs[k][0]]
        assert np.all(z >= lo - 1e-9) and np.all(z <= hi + 1e-9), f"node {k}"
    key = next(iter(memory.rows))
    start = memory.start([key, (-1, 0)])  # a row kept, and one never seen
    assert all(not np.isnan(a[0]).any() and np.isnan(a[1]).all() for a in start.values())


def test_margin_bounds_from_a_memory_are_never_lower_and_stay_sound(tmp_path):
    path, net, g, x0 = saved_resnet(1, tmp_path)
    y0 = net.forward(x0[None]).reshape(-1)
    label = int(np.argmax(y0))
    eps = 0.4  # focus runs here
    memory = focus.Memory()
    ranges, rows = graph_ranges(g, x0, eps), margin_rows(y0, label, g.shape(g.output))
    first, _ = optimised_bounds(g, ranges, rows, x0, eps, memory=memory)
    assert {key[0] for key in memory.rows} == {"margin"}
    second, _ = optimised_bounds(g, ranges, rows, x0, eps, memory=memory)
    assert np.all(second >= first - 1e-9)  # every row starts from its best lines of the first
    again = margin_bounds(g, x0, eps, y0, label, memory=memory)  # focused, from the kept lines
    assert any(isinstance(key[0], int) for key in memory.rows)  # the focused ranges' rows too
    points = ball_samples(x0, eps, 200, np.random.default_rng(1)).astype(np.float32)
    ys = run_ort_each(path, points, net.output_name)
    margins = ys[:, [label]].astype(np.float64) - np.delete(ys, label, axis=1)
    assert np.all(again <= margins.min(axis=0) + 1e-4 * (1 + np.abs(ys).max()))
