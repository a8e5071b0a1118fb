"""Every command on the fast shipped models: --help, JSON keys, files written, shared options."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from onnxlip.importer import load_model
from onnxlip.cli.app import app
from onnxlip.bounds.methods import METHODS
from onnxlip.importer.runtime import run_onnx

from cli_runner import ROOT, model, run, run_json

FAST = ["mlp", "convnet", "mnist_lenet"]
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)
PNG = b"\x89PNG\r\n\x1a\n"


def test_every_command_has_help() -> None:
    assert {"inspect", "global", "local", "sweep", "certify", "check", "lower", "attack", "demo"} <= set(COMMANDS)
    for name in COMMANDS:
        code, stdout, _ = run(name, "--help")
        assert code == 0 and "Usage" in stdout, name


@pytest.mark.parametrize("name", COMMANDS)
def test_readme_documents_every_command(name: str) -> None:
    assert f"onnxlip {name}" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", FAST)
def test_local_json_and_ball_test(name: str) -> None:
    path, x0 = model(name)
    data = run_json("local", path, "--input", x0, "--eps", "0.01", "--method", METHODS[0])
    assert {"bounds", "layers", "method", "seconds", "label", "margin"} <= set(data)
    point = data["bounds"][0]
    assert {"eps", "bound", "estimate", "seconds", "certified"} <= set(point)
    assert point["certified"] == (point["eps"] * point["bound"] < data["margin"] / np.sqrt(2))
    layer = data["layers"][0]
    assert {"op", "shape", "lipschitz", "eps_in", "inactive", "active", "unstable"} <= set(layer)


def test_local_human_table_and_radius() -> None:
    path, x0 = model("mlp")
    code, stdout, _ = run("local", path, "--input", x0, "--eps", "0.01", "--radius")
    assert code == 0
    for text in ("L_k", "ε_k", "inactive", "active", "unstable", "local Lipschitz bound", "certified L2 radius"):
        assert text in stdout
    data = run_json("local", path, "--input", x0, "--eps", "0.01", "--radius")
    assert data["radius"]["radius"] > 0


def test_local_quiet_prints_numbers_only() -> None:
    path, x0 = model("mlp")
    code, stdout, stderr = run("local", path, "-i", x0, "-e", "0.01", "-e", "0.1", "-q")
    assert code == 0 and stderr == ""
    lines = stdout.split("\n")[:2]
    assert [float(line.split()[0]) for line in lines] == [0.01, 0.1]


@pytest.mark.parametrize("name", FAST)
def test_global_json(name: str) -> None:
    data = run_json("global", model(name)[0])
    assert data["bound"] > 0 and {"layers", "estimate", "seconds"} <= set(data)


@pytest.mark.parametrize("name", FAST)
def test_sweep_plot_csv_and_lower(name: str, tmp_path: Path) -> None:
    path, x0 = model(name)
    png, table = tmp_path / "sweep.png", tmp_path / "sweep.csv"
    data = run_json("sweep", path, "--input", x0, "--eps-min", "0.001", "--eps-max", "0.1", "--n", "4", "--lower",
                    "--plot", str(png), "--csv", str(table))
    assert {"points", "global_bound", "method", "estimate", "seconds"} <= set(data)
    eps = [p["eps"] for p in data["points"]]
    assert np.allclose(eps, np.geomspace(0.001, 0.1, 4))
    assert all(0 < p["bound"] <= data["global_bound"] * (1 + 1e-9) for p in data["points"])
    for p in data["points"]:  # the empirical lower bound sits below the bound
        assert 0 < p["lower"] <= p["bound"] * (1 + 1e-6) and p["lower_method"] and "jacobian" in p
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 4 and float(rows[0]["eps"]) == pytest.approx(0.001) and "lower" in rows[0]


def test_sweep_human_and_quiet(tmp_path: Path) -> None:
    path, x0 = model("mlp")
    code, stdout, _ = run("sweep", path, "-i", x0, "--eps-max", "1", "--n", "3", "--plot", str(tmp_path / "s.png"))
    assert code == 0 and "global bound" in stdout and "wrote" in stdout
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG
    code, stdout, _ = run("sweep", path, "-i", x0, "--eps-max", "1", "--n", "3", "--quiet")
    assert code == 0 and len(stdout.strip().splitlines()) == 3


def test_sweep_bad_range() -> None:
    path, x0 = model("mlp")
    code, _, stderr = run("sweep", path, "-i", x0, "--eps-min", "1", "--eps-max", "0.1")
    assert code == 2 and "--eps-min" in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", FAST)
def test_lower_json(name: str) -> None:
    path, x0 = model(name)
    lower = run_json("lower", path, "--input", x0, "--eps", "0.05", "--samples", "32", "--steps", "5",
                     "--restarts", "2")
    assert {"lower_bound", "method", "jacobian", "eps"} <= set(lower)
    assert lower["method"] in ("random", "ascent") and lower["lower_bound"] > 0
    upper = run_json("local", path, "--input", x0, "--eps", "0.05")["bounds"][0]["bound"]
    assert lower["lower_bound"] <= upper * (1 + 1e-6)
    assert lower["jacobian"] <= upper * (1 + 1e-6)


def test_lower_jacobian_points_option() -> None:
    path, x0 = model("mlp")
    args = ("lower", path, "--input", x0, "--eps", "0.05", "--samples", "8", "--steps", "2", "--restarts", "1")
    assert run_json(*args, "--jacobian-points", "0")["jacobian"] is None
    assert run_json(*args, "--jacobian-points", "2")["jacobian"] > 0



@pytest.mark.parametrize("name", FAST)
def test_attack_json_save_and_onnxruntime(name: str, tmp_path: Path) -> None:
    path, x0 = model(name)
    adv = tmp_path / "adv.npy"
    data = run_json("attack", path, "--input", x0, "--save", str(adv))
    assert {"distance", "method", "label", "adv_label", "onnxruntime_label", "onnxruntime_agrees"} <= set(data)
    assert data["found"] and data["onnxruntime_agrees"] and data["adv_label"] != data["label"]
    point = np.load(adv)
    net = load_model(path)
    assert point.shape == (1, *net.input_shape) and point.dtype == np.float32
    assert int(np.argmax(run_onnx(path, point, net.output_name))) == data["adv_label"]
    assert np.linalg.norm(point.astype(np.float64) - np.load(x0).reshape(point.shape)) == pytest.approx(
        data["distance"], rel=1e-4, abs=1e-5)
    if name == "mlp":
        certified = run_json("certify", path, "--input", x0)["radius"]
        assert certified <= data["distance"]  # a certificate can never exceed a real attack


def test_attack_human_output() -> None:
    path, x0 = model("mlp")
    code, stdout, _ = run("attack", path, "--input", x0)
    assert code == 0 and "onnxruntime" in stdout and "agrees" in stdout


def _batch(tmp_path: Path, name: str = "mlp", n: int = 4) -> tuple[str, np.ndarray, np.ndarray]:
    path, x0 = model(name)
    net = load_model(path)
    rng = np.random.default_rng(0)
    xs = (np.load(x0) + 0.05 * rng.standard_normal((n, *net.input_shape))).astype(np.float32)
    predicted = net.forward(xs.astype(np.float64)).reshape(n, -1).argmax(axis=1)
    labels = predicted.copy()
    labels[1] = (labels[1] + 1) % int(np.prod(net.output_shape))  # one misclassified input
    np.savez(tmp_path / "data.npz", x=xs, y=labels)
    np.save(tmp_path / "labels.npy", labels)
    return path, xs, labels


def test_certify_batch_certified_accuracy(tmp_path: Path) -> None:
    path, xs, labels = _batch(tmp_path)
    radii_csv, hist = tmp_path / "radii.csv", tmp_path / "hist.png"
    data = run_json("certify", path, "--inputs", str(tmp_path / "data.npz"), "--labels-key", "y",
                    "--radii", "0,0.01,0.05,0.1", "--csv", str(radii_csv), "--hist", str(hist))
    assert {"n", "labelled", "accuracy", "table", "inputs", "radii"} <= set(data)
    assert data["n"] == 4 and data["labelled"] and data["accuracy"] == pytest.approx(0.75)
    rows = data["inputs"]
    assert [r["label"] for r in rows] == labels.tolist() and not rows[1]["correct"] and rows[1]["radius"] == 0
    for entry in data["table"]:
        expected = np.mean([r["correct"] and r["radius"] >= entry["radius"] for r in rows])
        assert entry["certified_accuracy"] == pytest.approx(expected)
    assert data["table"][0]["certified_accuracy"] == pytest.approx(0.75)
    got = list(csv.DictReader(radii_csv.open()))
    assert len(got) == 4 and float(got[0]["radius"]) == pytest.approx(rows[0]["radius"])
    assert hist.read_bytes()[:8] == PNG
    # the same labels from a separate file, and one input certified alone agrees
    again = run_json("certify", path, "--inputs", str(tmp_path / "data.npz"), "--key", "x",
                     "--labels", str(tmp_path / "labels.npy"), "--radii", "0.05")
    assert again["table"][0]["certified_accuracy"] == data["table"][2]["certified_accuracy"]
    np.save(tmp_path / "one.npy", xs[0])
    assert run_json("certify", path, "--input", str(tmp_path / "one.npy"))["radius"] == pytest.approx(rows[0]["radius"])


def test_certify_method_and_certified_options() -> None:
    """Provable by default (--certified says the same); --estimate reports Lanczos-based radii."""
    path, x0 = model("mlp")
    paper = run_json("certify", path, "--input", x0, "--method", "paper", "--estimate")
    assert paper["radius"] > 0 and paper["radius_tight"] is None and paper["certified"] is False
    proven = run_json("certify", path, "--input", x0)
    assert proven == {**run_json("certify", path, "--input", x0, "--certified"), "seconds": proven["seconds"]}
    estimate = run_json("certify", path, "--input", x0, "--estimate")
    assert proven["certified"] is True and estimate["certified"] is False
    assert 0 < proven["radius"] <= estimate["radius"] * 1.001
    code, stdout, _ = run("certify", path, "--input", x0)
    assert code == 0 and "provable: every radius" in stdout
    code, stdout, _ = run("certify", path, "--input", x0, "--estimate")
    assert code == 0 and "--estimate: radii rest on norms from Lanczos" in stdout


def test_certify_batch_human_and_unlabelled(tmp_path: Path) -> None:
    path, xs, _ = _batch(tmp_path)
    np.save(tmp_path / "xs.npy", xs)
    code, stdout, _ = run("certify", path, "--inputs", str(tmp_path / "xs.npy"))
    assert code == 0 and "certified fraction" in stdout and "per input" in stdout
    data = run_json("certify", path, "--inputs", str(tmp_path / "xs.npy"))
    assert not data["labelled"] and data["accuracy"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["--inputs", "{data}"], "--key"),  # two arrays, none named
    (["--inputs", "{data}", "--labels-key", "nope"], "nope"),
    (["--input", "{x0}", "--radii", "0.1"], "--inputs"),
    (["--input", "{x0}", "--inputs", "{data}"], "exactly one"),
    ([], "exactly one"),
    (["--inputs", "{data}", "--labels-key", "y", "--radii", "a,b"], "--radii"),
    (["--inputs", "{x0}", "--labels", "{short}"], "labels"),
])
def test_certify_bad_batch(args: list[str], message: str, tmp_path: Path) -> None:
    path, _, _ = _batch(tmp_path)
    np.save(tmp_path / "short.npy", np.array([1, 2]))
    values = {"data": str(tmp_path / "data.npz"), "x0": model("mlp")[1], "short": str(tmp_path / "short.npy")}
    code, _, stderr = run("certify", path, *[a.format(**values) for a in args])
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--norm", "linf"], "only l2"),
    (["--device", "tpu"], "--device"),
    (["--method", "nope"], "--method"),
    (["--bogus"], "No such option"),
])
def test_shared_options_reject_bad_values(args: list[str], message: str) -> None:
    path, x0 = model("mlp")
    code, stdout, stderr = run("local", path, "-i", x0, "-e", "0.1", *args)
    assert code == 2 and message in stderr
    assert stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stdout + stderr


def test_device_gpu_without_cupy_is_a_clean_error() -> None:
    from onnxlip.linalg.backend import _cupy

    if _cupy() is not None:
        pytest.skip("CuPy and a GPU are available here")
    path, x0 = model("mlp")
    code, _, stderr = run("global", path, "--device", "gpu")
    assert code == 2 and "CuPy" in stderr and len(stderr.strip().splitlines()) == 1
    assert run("global", path, "--device", "auto", "--json")[0] == 0


def test_missing_option_is_one_line() -> None:
    code, _, stderr = run("local", model("mlp")[0])
    assert code == 2 and stderr.startswith("error: ") and "--input" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_json_is_strict_when_no_attack_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """inf distances become null: the output stays valid strict JSON."""
    from onnxlip.cli import certify_commands as cli
    from onnxlip.robustness.attacks import Attack

    monkeypatch.setattr(cli, "min_adversarial_distance", lambda net, x0, label=None, box=None: Attack(float("inf"), None, "none", 2, None))
    path, x0 = model("mlp")
    code, stdout, _ = run("attack", path, "--input", x0, "--json")
    data = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert code == 0 and data["distance"] is None and not data["found"]


def test_inspect_accepts_vnnlib_and_quiet(tmp_path: Path) -> None:
    path, x0 = model("mlp")
    flat = np.load(x0).reshape(-1)
    text = "".join(f"(declare-const X_{i} Real)\n(assert (<= X_{i} {v}))\n(assert (>= X_{i} {v}))\n"
                   for i, v in enumerate(flat))
    (tmp_path / "p.vnnlib").write_text(text)
    data = run_json("inspect", path, "--verify", "--input", str(tmp_path / "p.vnnlib"))
    assert data["verify"]["ok"]


def test_demo_on_a_small_model() -> None:
    code, stdout, _ = run("demo", "--model", model("mlp")[0])
    assert code == 0 and "IR vs onnxruntime" in stdout and "certified L2 radius" in stdout


def test_demo_model_ships_with_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default demo runs from any directory: its model is package data, the same as models/'s."""
    from onnxlip.cli.check_commands import DEMO_MODEL

    monkeypatch.chdir(tmp_path)
    assert DEMO_MODEL.is_file() and DEMO_MODEL.with_name("mnist_lenet_x0.npy").is_file()
    assert DEMO_MODEL.read_bytes() == (ROOT / "models" / "mnist_lenet.onnx").read_bytes()


def test_debug_shows_the_error_itself(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from onnxlip.errors import InputError

    path, _ = model("mlp")
    result = CliRunner().invoke(app, ["local", path, "-i", str(tmp_path / "nope.npy"), "-e", "0.1", "--debug"])
    assert result.exit_code == 2  # the same exit code as without --debug
    assert "Traceback" in result.stderr and InputError.__name__ in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_without_a_value(command: str) -> None:
    code, stdout, _ = run(command, "--help")
    assert code == 0 and "<bool>" not in stdout
