"""Linear-relaxation (CROWN-style) bounds: every relaxation and every bound holds on samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxlip.importer import load_model
from onnxlip.bounds.relax.crown import plus_minus_rows
from onnxlip.bounds.relax.ranges import unit_range
from onnxlip.bounds.relax.backsub import lower_bounds
from onnxlip.linalg.patches import Patches
from onnxlip.graph.nodes import MaxPool, Relu
from onnxlip.bounds.tight.chain import build_secants

from helpers import make_window, run_ort
from random_nets import ball_samples, random_conv_net, random_mlp
from helpers import MODELS

HYPOTHESIS = settings(max_examples=25, deadline=None)


@HYPOTHESIS
@given(seed=st.integers(0, 2**16), optimised=st.booleans())
def test_relu_relaxation_holds_on_its_range(seed: int, optimised: bool) -> None:
    """λ·ReLU(z) ≥ λ'·z + c for every z in [lo, hi], per unit and per row, with CROWN's lower
    slopes or any others (out-of-range ones are clipped)."""
    rng = np.random.default_rng(seed)
    lo = rng.normal(size=(1, 20))
    hi = lo + rng.exponential(size=(1, 20)) * rng.integers(0, 2, size=(1, 20))  # some zero-width
    lam = rng.normal(size=(3, 20))
    alpha = rng.uniform(-0.5, 1.5, size=(3, 20)) if optimised else None
    new, const, *_ = Relu((20,), (20,)).relax(lo, hi).back(lam, alpha)
    for t in np.linspace(0, 1, 11):
        z = lo + t * (hi - lo)
        assert np.all((lam * np.maximum(z, 0)).sum(axis=1) >= (new * z).sum(axis=1) + const - 1e-12)


POOLS = {  # (kernel, strides, pads): LeNet's, overlapping, padded and overlapping
    "lenet": ((2, 2), (2, 2), (0, 0, 0, 0)),
    "overlapping": ((3, 3), (2, 2), (0, 0, 0, 0)),
    "padded": ((3, 3), (1, 1), (1, 1, 1, 1)),
}


@HYPOTHESIS
@given(seed=st.integers(0, 2**16), pool=st.sampled_from(sorted(POOLS)), optimised=st.booleans())
def test_maxpool_relaxation_holds_on_its_range(seed: int, pool: str, optimised: bool) -> None:
    """λ·maxpool(z) ≥ λ'·z + c on [lo, hi], with the chord above and CROWN's or any other
    weights below (invalid weights are made valid)."""
    kernel, strides, pads = POOLS[pool]
    window = make_window(kernel, strides, pads=pads, in_hw=(8, 8))
    node = MaxPool(window, (3, 8, 8), (3, *window.out_hw))
    rng = np.random.default_rng(seed)
    lo = rng.normal(size=(1, *node.in_shape))
    hi = lo + rng.exponential(0.3, size=lo.shape) * rng.integers(0, 2, size=lo.shape)
    lam = rng.normal(size=(2, *node.out_shape))
    taps = node.window.kernel[0] * node.window.kernel[1]
    weights = rng.uniform(-0.2, 1.0, size=(2, *node.out_shape, taps)) if optimised else None
    new, const, *_ = node.relax(lo, hi).back(lam, weights)
    for z in [lo, hi, *(lo + rng.random(lo.shape) * (hi - lo) for _ in range(5))]:
        exact = (lam * node.forward(z)).reshape(2, -1).sum(axis=1)
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
    lo, hi = unit_range(net.graph, state.ranges, net.graph.output, np.arange(int(np.prod(net.output_shape))), x0, eps,
                        None)
    outputs = _sampled_outputs(path, x0, eps, seed)
    slack = 1e-4 * (1 + np.abs(outputs))  # onnxruntime runs in float32
    assert np.all(outputs >= lo - slack) and np.all(outputs <= hi + slack)
    rows = np.random.default_rng(seed).normal(size=(4, *net.output_shape))
    bounds = lower_bounds(net.graph, state.ranges, rows, x0, eps)
    assert np.all(outputs @ rows.reshape(4, -1).T >= bounds - 1e-4 * (1 + np.abs(bounds)))
    for k, (r_lo, r_hi) in state.ranges.items():  # every nonlinear node's input range holds too
        inner = np.stack([net.activations(p[None])[k][0] for p in ball_samples(x0, eps, 50, np.random.default_rng(1))])
        assert np.all(inner >= r_lo - 1e-9) and np.all(inner <= r_hi + 1e-9)


@pytest.mark.parametrize("seed", [0, 1, -1])
def test_unit_rows_on_patches_give_the_dense_bounds(tmp_path: Path, seed: int) -> None:
    """±e_i rows at a feature map travel as patches (``back_substitute``): same bounds as dense
    rows (seed −1: mnist_lenet, two convolutions and max-pools, at its nominal input)."""
    if seed < 0:
        net = load_model(MODELS / "mnist_lenet.onnx")
        x0 = np.load(MODELS / "mnist_lenet_x0.npy")[0]
    else:
        net = load_model(random_conv_net(tmp_path / "net.onnx", seed, size=10))
        x0 = np.random.default_rng(seed).normal(size=net.input_shape)
    state = build_secants(net, x0[None], 0.3)
    for k in range(1, len(net.nodes) + 1):
        shape = net.nodes[k - 1].out_shape
        if len(shape) != 3:
            continue
        units = np.random.default_rng(abs(seed)).permutation(int(np.prod(shape)))[:40]  # any order
        rows = plus_minus_rows(units, shape)
        assert isinstance(rows, Patches)
        patched = lower_bounds(net.graph, state.ranges, rows, x0, 0.3, start=k)
        dense = lower_bounds(net.graph, state.ranges, rows.dense(), x0, 0.3, start=k)
        assert np.allclose(patched, dense, rtol=1e-12, atol=1e-12)
