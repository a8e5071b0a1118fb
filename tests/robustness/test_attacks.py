"""Lower bounds and attacks: exact on linear maps, under the layer-norm product, and on MNIST."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxlip.robustness.attacks import deepfool, fgsm, min_adversarial_distance, pgd_l2
from onnxlip.robustness.lower_bounds import ascent_lower_bound, jacobian_lower_bound, lower_bound, random_lower_bound
from onnxlip.errors import InputError
from onnxlip.importer import load_model
from onnxlip.graph.nodes import Dense, Relu
from onnxlip.graph.network import Network

MODELS = Path(__file__).resolve().parents[2] / "models"
TIGHT = 1 + 1e-9  # float64 room on "≤" comparisons


def linear_net(w: np.ndarray, b: np.ndarray) -> Network:
    """y = W x + b as a one-node IR network."""
    return Network((Dense(w, b, (w.shape[1],), (w.shape[0],)),), (w.shape[1],))


def mlp_net(weights: list[np.ndarray], biases: list[np.ndarray]) -> Network:
    """Dense/Relu chain (no Relu after the last layer)."""
    nodes: list = []
    for k, (w, b) in enumerate(zip(weights, biases)):
        nodes.append(Dense(w, b, (w.shape[1],), (w.shape[0],)))
        if k < len(weights) - 1:
            nodes.append(Relu((w.shape[0],), (w.shape[0],)))
    return Network(tuple(nodes), (weights[0].shape[1],))


def test_linear_lower_bounds_reach_the_spectral_norm(rng: np.random.Generator) -> None:
    w, b = rng.standard_normal((4, 7)), rng.standard_normal(4)
    net, x0, norm = linear_net(w, b), rng.standard_normal(7), np.linalg.norm(w, 2)
    for eps in (1e-3, 1.0):
        jac = jacobian_lower_bound(net, x0, eps)
        assert jac.value == pytest.approx(norm, rel=1e-9)
        assert random_lower_bound(net, x0, eps).value <= norm * TIGHT
        ascent = ascent_lower_bound(net, x0, eps)
        assert norm * (1 - 1e-6) <= ascent.value <= norm * TIGHT
        assert np.linalg.norm(ascent.point - x0) <= eps * TIGHT
        best = lower_bound(net, x0, eps)
        assert best.value == pytest.approx(norm, rel=1e-6) and best.jacobian == pytest.approx(norm, rel=1e-9)


def test_linear_classifier_min_distance_is_the_boundary_distance(rng: np.random.Generator) -> None:
    w, b = rng.standard_normal((2, 5)), rng.standard_normal(2)
    net, x0 = linear_net(w, b), rng.standard_normal(5)
    y = w @ x0 + b
    c = int(np.argmax(y))
    exact = (y[c] - y[1 - c]) / np.linalg.norm(w[c] - w[1 - c])
    for attack in (min_adversarial_distance(net, x0), fgsm(net, x0), deepfool(net, x0)):
        assert attack.label == c and attack.adv_label == 1 - c
        assert attack.distance == pytest.approx(np.linalg.norm(attack.point - x0), rel=1e-12)
        assert exact * (1 - 1e-9) <= attack.distance <= exact * 1.03 + 1e-2
    assert not pgd_l2(net, x0, 0.95 * exact).found
    assert pgd_l2(net, x0, 1.05 * exact + 1e-2).found


def test_unchangeable_label_finds_nothing() -> None:
    net = linear_net(np.zeros((3, 4)), np.array([0.0, 1.0, 0.0]))
    attack = min_adversarial_distance(net, np.ones(4))
    assert not attack.found and attack.distance == np.inf and attack.label == 1
    assert lower_bound(net, np.ones(4), 0.1).value == 0.0


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=3), classes=st.integers(2, 4),
       seed=st.integers(0, 2**16), eps=st.floats(1e-3, 3.0))
def test_lower_bounds_stay_under_the_layer_norm_product(sizes: list[int], classes: int, seed: int,
                                                         eps: float) -> None:
    rng = np.random.default_rng(seed)
    dims = [*sizes, classes]
    weights = [rng.standard_normal((o, i)) for i, o in zip(dims[:-1], dims[1:])]
    net = mlp_net(weights, [rng.standard_normal(o) for o in dims[1:]])
    x0 = rng.standard_normal(dims[0])
    product = float(np.prod([np.linalg.norm(w, 2) for w in weights]))
    best = lower_bound(net, x0, eps, n_random=32, steps=10, restarts=4, n_jacobian=4, seed=seed)
    assert 0.0 <= best.value <= product * TIGHT and best.jacobian <= product * TIGHT
    assert np.linalg.norm(best.point - x0) <= eps * TIGHT
    y = net.forward(x0[None])[0]
    margin = np.sort(y)[-1] - np.sort(y)[-2]
    attack = min_adversarial_distance(net, x0, steps=10, restarts=2, bisections=4, ddn_steps=30)
    assert attack.distance * TIGHT >= margin / (np.sqrt(2) * product)


@pytest.fixture(scope="module")
def mnist() -> tuple[Network, np.ndarray]:
    return load_model(MODELS / "mnist_lenet.onnx"), np.load(MODELS / "mnist_lenet_x0.npy")


def test_mnist_lower_bounds_reach_the_jacobian_norm(mnist: tuple[Network, np.ndarray]) -> None:
    net, x0 = mnist
    best = lower_bound(net, x0, 1e-3)
    assert best.value >= 40 and best.jacobian >= 45  # ‖J(x0)‖₂ ≈ 45.5
    assert best.value <= 361.6  # the paper's local upper bound at ε = 0.001
    assert np.linalg.norm(best.point - x0.reshape(net.input_shape)) <= 1e-3 * TIGHT


def test_mnist_gradient_lower_bound_reaches_the_papers_over_its_grid(mnist: tuple[Network, np.ndarray]) -> None:
    """Issue #6: the largest Jacobian norm sampled over the paper's ε grid is ≥ its 46.52."""
    from helpers import PAPER

    net, x0 = mnist
    grid = PAPER["mnist_lenet"]["local_bound"]["eps"]
    assert max(lower_bound(net, x0, eps).jacobian for eps in grid) >= PAPER["mnist_lenet"]["lower_bound_gradient_max"]


def test_mnist_min_adversarial_distance_beats_the_paper(mnist: tuple[Network, np.ndarray]) -> None:
    net, x0 = mnist
    attack = min_adversarial_distance(net, x0)
    assert attack.label == 8 and attack.adv_label != 8
    assert attack.distance <= 3.94  # the paper's best attack (gradient ascent)
    assert attack.distance == pytest.approx(np.linalg.norm(attack.point - x0.reshape(net.input_shape)))
    session = ort.InferenceSession(str(MODELS / "mnist_lenet.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    y = session.run(None, {name: attack.point[None].astype(np.float32)})[0][0]
    others = np.delete(y, 8)
    assert others.max() - y[8] > 1e-4  # misclassified in float32 too, with room for rounding


def test_wide_output_uses_lanczos(rng: np.random.Generator) -> None:
    w = rng.standard_normal((80, 30))  # more outputs than the exact-SVD path takes
    net = linear_net(w, np.zeros(80))
    value = jacobian_lower_bound(net, rng.standard_normal(30), 0.1).value
    assert value == pytest.approx(np.linalg.norm(w, 2), rel=1e-8) and value <= np.linalg.norm(w, 2) * (1 + 1e-12)


def test_default_jacobian_points_follow_the_network_size() -> None:
    from onnxlip.robustness.lower_bounds import JACOBIAN_POINTS, JACOBIAN_POINTS_LARGE, default_jacobian_points

    assert default_jacobian_points(linear_net(np.ones((10, 10)), np.zeros(10))) == JACOBIAN_POINTS
    huge = np.broadcast_to(1.0, (20000, 10000))  # 2e8 multiply-adds, no memory
    assert default_jacobian_points(linear_net(huge, np.zeros(20000))) == JACOBIAN_POINTS_LARGE


def test_given_label_already_wrong_gives_distance_zero(rng: np.random.Generator) -> None:
    net = linear_net(np.eye(3), np.zeros(3))
    x0 = np.array([3.0, 1.0, 0.0])
    attack = min_adversarial_distance(net, x0, label=1)
    assert attack.distance == 0.0 and attack.adv_label == 0


def test_radius_must_be_positive() -> None:
    with pytest.raises(InputError):
        lower_bound(linear_net(np.eye(2), np.zeros(2)), np.zeros(2), 0.0)
