"""End-to-end CLI: every command on shipped models, JSON keys, exit codes, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


from cli_runner import BAD, ROOT, model, run, run_json


@pytest.mark.parametrize("name", ["mlp", "convnet", "nhwc_tf", "normalized_mlp", "normalized_conv",
                                  "batchnorm_net", "shape_ops_net", "mnist_lenet", "cifar10_net"])
def test_inspect_verify_agrees_with_onnxruntime(name: str) -> None:
    path, x0 = model(name)
    data = run_json("inspect", path, "--verify", "--input", x0)
    assert data["verify"]["ok"] and data["verify"]["relative_diff"] <= 1e-4
    assert data["nodes"] and all({"op", "in_shape", "out_shape", "params", "names"} <= set(n) for n in data["nodes"])


def test_global_json_keys() -> None:
    data = run_json("global", model("mnist_lenet")[0])
    assert data["bound"] > 0 and len(data["layers"]) > 0
    assert {"lipschitz", "method", "op", "names"} <= set(data["layers"][0])


def test_local_json_several_eps() -> None:
    path, x0 = model("mnist_lenet")
    data = run_json("local", path, "--input", x0, "--eps", "0.001", "--eps", "0.1")
    assert [b["eps"] for b in data["bounds"]] == [0.001, 0.1]
    assert data["bounds"][0]["bound"] <= data["bounds"][1]["bound"]
    assert data["seconds"] >= 0 and data["layers"][0]["eps_in"] == 0.1


def test_certify_json_keys() -> None:
    path, x0 = model("mlp")
    data = run_json("certify", path, "--input", x0)
    assert {"label", "margin", "radius", "radius_paper", "radius_global"} <= set(data)
    assert data["radius"] >= data["radius_paper"] >= data["radius_global"] > 0


def test_input_range_cuts_the_ball() -> None:
    """convnet's inputs are pixels in [0, 1]: radius and bounds on the ball ∩ [0, 1] are at least
    as good as on the ball, and both outputs say which set they cover."""
    path, x0 = model("convnet")
    plain, boxed = run_json("certify", path, "-i", x0), run_json("certify", path, "-i", x0, "--input-range", "0", "1")
    assert boxed["in_box"] and boxed["input_range"]["lo"] == 0.0 and boxed["input_range"]["hi"] == 1.0
    assert not plain["in_box"] and plain["input_range"] is None
    assert boxed["radius"] >= plain["radius"] > 0
    plain = run_json("local", path, "-i", x0, "--eps", "0.3")
    boxed = run_json("local", path, "-i", x0, "--eps", "0.3", "--input-range", "0", "1")
    assert boxed["input_range"] == {"lo": 0.0, "hi": 1.0, "mean": [0.0], "std": [1.0]}
    assert boxed["bounds"][0]["bound"] <= plain["bounds"][0]["bound"] * (1 + 1e-6)
    code, stdout, _ = run("attack", path, "-i", x0, "--input-range", "0", "1")
    assert code == 0 and "adversarial point" in stdout


def test_certify_with_branch_and_bound() -> None:
    """mlp: splitting ReLUs lifts the radius from 0.417 to about 0.505, under the attack's 0.506."""
    path, x0 = model("mlp")
    data = run_json("certify", path, "-i", x0, "--branch-seconds", "0.5")
    assert data["method"] == "tight+branching" and data["branch_seconds"] == 0.5
    assert 0.45 < data["radius"] < run_json("attack", path, "-i", x0)["distance"]


def test_input_range_with_normalisation() -> None:
    """mnist_lenet takes (pixel − 0.1307)/0.3081: the pixel range [0, 1] through --mean/--std
    certifies the same radius as the normalised range itself."""
    path, x0 = model("mnist_lenet")
    pixels = run_json("certify", path, "-i", x0, "--input-range", "0", "1", "--mean", "0.1307", "--std", "0.3081",
                      "--quiet")
    normalised = run_json("certify", path, "-i", x0, "--input-range", "-0.4242129", "2.8214865", "--quiet")
    assert pixels["radius"] == pytest.approx(normalised["radius"], rel=1e-6) and pixels["radius"] >= 0.26
    assert pixels["input_range"]["mean"] == [0.1307]


def test_human_output_has_table_and_bound() -> None:
    path, x0 = model("convnet")
    code, stdout, _ = run("local", path, "--input", x0, "--eps", "0.01")
    assert code == 0 and "local Lipschitz bound" in stdout and "L_k" in stdout


@pytest.mark.parametrize("bad", ["truncated", "random_bytes", "sigmoid_net", "tanh_net", "multi_unsupported",
                                 "two_inputs", "nonconst_weight", "nan_weights"])
def test_bad_models_give_one_line_and_exit_2(bad: str) -> None:
    code, stdout, stderr = run("inspect", str(BAD / f"{bad}.onnx"))
    assert code == 2
    assert stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1
    assert "Traceback" not in stdout + stderr


def test_multi_unsupported_names_every_node() -> None:
    _, _, stderr = run("inspect", str(BAD / "multi_unsupported.onnx"))
    assert "Sigmoid" in stderr and "Tanh" in stderr


@pytest.mark.parametrize("args", [
    ["local", "{m}", "--input", "{cifar_x0}", "--eps", "0.1"],  # wrong input shape
    ["local", "{m}", "--input", "{missing}", "--eps", "0.1"],  # missing input
    ["local", "{m}", "--input", "{x0}", "--eps", "-1"],  # bad eps
    ["global", "{missing}"],  # missing model
    ["certify", "{m}", "--input", "{x0}", "--label", "12"],  # label out of range
    ["certify", "{m}", "--input", "{x0}", "--input-range", "0", "1"],  # x0 outside the input range
    ["local", "{m}", "--input", "{x0}", "--eps", "0.1", "--input-range", "1", "0"],  # empty input range
    ["certify", "{m}", "--input", "{x0}", "--mean", "0.5"],  # normalisation without a range
    ["certify", "{m}", "--input", "{x0}", "--input-range", "0", "1", "--mean", "0.1,0.2,0.3"],  # not 3 channels
    ["attack", "{m}", "--input", "{x0}", "--input-range", "0", "1", "--std", "a"],  # not a number
    ["certify", "{m}", "--input", "{x0}", "--branch-seconds", "inf"],  # an endless budget
])
def test_bad_inputs_give_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    path, x0 = model("mnist_lenet")
    values = {"m": path, "x0": x0, "cifar_x0": model("cifar10_net")[1], "missing": str(tmp_path / "nope.npy")}
    code, _, stderr = run(*[a.format(**values) for a in args])
    assert code == 2 and stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1


def test_nan_input_is_rejected(tmp_path: Path) -> None:
    import numpy as np

    path, x0 = model("mlp")
    bad = np.load(x0)
    bad.flat[0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    code, _, stderr = run("local", path, "--input", str(tmp_path / "nan.npy"), "--eps", "0.1")
    assert code == 2 and "NaN" in stderr


def test_version() -> None:
    code, stdout, _ = run("--version")
    assert code == 0 and stdout.startswith("onnxlip ")


def test_console_script_subprocess() -> None:
    """The installed entry point, as a CI job would call it."""
    path, x0 = model("mlp")
    proc = subprocess.run([sys.executable, "-m", "onnxlip", "local", path, "--input", x0, "--eps", "0.01", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bounds"][0]["bound"] > 0
    proc = subprocess.run([sys.executable, "-m", "onnxlip", "inspect", str(BAD / "truncated.onnx")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
