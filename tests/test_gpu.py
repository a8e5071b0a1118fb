"""CuPy backend: the per-layer method and the global bound on a GPU equal the CPU's (1e-6
relative) and the network's forward pass there matches onnxruntime. Skipped without CuPy and
a CUDA GPU (CI has neither); the device checks run them where a GPU is lent."""
from __future__ import annotations

import json

import numpy as np
import pytest

from onnxlip.importer import load_model
from onnxlip.linalg.backend import select
from onnxlip.bounds.perlayer.engine import global_bound
from onnxlip.bounds.methods import global_bound_on, local_bounds, on_device

from helpers import run_ort
from helpers import MODELS
from cli_runner import run

cp = select("auto")
pytestmark = pytest.mark.skipif(cp is np, reason="needs CuPy and a CUDA GPU")

EPS_GRID = [0.001, 0.01, 0.1, 1.0]


@pytest.mark.parametrize("name", ["mnist_lenet", "cifar10_net", "convnet", "nhwc_tf", "resnet_small"])
def test_gpu_bounds_equal_the_cpu(name: str) -> None:
    net = load_model(MODELS / f"{name}.onnx")
    x0 = np.load(MODELS / f"{name}_x0.npy")[0].astype(np.float64)
    cpu = local_bounds(net, x0, EPS_GRID, "paper", certified=False)  # provable norms compute on the CPU
    gpu = local_bounds(net, x0, EPS_GRID, "paper", certified=False, xp=cp)
    for c, g in zip(cpu, gpu):
        assert g.bound == pytest.approx(c.bound, rel=1e-6)
        assert [layer.method for layer in g.layers] == [layer.method for layer in c.layers]
    assert global_bound_on(net, certified=False, xp=cp).bound == pytest.approx(global_bound(net).bound, rel=1e-6)


@pytest.mark.parametrize("name", ["mnist_lenet", "cifar10_net"])
def test_gpu_forward_matches_onnxruntime(name: str) -> None:
    net = load_model(MODELS / f"{name}.onnx")
    x = np.random.default_rng(0).normal(size=(8, *net.input_shape))
    gpu_net, gpu_x = on_device(net, x, cp)
    ours = cp.asnumpy(gpu_net.forward(gpu_x))
    theirs = run_ort(MODELS / f"{name}.onnx", x).astype(np.float64)
    assert np.max(np.abs(ours - theirs)) <= 1e-4 * (1 + np.max(np.abs(theirs)))


def test_cli_runs_the_paper_method_on_the_gpu() -> None:
    path, x0 = MODELS / "mnist_lenet.onnx", MODELS / "mnist_lenet_x0.npy"
    code, stdout, stderr = run("local", path, "-i", x0, "--eps", "0.001", "--method", "paper", "--device", "gpu",
                               "--estimate", "--json")
    assert code == 0 and "runs on the CPU" not in stderr
    assert json.loads(stdout)["bounds"][0]["bound"] == pytest.approx(361.5, rel=2e-3)
