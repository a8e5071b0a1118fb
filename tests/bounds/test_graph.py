"""The DAG form of a network and the linear-relaxation engine on it (``onnxlip.graph``):
forward pass, ranges and margin bounds checked against sampling through onnxruntime on
random residual nets (nested blocks, Conv or BatchNorm on the skip path), patches against
dense rows, and certified radii against attacks."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import MODELS_DIR, run_ort, run_ort_each
from onnxlip.importer import load_model
from onnxlip.robustness.attacks import min_adversarial_distance
from onnxlip.robustness.lower_bounds import ascent_lower_bound
from onnxlip.bounds.relax.crown import plus_minus_rows
from onnxlip.bounds.relax.margins import margin_bounds, margin_rows
from onnxlip.bounds.relax.ranges import graph_ranges
from onnxlip.bounds.relax.backsub import lower_bounds
from onnxlip.bounds.tight.graph import dag_tight_bound
from onnxlip.linalg.operators import FlatOperator
from onnxlip.bounds.methods import local_bounds
from onnxlip.robustness.radius import certified_radius
from onnxlip.linalg.spectral import normal_operator, top_eigen
from onnxlip.bounds.tight.chain import supports
from random_graphs import saved_resnet

from random_nets import ball_samples

SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
def test_dag_computes_what_the_network_does(seed, tmp_path):
    path, net, g, x0 = saved_resnet(seed, tmp_path)
    assert not supports(net) and any(n.merge for n in g.nodes)
    assert all(max(ins) <= k for k, ins in enumerate(g.inputs))  # topological order
    xs = x0[None] + 0.3 * np.random.default_rng(1).standard_normal((5, *x0.shape))
    assert np.allclose(g.forward(xs), net.forward(xs), rtol=1e-12, atol=1e-12)
    theirs = run_ort_each(path, xs.astype(np.float32), net.output_name)
    assert np.allclose(g.forward(xs.astype(np.float32).astype(np.float64)).reshape(len(xs), -1), theirs,
                       rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_ranges_enclose_every_sampled_input_of_a_relu(seed, tmp_path):
    _, _, g, x0 = saved_resnet(seed, tmp_path)
    eps = 0.4
    ranges = graph_ranges(g, x0, eps)
    points = ball_samples(x0, eps, 300, np.random.default_rng(seed))
    tensors = g.tensors(points)
    for k, (lo, hi) in ranges.items():
        z = tensors[g.inputs[k][0]]
        assert np.all(z >= lo - 1e-9) and np.all(z <= hi + 1e-9), f"node {k}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("optimise", [False, True])
def test_margin_bounds_below_sampled_margins(seed, optimise, tmp_path):
    path, net, g, x0 = saved_resnet(seed, tmp_path)
    y0 = net.forward(x0[None]).reshape(-1)
    label = int(np.argmax(y0))
    for eps in (0.05, 0.5):
        bounds = margin_bounds(g, x0, eps, y0, label, optimise=optimise)
        points = ball_samples(x0, eps, 200, np.random.default_rng(seed)).astype(np.float32)
        ys = run_ort_each(path, points, net.output_name).astype(np.float64)
        margins = ys[:, [label]] - np.delete(ys, label, axis=1)
        assert np.all(bounds <= margins.min(axis=0) + 1e-4 * (1 + np.abs(ys).max())), (eps, bounds, margins.min(0))


def test_optimised_lines_never_lower_the_margin_bounds(tmp_path):
    _, net, g, x0 = saved_resnet(3, tmp_path)
    y0 = net.forward(x0[None]).reshape(-1)
    plain = margin_bounds(g, x0, 0.3, y0, int(np.argmax(y0)), optimise=False)
    tuned = margin_bounds(g, x0, 0.3, y0, int(np.argmax(y0)), optimise=True)
    assert np.all(tuned >= plain - 1e-9)


def test_rows_on_patches_give_the_dense_bounds(tmp_path):
    _, _, g, x0 = saved_resnet(2, tmp_path)
    ranges = graph_ranges(g, x0, 0.3)
    relu = max(k for k, n in enumerate(g.nodes) if n.op == "relu" and len(n.in_shape) == 3)
    tensor, shape = g.inputs[relu][0], g.nodes[relu].in_shape
    units = np.arange(0, int(np.prod(shape)), 7)
    patches = plus_minus_rows(units, shape)
    dense = patches.dense()
    earlier = {k: r for k, r in ranges.items() if k < relu}
    on_patches = lower_bounds(g, earlier, patches, x0, 0.3, start=tensor)
    on_dense = lower_bounds(g, earlier, dense, x0, 0.3, start=tensor)
    assert np.allclose(on_patches, on_dense, rtol=1e-9, atol=1e-9)
    for rows in (patches, dense):  # one shared rounding magnitude: a looser slack, never a higher bound
        shared = lower_bounds(g, earlier, rows, x0, 0.3, start=tensor, shared=True)
        assert np.all(shared <= on_dense + 1e-12) and np.allclose(shared, on_dense, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_radius_below_attack_distance(seed, tmp_path):
    path, net, g, x0 = saved_resnet(seed, tmp_path)
    result = certified_radius(net, x0)
    assert result.method in ("crown", "paper", "margin-folding", "global")
    attack = min_adversarial_distance(net, x0)
    if attack.found:
        assert result.radius <= attack.distance * (1 + 1e-6)
        point = np.asarray(attack.point, dtype=np.float32)[None]
        assert int(np.argmax(run_ort(path, point, net.output_name))) != result.label


def test_resnet_small_radius_from_the_relaxation():
    net = load_model(MODELS_DIR / "resnet_small.onnx")
    x0 = np.load(MODELS_DIR / "resnet_small_x0.npy")[0].astype(np.float64)
    result = certified_radius(net, x0)
    assert result.method == "crown" and result.radius > 5 * result.radius_folded
    y0 = net.forward(x0[None]).reshape(-1)
    rows = margin_rows(y0, result.label, net.output_shape)
    assert rows.shape == (9, 10) and np.all(rows.sum(axis=1) == 0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("eps", [0.01, 0.3])
@pytest.mark.parametrize("certified", [False, True])
def test_tight_local_bound_above_sampled_and_ascent_ratios(seed, eps, certified, tmp_path):
    path, net, g, x0 = saved_resnet(seed, tmp_path)
    found = dag_tight_bound(g, x0, eps, certified=certified)
    assert found is not None
    bound = found[0]
    if certified:  # provable, and what it costs over the estimate is rounding only
        estimate = dag_tight_bound(g, x0, eps)[0]
        assert estimate <= bound <= estimate * (1 + 1e-6)
    points = ball_samples(x0, eps, 300, np.random.default_rng(seed)).astype(np.float32)
    ys = run_ort_each(path, np.concatenate([x0[None].astype(np.float32), points]), net.output_name)
    ratios = np.linalg.norm(ys[1:] - ys[:1], axis=1) / np.linalg.norm(
        (points - x0.astype(np.float32)[None]).reshape(len(points), -1).astype(np.float64), axis=1)
    assert ratios.max() <= bound * (1 + 1e-4) + 1e-3 / eps
    assert ascent_lower_bound(net, x0, eps, steps=20, restarts=3).value <= bound * (1 + 1e-9)


def test_resnet_small_tight_bound_near_the_jacobian_norm():
    net = load_model(MODELS_DIR / "resnet_small.onnx")
    x0 = np.load(MODELS_DIR / "resnet_small_x0.npy")[0].astype(np.float64)
    bound = local_bounds(net, x0, [0.001], certified=False)[0]
    acts = net.activations(x0)
    jacobian = FlatOperator(lambda v: net.jvp(acts, v), lambda u: net.vjp(acts, u), net.input_shape,
                            net.output_shape, np.float64)
    norm = float(np.sqrt(top_eigen(normal_operator(jacobian))[0]))
    assert norm <= bound.bound <= 1.3 * norm and bound.is_estimate
    proven = local_bounds(net, x0, [0.001], certified=True)[0]
    assert proven.layers[0].method == "tight-certified" and bound.bound <= proven.bound <= 1.3 * norm


def test_branching_on_a_residual_network_extends_the_relaxation_radius(tmp_path):
    path, net, _, x0 = saved_resnet(1, tmp_path)
    plain = certified_radius(net, x0)
    result = certified_radius(net, x0, branch_seconds=2.0)
    assert result.method in ("crown", "crown+branching") and result.branch_seconds == 2.0
    assert result.radius >= plain.radius
    attack = min_adversarial_distance(net, x0)
    assert not attack.found or result.radius < attack.distance
    points = ball_samples(x0, result.radius, 200, np.random.default_rng(0))
    assert np.all(run_ort_each(path, points.astype(np.float32), net.output_name).argmax(axis=1) == result.label)


def test_margin_bounds_take_x0_with_or_without_its_batch_axis(tmp_path):
    _, net, g, x0 = saved_resnet(4, tmp_path)
    y0 = net.forward(x0[None]).reshape(-1)
    label = int(np.argmax(y0))
    plain = margin_bounds(g, x0, 0.5, y0, label)
    batched = margin_bounds(g, x0[None], 0.5, y0, label)
    assert np.allclose(plain, batched, rtol=1e-12, atol=1e-12)
