"""Bound engine: brute-force references, monotonicity, soundness through onnxruntime,
and the paper's published figures on its two networks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxlip.bounds.perlayer.engine import global_bound, local_bound, sweep
from onnxlip.importer import load_model
from onnxlip.graph.nodes import Dense, Relu
from onnxlip.graph.network import Network

from helpers import MODELS, PAPER, max_sampled_ratio
from random_nets import random_conv_net, random_mlp



def _two_layer(seed: int, n: int = 7, h: int = 9, m: int = 4) -> tuple[Network, np.ndarray]:
    rng = np.random.default_rng(seed)
    w1, b1 = rng.standard_normal((h, n)), rng.standard_normal(h)
    w2, b2 = rng.standard_normal((m, h)), rng.standard_normal(m)
    nodes = (Dense(w1, b1, (n,), (h,)), Relu((h,), (h,)), Dense(w2, b2, (h,), (m,)))
    return Network(nodes, (n,)), rng.standard_normal(n)


def _brute_force(net: Network, x0: np.ndarray, eps: float) -> float:
    """The paper's bound written out with dense matrices and numpy.linalg.svd."""
    w1, b1 = net.nodes[0].weight, net.nodes[0].bias
    w2 = net.nodes[2].weight
    y0 = w1 @ x0 + b1
    y_up = y0 + eps * np.linalg.norm(w1, axis=1)
    gap = y_up - y0
    r = np.where(gap > 0, (np.maximum(y_up, 0) - np.maximum(y0, 0)) / np.where(gap > 0, gap, 1), 0)
    d = (y_up > 0).astype(float)
    first = np.linalg.svd(r[:, None] * w1, compute_uv=False)[0]
    second = np.linalg.svd(w2 * d[None, :], compute_uv=False)[0]
    return first * second


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("eps", [1e-3, 0.3, 3.0])
def test_dense_two_layer_matches_brute_force(seed: int, eps: float) -> None:
    net, x0 = _two_layer(seed)
    assert local_bound(net, x0, eps).bound == pytest.approx(_brute_force(net, x0, eps), rel=1e-10)


def test_global_bound_of_dense_chain_is_product_of_norms() -> None:
    net, _ = _two_layer(0)
    expected = np.linalg.norm(net.nodes[0].weight, 2) * np.linalg.norm(net.nodes[2].weight, 2)
    assert global_bound(net).bound == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("name", ["mnist_lenet", "convnet", "batchnorm_net", "nhwc_tf"])
def test_local_bound_grows_with_eps_and_stays_below_global(name: str) -> None:
    net = load_model(MODELS / f"{name}.onnx")
    x0 = np.load(MODELS / f"{name}_x0.npy")[0].astype(np.float64)
    grid = np.geomspace(1e-4, 30, 12)
    bounds = [r.bound for r in sweep(net, x0, list(grid))]
    assert all(b2 >= b1 * (1 - 1e-6) for b1, b2 in zip(bounds, bounds[1:]))
    assert bounds[-1] <= global_bound(net).bound * (1 + 1e-6)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), eps=st.floats(1e-3, 3.0), pool=st.booleans())
def test_sampled_ratios_never_exceed_local_bound(tmp_path: Path, seed: int, eps: float, pool: bool) -> None:
    path = random_conv_net(tmp_path / f"net{seed}.onnx", seed, pool=pool)
    net = load_model(path)
    x0 = np.random.default_rng(seed).uniform(0, 1, net.input_shape)
    bound = local_bound(net, x0, eps).bound
    # float32 in onnxruntime: allow its rounding, relative to the output scale
    assert max_sampled_ratio(path, net, x0, eps, 200, seed) <= bound * (1 + 1e-4) + 1e-3 / eps


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), eps=st.floats(1e-2, 5.0))
def test_sampled_ratios_on_mlps(tmp_path: Path, seed: int, eps: float) -> None:
    path = random_mlp(tmp_path / f"mlp{seed}.onnx", seed)
    net = load_model(path)
    x0 = np.random.default_rng(seed).standard_normal(net.input_shape)
    bound = local_bound(net, x0, eps).bound
    assert max_sampled_ratio(path, net, x0, eps, 300, seed) <= bound * (1 + 1e-4) + 1e-3 / eps


@pytest.mark.parametrize("name", ["mnist_lenet", "cifar10_net"])
def test_reproduces_paper_local_bounds(name: str) -> None:
    """Never below the paper's (100 power steps undershoot) and within 1% of it."""
    net = load_model(MODELS / f"{name}.onnx")
    x0 = np.load(MODELS / f"{name}_x0.npy")[0].astype(np.float64)
    paper = PAPER[name]["local_bound"]
    for result, published in zip(sweep(net, x0, paper["eps"]), paper["bound"]):
        assert published <= result.bound <= published * 1.01


@pytest.mark.parametrize("name", ["mnist_lenet", "cifar10_net"])
def test_reproduces_paper_global_bounds(name: str) -> None:
    bound = global_bound(load_model(MODELS / f"{name}.onnx")).bound
    assert PAPER[name]["global_bound"] <= bound <= PAPER[name]["global_bound"] * 1.01
