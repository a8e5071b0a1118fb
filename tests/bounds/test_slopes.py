"""Optimised lower lines (``slopes``): exact gradients, never a worse bound, always a sound one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxlip.importer import load_model
from onnxlip.bounds.relax.crown import relaxations
from onnxlip.bounds.relax.backsub import lower_bounds
from onnxlip.bounds.domain import InputBox
from onnxlip.graph.nodes import MaxPool
from onnxlip.bounds.relax.slopes import _done, _value_and_gradient, free_lines, initial_lines, optimise
from onnxlip.bounds.tight.chain import build_secants

from helpers import run_ort
from random_nets import ball_samples, random_conv_net, random_mlp


def _net_and_ranges(tmp_path: Path, kind: str, seed: int, eps: float):
    path = tmp_path / "net.onnx"
    (random_conv_net if kind == "conv" else random_mlp)(path, seed)
    net = load_model(path)
    x0 = np.random.default_rng(seed + 7).normal(size=net.input_shape)
    return path, net, x0, build_secants(net, x0[None], eps).ranges


@pytest.mark.parametrize("boxed", [False, True])
@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_gradient_matches_finite_differences(tmp_path: Path, kind: str, boxed: bool) -> None:
    """The hand-derived gradient in every ReLU slope and max-pool weight, against the bound's change
    (``boxed``: on the ball cut by a box of valid inputs, x0 on some of its faces)."""
    eps = 0.5
    _, net, x0, ranges = _net_and_ranges(tmp_path, kind, 3, eps)
    box = InputBox(np.where(np.arange(x0.size).reshape(x0.shape) % 3 == 0, x0, x0 - 0.2), x0 + 0.3) if boxed else None
    rows = np.random.default_rng(0).normal(size=(3, *net.output_shape))
    relaxed = relaxations(net.nodes, ranges)
    free = free_lines(relaxed)
    assert free, "the test needs unstable units"
    rng = np.random.default_rng(1)
    lines = {k: relaxed[k].project(0.5 * a + 0.25 * rng.random(a.shape), free[k])
             for k, a in initial_lines(relaxed, free, len(rows)).items()}
    value, grads = _value_and_gradient(net.graph, relaxed, rows, x0, eps, lines, free, box)
    for k in lines:
        step = 1e-6 * rng.normal(size=lines[k].shape) * free[k]
        if isinstance(net.nodes[k], MaxPool):  # along the simplex: weights keep summing to 1
            step = (step - step.sum(axis=-1, keepdims=True) / free[k].sum(axis=-1, keepdims=True)) * free[k]
        moved, _ = _value_and_gradient(net.graph, relaxed, rows, x0, eps, {**lines, k: lines[k] + step}, free, box)
        predicted = (grads[k] * step).reshape(len(rows), -1).sum(axis=1)
        assert np.allclose(moved - value, predicted, rtol=1e-3, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("eps", [0.3, 1.0])
@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_optimised_bounds_are_no_worse_and_hold_on_onnxruntime_samples(tmp_path: Path, kind: str, seed: int,
                                                                       eps: float) -> None:
    """Optimised lines never lose to CROWN's choice, and the bound stays below onnxruntime's values."""
    path, net, x0, ranges = _net_and_ranges(tmp_path, kind, seed, eps)
    rows = np.random.default_rng(seed).normal(size=(4, *net.output_shape))
    default = lower_bounds(net.graph, ranges, rows, x0, eps)
    optimised = lower_bounds(net.graph, ranges, rows, x0, eps, optimise(net.graph, ranges, rows, x0, eps))
    assert np.all(optimised >= default - 1e-9 * (1 + np.abs(default)))
    points = ball_samples(x0, eps, 300, np.random.default_rng(seed))
    outputs = run_ort(path, points).reshape(len(points), -1).astype(np.float64) @ rows.reshape(4, -1).T
    assert np.all(outputs >= optimised - 1e-4 * (1 + np.abs(optimised)))  # onnxruntime runs in float32


def test_optimisation_stops_at_the_target_or_when_it_stalls() -> None:
    assert _done([-10.0, -5.0, 0.5], 0.0)  # passed the target
    assert not _done([-10.0, -5.0, -3.0, -1.0], 0.0)  # still closing in
    assert _done([-10.0, -5.0, -4.99, -4.98, -4.97], 0.0)  # gained 0.03 of a 4.97 gap in 3 steps
