"""Every shipped model imports and its IR forward matches onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import MODELS_DIR, assert_rel_close
from onnxlip.importer import load_model
from onnxlip.importer.runtime import run_onnx

MODEL_NAMES = sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))
RTOL = 1e-4


def test_reference_networks_are_shipped():
    assert {"mnist_lenet", "cifar10_net"} <= set(MODEL_NAMES)
    for name in MODEL_NAMES:
        assert (MODELS_DIR / f"{name}_x0.npy").is_file(), f"{name} has no nominal input"


@pytest.fixture(scope="module", params=MODEL_NAMES)
def model(request):
    name = request.param
    path = MODELS_DIR / f"{name}.onnx"
    return name, path, load_model(path), np.load(MODELS_DIR / f"{name}_x0.npy")


def test_imports(model):
    name, path, net, x0 = model
    assert net.nodes, name
    assert net.affine_nodes(), "a network without any affine layer"
    assert (1, *net.input_shape) == x0.shape
    assert all(w.startswith("dropped output head") for w in net.warnings)  # sklearn's Softmax/ArgMax
    g = net.graph
    for node, ins in zip(g.nodes, g.inputs):  # the graph is shape-consistent
        expects = getattr(node, "in_shapes", (node.in_shape,) * len(ins))
        assert expects == tuple(g.shape(t) for t in ins), f"{name}: {node.op} expects {expects}"
    assert all(np.all(np.isfinite(getattr(n, "weight", 0))) for n in net.nodes if n.weighted)


def test_forward_matches_onnxruntime_at_x0(model):
    name, path, net, x0 = model
    expected = run_onnx(path, x0, net.output_name)  # the logits, also where a head follows
    assert_rel_close(net.forward(x0.astype(np.float64)), expected, RTOL, f"{name} at x0")


def test_forward_matches_onnxruntime_random(model):
    name, path, net, x0 = model
    rng = np.random.default_rng(sum(map(ord, name)))
    # Random inputs on the scale of the nominal one.
    scale = max(float(np.std(x0)), 1e-3)
    x = (np.mean(x0) + scale * rng.standard_normal((3, *net.input_shape))).astype(np.float32)
    expected = run_onnx(path, x, net.output_name)
    actual = net.forward(x.astype(np.float64))
    assert_rel_close(actual, expected, RTOL, f"{name} on random inputs")
    for k in range(3):  # per sample too: batch handling must not mix samples
        assert_rel_close(actual[k], expected[k], RTOL, f"{name} sample {k}")


def test_float32_network_matches(model):
    """The network cast to float32 (as on a GPU) still matches onnxruntime."""
    name, path, net, x0 = model
    out = net.astype(np.float32).forward(x0.astype(np.float32))
    assert out.dtype == np.float32
    assert_rel_close(out, run_onnx(path, x0, net.output_name), RTOL, f"{name} in float32")
