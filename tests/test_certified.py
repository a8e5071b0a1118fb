"""Certified mode: provable layer norms, never below the estimate, equal where exact."""
from __future__ import annotations

import numpy as np
import pytest

from onnxlip import global_bound, load_model, local_bound
from onnxlip.certified_norms import circulant_bound, exact_certified, l1_linf_bound
from onnxlip.ir import Conv

from .test_bounds import MODELS


def _model(name: str) -> tuple:
    return load_model(MODELS / f"{name}.onnx"), np.load(MODELS / f"{name}_x0.npy")[0].astype(np.float64)


@pytest.mark.parametrize("name", ["mlp", "convnet", "batchnorm_net", "nhwc_tf", "normalized_conv", "mnist_lenet"])
@pytest.mark.parametrize("eps", [1e-3, 0.3])
def test_certified_local_is_at_least_the_estimate(name: str, eps: float) -> None:
    net, x0 = _model(name)
    certified = local_bound(net, x0, eps, certified=True)
    estimate = local_bound(net, x0, eps)
    assert certified.bound >= estimate.bound * (1 - 1e-12)
    assert all(layer.method in ("exact", "circulant", "l1-linf", "closed-form") for layer in certified.layers)


def test_mnist_certified_equals_estimate() -> None:
    """Every MNIST layer fits the exact path: certification costs only rounding slack."""
    net, x0 = _model("mnist_lenet")
    for eps in (1e-3, 0.24):
        certified, estimate = local_bound(net, x0, eps, certified=True).bound, local_bound(net, x0, eps).bound
        assert estimate <= certified <= estimate * (1 + 1e-6)


@pytest.mark.parametrize("name", ["convnet", "cifar10_net"])
def test_certified_global_bound_close_to_estimate(name: str) -> None:
    net, _ = _model(name)
    certified, estimate = global_bound(net, certified=True).bound, global_bound(net).bound
    assert estimate <= certified <= estimate * 1.5


def test_bounds_against_dense_svd() -> None:
    rng = np.random.default_rng(0)
    m = rng.standard_normal((40, 25))
    exact = np.linalg.norm(m, 2)
    assert exact <= exact_certified(m) <= exact * (1 + 1e-10)


@pytest.mark.parametrize("name", ["convnet", "mnist_lenet"])
def test_circulant_and_l1_linf_bound_every_conv(name: str) -> None:
    net, _ = _model(name)
    for node in net.nodes:
        if isinstance(node, Conv):
            dense = node.linear(np.eye(int(np.prod(node.in_shape))).reshape(-1, *node.in_shape))
            exact = np.linalg.norm(dense.reshape(len(dense), -1), 2)
            ones_out, ones_in = np.ones(node.out_shape), np.ones(node.in_shape)
            assert circulant_bound(node) >= exact * (1 - 1e-12)
            assert l1_linf_bound(node, ones_out, ones_in) >= exact * (1 - 1e-12)


def test_cli_certified_flag_reports_provable_layers() -> None:
    import json

    from typer.testing import CliRunner

    from onnxlip.cli import app

    path, x0 = str(MODELS / "convnet.onnx"), str(MODELS / "convnet_x0.npy")
    result = CliRunner().invoke(app, ["local", path, "-i", x0, "-e", "0.01", "--certified", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["certified"] and not data["bounds"][0]["estimate"]
    assert all(layer["method"] != "lanczos" for layer in data["layers"])
    result = CliRunner().invoke(app, ["global", path, "--certified"])
    assert result.exit_code == 0 and "slack" in result.stdout
