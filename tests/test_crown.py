"""Linear-relaxation (CROWN-style) bounds: every relaxation and every bound holds on samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxlip import load_model
from onnxlip.crown import _maxpool_back, _relu_back, lower_bounds, output_range
from onnxlip.ir import MaxPool
from onnxlip.tight import build_secants

from .helpers import run_ort
from .random_nets import ball_samples, random_conv_net, random_mlp
from .test_bounds import MODELS

HYPOTHESIS = settings(max_examples=25, deadline=None)


@HYPOTHESIS
@given(seed=st.integers(0, 2**16))
def test_relu_relaxation_holds_on_its_range(seed: int) -> None:
    """λ·ReLU(z) ≥ λ'·z + c for every z in [lo, hi], per unit and per row."""
    rng = np.random.default_rng(seed)
    lo = rng.normal(size=(1, 20))
    hi = lo + rng.exponential(size=(1, 20)) * rng.integers(0, 2, size=(1, 20))  # some zero-width
    lam = rng.normal(size=(3, 20))
    new, const, _, _ = _relu_back(lam, lo, hi)
    for t in np.linspace(0, 1, 11):
        z = lo + t * (hi - lo)
        assert np.all((lam * np.maximum(z, 0)).sum(axis=1) >= (new * z).sum(axis=1) + const - 1e-12)


@HYPOTHESIS
@given(seed=st.integers(0, 2**16))
def test_maxpool_relaxation_holds_on_its_range(seed: int) -> None:
    net = load_model(MODELS / "mnist_lenet.onnx")
    pool = next(n for n in net.nodes if isinstance(n, MaxPool))
    rng = np.random.default_rng(seed)
    lo = rng.normal(size=(1, *pool.in_shape))
    hi = lo + rng.exponential(0.3, size=lo.shape)
    lam = rng.normal(size=(2, *pool.out_shape))
    new, const, _, _ = _maxpool_back(pool, lam, lo, hi)
    for _ in range(5):
        z = lo + rng.random(lo.shape) * (hi - lo)
        exact = (lam * pool.forward(z)).reshape(2, -1).sum(axis=1)
        assert np.all(exact >= (new * z).reshape(2, -1).sum(axis=1) + const - 1e-9)


def _sampled_outputs(path: Path, x0: np.ndarray, eps: float, seed: int) -> np.ndarray:
    points = ball_samples(x0, eps, 200, np.random.default_rng(seed))
    return run_ort(path, points).reshape(len(points), -1).astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps", [0.05, 0.3, 1.0])
@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_output_ranges_and_margins_contain_onnxruntime_samples(tmp_path: Path, kind: str, seed: int,
                                                               eps: float) -> None:
    """Ranges of tight mode (interval ∩ ball ∩ linear relaxation) and the relaxation's bounds on
    the logits contain what onnxruntime computes at points of the ball."""
    path = tmp_path / "net.onnx"
    if kind == "conv":
        random_conv_net(path, seed)
    else:
        random_mlp(path, seed)
    net = load_model(path)
    x0 = np.random.default_rng(seed + 7).normal(size=net.input_shape)
    acts = net.activations(x0[None])
    state = build_secants(net, x0[None], eps, acts=acts)
    lo, hi = output_range(net.nodes, state.ranges, x0, eps, np.arange(int(np.prod(net.output_shape))))
    outputs = _sampled_outputs(path, x0, eps, seed)
    slack = 1e-4 * (1 + np.abs(outputs))  # onnxruntime runs in float32
    assert np.all(outputs >= lo - slack) and np.all(outputs <= hi + slack)
    rows = np.random.default_rng(seed).normal(size=(4, *net.output_shape))
    bounds = lower_bounds(net.nodes, state.ranges, rows, x0, eps)
    assert np.all(outputs @ rows.reshape(4, -1).T >= bounds - 1e-4 * (1 + np.abs(bounds)))
    for k, (r_lo, r_hi) in state.ranges.items():  # every nonlinear node's input range holds too
        inner = np.stack([net.activations(p[None])[k][0] for p in ball_samples(x0, eps, 50, np.random.default_rng(1))])
        assert np.all(inner >= r_lo - 1e-9) and np.all(inner <= r_hi + 1e-9)
