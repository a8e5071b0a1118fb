"""Certified radius: the paper's figures, margin folding, tight mode, and the attacks' side."""
from __future__ import annotations

import numpy as np
import pytest

from onnxlip.importer import load_model
from onnxlip.robustness.radius import certified_radius
from onnxlip.robustness.attacks import min_adversarial_distance
from onnxlip.importer.runtime import run_onnx

from random_nets import ball_samples
from helpers import MODELS, PAPER


@pytest.fixture(scope="module")
def mnist() -> tuple:
    net = load_model(MODELS / "mnist_lenet.onnx")
    x0 = np.load(MODELS / "mnist_lenet_x0.npy")[0].astype(np.float64)
    return net, x0, certified_radius(net, x0)


def test_mnist_matches_and_beats_the_paper(mnist: tuple) -> None:
    _, _, r = mnist
    assert r.label == PAPER["mnist_lenet"]["label"]
    assert r.radius_paper >= PAPER["mnist_lenet"]["certified_radius"]["local"]
    assert r.radius_global == pytest.approx(0.000352, rel=0.01)  # not the paper's slip, 0.000512
    assert r.radius_folded >= 0.09
    assert r.radius_tight >= max(r.radius_folded, 0.255)  # max-pool ReLU trees, optimised lines, focused ranges: 0.258
    assert r.radius == max(r.radius_paper, r.radius_folded, r.radius_tight, r.radius_global)


def test_mnist_radius_below_the_smallest_adversarial_distance(mnist: tuple) -> None:
    net, x0, r = mnist
    attack = min_adversarial_distance(net, x0)
    assert attack.found and r.radius < attack.distance


def test_mnist_points_inside_the_radius_keep_their_label(mnist: tuple) -> None:
    net, x0, r = mnist
    points = ball_samples(x0, r.radius, 200, np.random.default_rng(0))
    labels = run_onnx(net.source, points, net.output_name).argmax(axis=1)
    assert np.all(labels == r.label)


def test_cifar_folding_beats_the_paper_radius() -> None:
    net = load_model(MODELS / "cifar10_net.onnx")
    x0 = np.load(MODELS / "cifar10_net_x0.npy")[0].astype(np.float64)
    r = certified_radius(net, x0, method="paper")
    assert r.label == PAPER["cifar10_net"]["label"]
    assert r.radius_folded >= 1.5 * r.radius_paper
    assert r.radius_tight is None and r.method == "margin-folding"


def test_mnist_certified_mode_radius(mnist: tuple) -> None:
    """Provable norms (the CLI's default): still beats margin folding, equals the estimate-mode
    radius to the search's tolerance (the estimate search that guides it starts from other
    proven radii) and keeps labels in onnxruntime."""
    net, x0, estimate = mnist
    r = certified_radius(net, x0, certified=True)
    assert r.certified and not estimate.certified
    assert r.radius_folded <= r.radius and r.radius_tight > 1.2 * r.radius_folded
    assert r.radius == pytest.approx(estimate.radius, rel=2e-3)
    points = ball_samples(x0, r.radius, 100, np.random.default_rng(1))
    assert np.all(run_onnx(net.source, points, net.output_name).argmax(axis=1) == r.label)


@pytest.mark.parametrize("name", ["mlp", "convnet", "batchnorm_net"])
def test_small_models_radius_below_attack(name: str) -> None:
    net = load_model(MODELS / f"{name}.onnx")
    x0 = np.load(MODELS / f"{name}_x0.npy")[0].astype(np.float64)
    r = certified_radius(net, x0)
    attack = min_adversarial_distance(net, x0)
    assert 0 < r.radius and (not attack.found or r.radius < attack.distance)


def test_wrong_label_gives_zero_radius() -> None:
    net = load_model(MODELS / "mlp.onnx")
    x0 = np.load(MODELS / "mlp_x0.npy")[0].astype(np.float64)
    label = int(np.argmin(net.forward(x0[None])[0]))
    r = certified_radius(net, x0, label=label)
    assert r.radius == 0 and r.margin < 0


def test_branching_proves_a_radius_the_relaxation_cannot(mnist: tuple) -> None:
    """mnist_lenet at 0.266 (ball only): the optimised relaxation, the secant test and focused
    ranges fail, branch and bound on ReLU splits (from the focused ranges) proves it, and PGD
    inside that ball finds nothing."""
    from onnxlip.robustness.attacks import pgd_l2
    from onnxlip.robustness.radius import _tight_holds

    net, x0, r = mnist
    acts = net.activations(x0)
    y0 = np.asarray(acts[-1][0]).reshape(-1)
    assert r.radius < 0.266
    assert not _tight_holds(net, x0, 0.266, acts, y0, r.label)
    assert _tight_holds(net, x0, 0.266, acts, y0, r.label, branch_seconds=60)
    assert not pgd_l2(net, x0, 0.266, r.label, steps=40, restarts=8).found


def test_branching_in_the_radius_search() -> None:
    net = load_model(MODELS / "mlp.onnx")
    x0 = np.load(MODELS / "mlp_x0.npy")[0].astype(np.float64)
    plain, branched = certified_radius(net, x0), certified_radius(net, x0, branch_seconds=0.5)
    assert branched.branch_seconds == 0.5 and branched.radius >= plain.radius
    assert branched.method in ("tight", "tight+branching")
    assert branched.radius < min_adversarial_distance(net, x0).distance


def test_best_skips_the_tight_tests_where_a_secant_bound_is_unaffordable(monkeypatch) -> None:
    """A network too large for the secant bound gets the per-layer radius, and says why."""
    import onnxlip.bounds.methods as methods

    net = load_model(MODELS / "mnist_lenet.onnx")
    x0 = np.load(MODELS / "mnist_lenet_x0.npy")[0]
    monkeypatch.setattr(methods, "TIGHT_MAX_WORK", 1.0)
    r = certified_radius(net, x0)
    assert r.radius_tight is None and r.method in ("paper", "margin-folding", "global")
    assert r.choice["method"] == "paper" and "skipped" in r.choice["reason"]
    assert r.radius == max(r.radius_paper, r.radius_folded or 0.0, r.radius_global)


def test_past_a_failed_secant_test_focus_goes_first_with_the_same_answer(mnist: tuple, monkeypatch) -> None:
    """Once the secant test failed at some radius, a test at a larger one tries focused ranges
    first and runs the secant test only if they fail: same answers, fewer secant tests."""
    from onnxlip.robustness import radius as R

    net, x0, r = mnist
    acts = net.activations(x0)
    y0 = np.asarray(acts[-1][0]).reshape(-1)
    calls = []
    secant = R._secant_holds
    monkeypatch.setattr(R, "_secant_holds", lambda *a: calls.append(a[2]) or secant(*a))
    memory = R.TightMemory()
    assert not R._tight_holds(net, x0, 0.262, acts, y0, r.label, memory=memory)
    assert memory.secant_fails == 0.262 and calls == [0.262]
    memory.secant_fails = 0.24  # as if it had failed there: at 0.25 the plain relaxation fails,
    # focused ranges prove the radius, so no secant test runs
    assert R._tight_holds(net, x0, 0.25, acts, y0, r.label, memory=memory) and calls == [0.262]
    assert R._tight_holds(net, x0, 0.263, acts, y0, r.label, memory=memory) is False
    assert calls[-1] == 0.263  # focus failed, so the secant test ran after it
