"""Inputs cut by a box of valid values (``domain``): the concretization against a convex solver,
relaxation bounds and ranges against onnxruntime on the ball ∩ box, and the radius it certifies."""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from onnxlip.importer import load_model
from onnxlip.robustness.radius import certified_radius
from onnxlip.robustness.attacks import min_adversarial_distance, pgd_l2
from onnxlip.bounds.relax.backsub import lower_bounds
from onnxlip.bounds.domain import InputBox, InputRange, ball_box, checked_box, concretize
from onnxlip.errors import InputError
from onnxlip.bounds.relax.slopes import optimise
from onnxlip.bounds.tight.chain import build_secants

from helpers import run_ort
from random_nets import ball_samples, random_conv_net, random_mlp
from helpers import MODELS

HYPOTHESIS = settings(max_examples=25, deadline=None)
# mnist_lenet's inputs are pixels in [0, 1] normalised by (x − 0.1307) / 0.3081.
MNIST_RANGE = ((0 - 0.1307) / 0.3081, (1 - 0.1307) / 0.3081)


def _random_box(rng: np.random.Generator, x0: np.ndarray) -> InputBox:
    """A box around x0 with a third of its elements on a face (x0 at lo or hi), as image pixels are."""
    lo, hi = x0 - rng.uniform(0, 1, x0.shape), x0 + rng.uniform(0, 1, x0.shape)
    face = rng.integers(0, 3, x0.shape)
    return InputBox(np.where(face == 1, x0, lo), np.where(face == 2, x0, hi))


def _into(box: InputBox, points: np.ndarray) -> np.ndarray:
    """Points of the ball clipped into the box: still in the ball (x0 is in the box)."""
    return np.clip(points, box.lo, box.hi)


@HYPOTHESIS
@given(seed=st.integers(0, 2**16), n=st.integers(1, 8), eps=st.floats(0.01, 3.0))
def test_concretize_is_the_minimum_over_ball_and_box(seed: int, n: int, eps: float) -> None:
    """Never above a feasible point's value, never below the ball's closed form, and attained by
    its minimiser, which is feasible: so it is the minimum itself."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n)
    box = _random_box(rng, x0)
    lam = rng.normal(size=(4, n)) * (rng.random((4, n)) < 0.8)
    value, x, error = concretize(lam, x0, eps, box.lo, box.hi)
    ball, _, _ = concretize(lam, x0, eps)
    assert np.all(value >= ball - 1e-12 * (1 + np.abs(ball)))
    assert np.all(error >= 0) and np.all(error < 1e-10 * (1 + np.abs(value)))
    assert np.all((x >= box.lo) & (x <= box.hi))
    assert np.all(np.linalg.norm(x - x0, axis=1) <= eps * (1 + 1e-9))
    reached = np.sum(lam * x, axis=1)  # the minimiser's value: above the bound, and close to it
    assert np.all(reached >= value - 1e-12 * (1 + np.abs(value)))
    assert np.all(reached - value <= 1e-6 * (1 + np.abs(value)))
    points = _into(box, ball_samples(x0, eps, 200, rng))
    assert np.all(points @ lam.T >= value - error - 1e-12)


def test_concretize_uses_the_corner_when_the_box_is_inside_the_ball() -> None:
    x0 = np.array([0.0, 0.0])
    value, x, _ = concretize(np.array([[1.0, -2.0]]), x0, 10.0, np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    assert value[0] == -3.0 and np.array_equal(x[0], [-1.0, 1.0])


def test_checked_box_takes_in_rounding_and_refuses_the_rest() -> None:
    x0 = np.array([[-0.42421296, 0.5, 2.8214867]], dtype=np.float32)
    box = checked_box(x0, *MNIST_RANGE)  # x0 is a float32 rounding of the exact bounds
    assert np.all(box.lo <= x0) and np.all(box.hi >= x0) and box.lo.shape == x0.shape
    with pytest.raises(InputError, match="outside the input range at element 0"):
        checked_box(x0, -0.4, 3.0)
    with pytest.raises(InputError, match="lo < hi"):
        checked_box(x0, 1.0, 1.0)
    with pytest.raises(InputError, match="finite"):
        checked_box(x0, -np.inf, 1.0)
    lo, hi = ball_box(np.zeros((1, 3)), 0.5, InputBox(np.zeros((1, 3)), np.ones((1, 3))))
    assert np.array_equal(lo, np.zeros((1, 3))) and np.array_equal(hi, np.full((1, 3), 0.5))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["conv", "mlp"]), optimised=st.booleans())
@example(seed=12900, kind="mlp", optimised=False)
def test_relaxation_on_the_box_holds_on_onnxruntime(tmp_path_factory: pytest.TempPathFactory, seed: int, kind: str,
                                                    optimised: bool) -> None:
    """Ranges and margin-style bounds built for ball ∩ box: every onnxruntime output there is
    above the bound, the box never lowers the bound on the same ranges, and the ranges contain
    the IR's values. (Across different ranges there is no order: CROWN's default lower slopes
    depend on the ranges, and seed 12900 gives −9.920 with the box's ranges, −9.716 with the
    ball's.)"""
    path = tmp_path_factory.mktemp("net") / "net.onnx"
    (random_conv_net if kind == "conv" else random_mlp)(path, seed)
    net = load_model(path)
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=net.input_shape)
    box = _random_box(rng, x0[None])
    eps = float(rng.uniform(0.2, 1.5))
    boxed, plain = build_secants(net, x0[None], eps, box=box), build_secants(net, x0[None], eps)
    rows = rng.normal(size=(3, *net.output_shape))
    lines = optimise(net.graph, boxed.ranges, rows, x0, eps, box=box) if optimised else None
    bound = lower_bounds(net.graph, boxed.ranges, rows, x0, eps, lines, box)
    on_ball = lower_bounds(net.graph, boxed.ranges, rows, x0, eps, lines)
    assert np.all(bound >= on_ball - 1e-9 * (1 + np.abs(on_ball)))
    on_ball = lower_bounds(net.graph, plain.ranges, rows, x0, eps)
    assert np.all(lower_bounds(net.graph, plain.ranges, rows, x0, eps, box=box) >= on_ball - 1e-9 * (1 + np.abs(on_ball)))
    points = _into(box, ball_samples(x0, eps, 300, rng))
    outputs = run_ort(path, points).reshape(len(points), -1).astype(np.float64) @ rows.reshape(3, -1).T
    assert np.all(outputs >= bound - 1e-4 * (1 + np.abs(bound)))  # onnxruntime runs in float32
    acts = net.activations(points)
    for k, (lo, hi) in boxed.ranges.items():
        assert np.all(acts[k] >= lo - 1e-9) and np.all(acts[k] <= hi + 1e-9)


@pytest.fixture(scope="module")
def mnist_in_pixels() -> tuple:
    net = load_model(MODELS / "mnist_lenet.onnx")
    x0 = np.load(MODELS / "mnist_lenet_x0.npy")[0].astype(np.float64)
    box = checked_box(x0, *MNIST_RANGE)
    return net, x0, box, certified_radius(net, x0, box=box)


def test_mnist_radius_in_the_pixel_range(mnist_in_pixels: tuple) -> None:
    """The valid-pixel radius beats the ball's (0.244) and passes 0.26; the label holds on
    onnxruntime at points of the ball ∩ box, and PGD inside the box finds nothing there."""
    net, x0, box, r = mnist_in_pixels
    assert r.in_box and r.method == "tight" and r.radius >= 0.26
    rng = np.random.default_rng(0)
    points = _into(box, ball_samples(x0, r.radius, 400, rng))
    labels = run_ort(MODELS / "mnist_lenet.onnx", points).reshape(len(points), -1).argmax(axis=1)
    assert np.all(labels == r.label)
    assert not pgd_l2(net, x0, r.radius, r.label, steps=40, restarts=8, box=box).found


def test_attacks_stay_in_the_box(mnist_in_pixels: tuple) -> None:
    net, x0, box, r = mnist_in_pixels
    found = min_adversarial_distance(net, x0, r.label, ddn_steps=100, box=box)
    assert found.found and found.distance > r.radius
    assert np.all(found.point >= box.lo) and np.all(found.point <= box.hi)


def test_input_range_normalises_per_channel() -> None:
    cifar = InputRange(0.0, 1.0, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    lo, hi = cifar.bounds((3, 32, 32))
    assert lo.shape == (3, 32, 32) and lo[:, 5, 7] == pytest.approx([-1.98947, -1.98029, -1.70680], abs=1e-5)
    x0 = np.load(MODELS / "cifar10_net_x0.npy")[0]
    assert np.all(cifar.box(x0).lo <= x0) and np.all(cifar.box(x0).hi >= x0)
    lo, hi = InputRange(0.0, 1.0, (0.1, 0.2, 0.3), (2.0,)).bounds((12, 12, 3))  # channels last
    assert lo[4, 4] == pytest.approx([-0.05, -0.1, -0.15]) and hi[0, 0] == pytest.approx([0.45, 0.4, 0.35])
    with pytest.raises(InputError, match="neither its first nor its last axis"):
        cifar.bounds((1, 28, 28))
    with pytest.raises(InputError, match="positive"):
        InputRange(0.0, 1.0, (0.0,), (0.0,)).bounds((4,))


def test_box_attack_when_clipping_undoes_the_starts() -> None:
    """convnet in [0, 1]: DeepFool's and FGSM's points lose their flip once clipped; PGD inside the
    box still finds one, above the radius certified there."""
    net = load_model(MODELS / "convnet.onnx")
    x0 = np.load(MODELS / "convnet_x0.npy")[0].astype(np.float64)
    box = InputRange(0.0, 1.0).box(x0)
    found = min_adversarial_distance(net, x0, box=box, ddn_steps=50)
    assert found.found and np.all(found.point >= 0.0) and np.all(found.point <= 1.0)
    assert found.distance > certified_radius(net, x0, box=box).radius


def test_overflow_gives_minus_infinity_not_nan() -> None:
    x0, lo, hi = np.zeros(2), -np.ones(2), np.ones(2)
    value, _, error = concretize(np.array([[1e200, 1e-150], [1.0, 2.0]]), x0, 0.5, lo, hi)
    assert value[0] == -np.inf and error[0] == 0 and np.isfinite(value[1])
    assert concretize(np.array([[1.0, 2.0]]), x0, 1e300, lo, hi)[0][0] <= -3.0  # eps² overflows: no exception


def test_radius_stops_at_the_box() -> None:
    """A box small enough to be certified whole: the tight radius is the distance to its farthest
    corner, not the end of an endless doubling (the paper-style one holds on the whole ball)."""
    net = load_model(MODELS / "mlp.onnx")
    x0 = np.load(MODELS / "mlp_x0.npy")[0].astype(np.float64)
    box = checked_box(x0, x0 - 0.01, x0 + 0.01)
    r = certified_radius(net, x0, box=box, branch_seconds=0.5)
    assert r.radius_tight == pytest.approx(0.01 * np.sqrt(x0.size), rel=1e-9)
    assert r.radius_folded <= r.radius_tight * (1 + 1e-9) and r.radius == max(r.radius_paper, r.radius_tight)
