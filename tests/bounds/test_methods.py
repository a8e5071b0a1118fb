"""best's cost model: what it runs, and why, from the network's size and its unstable units."""
from __future__ import annotations

import numpy as np
import pytest

from onnxlip.bounds import methods
from onnxlip.bounds.perlayer.engine import local_bound
from onnxlip.importer import load_model

from cli_runner import MODELS, run_json


def test_small_networks_run_the_secant_bound() -> None:
    choice = methods.choose(0.01, 2.88e5, 172)
    assert choice.method == "tight" and "172 unstable units" in choice.reason


def test_imagenet_size_networks_skip_it_and_say_why() -> None:
    # AlexNet-shaped: 7.15e8 multiply-adds per pass, 43953 unstable units at eps = 0.01
    choice = methods.choose(0.01, 7.15e8, 43953)
    assert choice.method == "paper"
    assert "secant bound skipped" in choice.reason and "--method tight" in choice.reason
    assert choice.work == pytest.approx(7.15e8 * (43953 + methods.TIGHT_BASE_PASSES))


def test_work_grows_with_unstable_units() -> None:
    assert methods.tight_work(1e6, 0) < methods.tight_work(1e6, 10) < methods.tight_work(2e6, 10)


def test_best_falls_back_on_the_interval_per_layer_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    net = load_model(MODELS / "mnist_lenet.onnx")
    x0 = np.load(MODELS / "mnist_lenet_x0.npy")
    monkeypatch.setattr(methods, "TIGHT_MAX_WORK", 0.0)
    run = methods.run_local(net, x0, [0.01])
    assert run.choices[0].method == "paper"
    assert run.results[0].bound == pytest.approx(local_bound(net, x0, 0.01, certified=True, interval=True).bound, rel=1e-12)


def test_cli_reports_the_choice() -> None:
    data = run_json("local", MODELS / "mnist_lenet.onnx", "-i", MODELS / "mnist_lenet_x0.npy", "--eps", "0.01", "--estimate")
    assert [c["method"] for c in data["choices"]] == ["tight"] and data["bounds"][0]["bound"] == pytest.approx(68.8944, rel=1e-5)
    proven = run_json("local", MODELS / "mnist_lenet.onnx", "-i", MODELS / "mnist_lenet_x0.npy", "--eps", "0.01")
    assert proven["certified"] and not proven["bounds"][0]["estimate"]
    # more segments formed explicitly: no looser than the estimate, above gradient ascent's 45.35
    assert 45.35 <= proven["bounds"][0]["bound"] <= data["bounds"][0]["bound"] * (1 + 1e-2)
    paper = run_json("local", MODELS / "mnist_lenet.onnx", "-i", MODELS / "mnist_lenet_x0.npy", "--eps", "0.01",
                     "--method", "paper")
    assert paper["choices"] == []


def test_check_method_names_the_option() -> None:
    assert methods.check_method(None) == methods.DEFAULT_METHOD
    with pytest.raises(Exception, match="--method must be one of best, tight, paper, got 'x'"):
        methods.check_method("x", "--method")


def test_cli_says_when_best_skips_the_secant_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli_runner import run

    monkeypatch.setattr(methods, "TIGHT_MAX_WORK", 0.0)  # as on an ImageNet-size network
    args = ("local", MODELS / "mnist_lenet.onnx", "-i", MODELS / "mnist_lenet_x0.npy", "--eps", "0.01")
    code, stdout, _ = run(*args)
    assert code == 0 and "method best at eps=0.01: per-layer bound only (secant bound skipped" in stdout
    data = run_json(*args)
    assert data["choices"][0]["method"] == "paper" and "--method tight runs it anyway" in data["choices"][0]["reason"]
    net = load_model(MODELS / "mnist_lenet.onnx")
    per_layer = local_bound(net, np.load(MODELS / "mnist_lenet_x0.npy"), 0.01, certified=True, interval=True).bound
    assert data["bounds"][0]["bound"] == pytest.approx(per_layer, rel=1e-9)


def test_cli_writes_heartbeats_to_a_log(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from onnxlip.cli import progress

    from cli_runner import run

    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.01)
    slow = methods.run_local
    monkeypatch.setattr(methods, "run_local", lambda *a, **k: (time.sleep(0.1), slow(*a, **k))[1])
    code, _, stderr = run("local", MODELS / "mlp.onnx", "-i", MODELS / "mlp_x0.npy", "--eps", "0.1", "--json")
    assert code == 0 and "onnxlip: local bounds — " in stderr and "s elapsed" in stderr
    code, _, stderr = run("local", MODELS / "mlp.onnx", "-i", MODELS / "mlp_x0.npy", "--eps", "0.1", "--quiet")
    assert code == 0 and "onnxlip:" not in stderr
