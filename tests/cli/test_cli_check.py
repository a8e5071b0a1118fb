"""``onnxlip check``: exit codes 0/1/2, JUnit XML read back, onnxlip.toml, pre-commit hook."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from onnxlip.cli.config import load_config

from cli_runner import ROOT, model, run

MLP, MLP_X0 = model("mlp")
# the mlp at its x0: 1 < L(x0, 0.1) < 10 (≈ 6.5 paper, ≈ 3.3 tight), certified radius ≈ 0.127, global ≈ 15.6
PASSING = ["--eps", "0.1", "--max-bound", "10", "--min-radius", "0.05", "--max-global-bound", "20"]
FAILING = ["--eps", "0.1", "--max-bound", "1", "--min-radius", "0.05", "--max-global-bound", "20"]


def junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return root


def cases(root: ET.Element) -> list[ET.Element]:
    return root.findall("./testsuite/testcase")


def test_check_passes_exit_0_with_junit(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    code, stdout, _ = run("check", MLP, "--input", MLP_X0, *PASSING, "--junit", str(report))
    assert code == 0 and "3 passed, 0 failed" in stdout
    root = junit(report)
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "0"
    assert len(cases(root)) == 3 and all(c.find("failure") is None for c in cases(root))
    names = [c.get("name") for c in cases(root)]
    assert any(n.startswith("global_bound") for n in names) and any(n.startswith("certified_radius") for n in names)


def test_check_fails_exit_1_with_failure_elements(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    code, stdout, _ = run("check", MLP, "--input", MLP_X0, *FAILING, "--junit", str(report))
    assert code == 1 and "FAIL" in stdout
    root = junit(report)
    assert root.get("failures") == "1" and root.get("tests") == "3"
    failed = [c for c in cases(root) if c.find("failure") is not None]
    assert len(failed) == 1 and failed[0].get("name").startswith("local_bound")
    message = failed[0].find("failure").get("message")
    match = re.fullmatch(r"L\(x0, eps=0\.1\) = ([0-9.]+) > threshold 1", message)  # measured vs threshold
    assert match and float(match.group(1)) > 1


def test_check_json(tmp_path: Path) -> None:
    code, stdout, _ = run("check", MLP, "--input", MLP_X0, *FAILING, "--json")
    data = json.loads(stdout)
    assert code == 1 and data["passed"] is False and data["method"]
    assert {"name", "input", "measured", "threshold", "relation", "passed"} <= set(data["conditions"][0])
    assert [c["passed"] for c in data["conditions"]] == [True, False, True]


@pytest.mark.parametrize("args, message", [
    (["--input", "{missing}", "--min-radius", "0.1"], "no such input file"),
    (["--input", MLP_X0, "--max-bound", "5"], "--eps"),  # a bound needs a ball
    (["--input", MLP_X0], "nothing to check"),
    (["--min-radius", "0.1"], "need an input"),
    (["--input", MLP_X0, "--min-radius", "0.1", "--norm", "linf"], "only l2"),
])
def test_check_bad_input_exit_2_and_junit_error(args: list[str], message: str, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    code, _, stderr = run("check", MLP, *[a.format(missing=tmp_path / "x.npy") for a in args], "--junit", str(report))
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    root = junit(report)
    assert root.get("errors") == "1" and cases(root)[0].find("error") is not None


def test_check_quiet_prints_failures_only() -> None:
    code, stdout, stderr = run("check", MLP, "--input", MLP_X0, *FAILING, "--quiet")
    assert code == 1 and stdout == "" and stderr.startswith("FAIL local_bound")
    code, stdout, stderr = run("check", MLP, "--input", MLP_X0, *PASSING, "--quiet")
    assert code == 0 and stdout == stderr == ""


def write_config(directory: Path, thresholds: str, extra: str = "") -> Path:
    """onnxlip.toml with paths relative to its directory."""
    rel = lambda p: os.path.relpath(p, directory).replace(os.sep, "/")  # noqa: E731
    path = directory / "onnxlip.toml"
    path.write_text(f'model = "{rel(MLP)}"\ninputs = ["{rel(MLP_X0)}"]\njunit = "out/report.xml"\n{extra}\n'
                    f"[thresholds]\n{thresholds}\n", encoding="utf-8")
    (directory / "out").mkdir(exist_ok=True)
    return path


def test_config_is_found_when_no_model_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, "eps = 0.1\nmax_bound = 10.0\nmin_radius = 0.05\n")
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run("check")
    assert code == 0, stderr
    assert len(cases(junit(tmp_path / "out" / "report.xml"))) == 2
    # command-line thresholds override the file's
    code, _, _ = run("check", "--min-radius", "1.0")
    assert code == 1
    # a model on the command line skips ./onnxlip.toml
    code, _, stderr = run("check", MLP)
    assert code == 2 and "nothing to check" in stderr


def test_config_option_from_elsewhere(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "max_global_bound = 10\n", extra='method = "paper"')
    code, stdout, _ = run("check", "--config", str(cfg), "--json")
    data = json.loads(stdout)
    assert code == 1 and data["conditions"][0]["name"] == "global_bound" and data["config"] == str(cfg)
    loaded = load_config(cfg)
    assert loaded.model == tmp_path / os.path.relpath(MLP, tmp_path) and loaded.thresholds.max_global_bound == 10


@pytest.mark.parametrize("text, message", [
    ("min_radus = 0.1\n", "unknown key 'min_radus'"),
    ("min_radius = \"big\"\n", "finite number"),
    ("min_radius = = 1\n", "invalid TOML"),
])
def test_bad_config_exit_2(text: str, message: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, text)
    code, _, stderr = run("check", "--config", str(cfg))
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


def test_config_with_input_range_and_branching(tmp_path: Path) -> None:
    """mlp: radius 0.417 without splitting, about 0.505 with it; the gate at 0.45 passes only with
    branch_seconds, from the config or the command line."""
    cfg = write_config(tmp_path, "min_radius = 0.45\n", extra="input_range = [-2, 2]\nbranch_seconds = 0.5")
    code, stdout, stderr = run("check", "--config", str(cfg), "--json")
    data = json.loads(stdout)
    assert code == 0, stderr
    assert data["branch_seconds"] == 0.5 and data["input_range"] == {"lo": -2.0, "hi": 2.0, "mean": [0.0], "std": [1.0]}
    code, _, _ = run("check", "--config", str(cfg), "--branch-seconds", "0")
    assert code == 1


@pytest.mark.parametrize("extra, message", [
    ("mean = 0.5", "give input_range"),
    ("input_range = [1]", "must be [lo, hi]"),
    ("branch_seconds = -1", "at least 0"),
])
def test_bad_input_range_config_exit_2(extra: str, message: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "min_radius = 0.1\n", extra=extra)
    code, _, stderr = run("check", "--config", str(cfg))
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


def test_no_model_and_no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run("check")
    assert code == 2 and "onnxlip.toml" in stderr


def test_check_subprocess_exit_codes(tmp_path: Path) -> None:
    """As a CI job runs it: the installed module, real exit codes, JUnit written."""
    base = [sys.executable, "-m", "onnxlip", "check", MLP, "--input", MLP_X0]
    for args, expected in ((PASSING, 0), (FAILING, 1), (["--max-bound", "1"], 2)):
        report = tmp_path / f"r{expected}.xml"
        proc = subprocess.run(base + args + ["--junit", str(report)], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
        assert proc.returncode == expected, proc.stderr
        assert "Traceback" not in proc.stderr
        junit(report)


def test_pre_commit_hook_definition() -> None:
    text = (ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    assert "- id: onnxlip-check" in text and "entry: onnxlip check" in text and "pass_filenames: false" in text


def test_check_gates_on_provable_values_by_default() -> None:
    """By default every measured value comes from provable layer norms and says so; --estimate
    marks the values that rest on Lanczos."""
    code, stdout, _ = run("check", MLP, "--input", MLP_X0, *PASSING, "--json")
    data = json.loads(stdout)
    assert code == 0 and data["certified"] is True and data["method"] == "best"
    assert all(not c["estimate"] for c in data["conditions"])
    estimated = json.loads(run("check", MLP, "--input", MLP_X0, *PASSING, "--estimate", "--json")[1])
    radius = {c["name"]: c for c in estimated["conditions"]}["certified_radius"]
    assert radius["estimate"] is True
