"""Batch certification in this process: results file (resume, refusal), time limits, progress,
and onnxlip without Dask. The Dask runs are in test_dask_workers.py."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from onnxlip import certified_radius, certify_dataset, load_model
from onnxlip.cli.batch_progress import Reporter, Tally, eta_text
from onnxlip.batch.dataset import certify_input, choose_mode, make_tasks, Options

from cli_runner import MODELS, ROOT, run

MLP = MODELS / "mlp.onnx"


def inputs(name: str = "mlp", n: int = 6, seed: int = 0) -> np.ndarray:
    x0 = np.load(MODELS / f"{name}_x0.npy")
    net = load_model(MODELS / f"{name}.onnx")
    x0 = x0.reshape(1, *net.input_shape)
    return x0 + 0.05 * np.random.default_rng(seed).standard_normal((n, *net.input_shape))


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Interrupt(Exception):
    """Stands for Ctrl-C or a killed driver after some inputs."""


def test_sequential_equals_certified_radius_per_input() -> None:
    xs = inputs(n=3)
    result = certify_dataset(MLP, xs, workers=1)
    net = load_model(MLP)
    assert result.computed == 3 and [r["index"] for r in result.records] == [0, 1, 2]
    for x, record in zip(xs, result.records):
        alone = certified_radius(net, x, record["label"])
        assert record["status"] == "ok" and record["radius"] == alone.radius and record["method"] == alone.method
    table = result.table([0.0, 1e9])
    assert table[0]["certified"] == 3 and table[1]["certified"] == 0


def test_interrupted_run_resumes_without_recomputing(tmp_path: Path) -> None:
    xs, results = inputs(n=5), tmp_path / "run.jsonl"
    seen: list[int] = []

    def stop_after_two(record: dict, computed: bool) -> None:
        seen.append(record["index"])
        if len(seen) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        certify_dataset(MLP, xs, workers=1, results=results, on_record=stop_after_two)
    first = lines(results)
    assert first[0]["format"].startswith("onnxlip-results") and [r["index"] for r in first[1:]] == [0, 1]
    with results.open("a") as f:  # the driver died while writing a third line
        f.write('{"index": 2, "label"')
    computed: list[tuple[int, bool]] = []
    again = certify_dataset(MLP, xs, workers=1, results=results, on_record=lambda r, c: computed.append((r["index"], c)))
    assert again.computed == 3 and sorted(i for i, c in computed if c) == [2, 3, 4]
    assert sorted(i for i, c in computed if not c) == [0, 1]
    assert again.records[:2] == first[1:]  # read back, not recomputed
    final = lines(results)
    assert [r["index"] for r in final[1:]] == [0, 1, 2, 3, 4]  # the torn line is gone
    third = certify_dataset(MLP, xs, workers=1, results=results)
    assert third.computed == 0 and third.records == again.records and lines(results) == final
    code, stdout, stderr = run("certify", MLP, "--inputs", _saved(tmp_path, xs), "--workers", "1",
                               "--results", results, "--json")
    assert code == 0, stderr
    data = json.loads(stdout)
    assert data["computed"] == 0 and [r["radius"] for r in data["inputs"]] == [r["radius"] for r in final[1:]]


def _saved(tmp_path: Path, xs: np.ndarray, name: str = "xs") -> str:
    path = tmp_path / f"{name}.npy"
    np.save(path, xs)
    return str(path)


def test_results_file_of_other_options_is_refused(tmp_path: Path) -> None:
    xs = inputs(n=2)
    data, results = _saved(tmp_path, xs), tmp_path / "run.jsonl"
    code, _, stderr = run("certify", MLP, "--inputs", data, "--workers", "1", "--results", results, "--method", "paper")
    assert code == 0, stderr
    before = results.read_text()
    for extra, what in [([], "method"), (["--method", "paper", "--estimate"], "certified"),
                        (["--method", "paper", "--timeout-per-input", "5"], "timeout_per_input")]:
        code, stdout, stderr = run("certify", MLP, "--inputs", data, "--workers", "1", "--results", results, *extra)
        assert code == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1 and what in stderr
    code, _, stderr = run("certify", MODELS / "sklearn_mlp.onnx", "--inputs", _saved(tmp_path, inputs("sklearn_mlp", 2), "other"),
                          "--workers", "1", "--results", results, "--method", "paper")
    assert code == 2 and "model" in stderr and "inputs" in stderr and stderr.count("\n") == 1
    assert results.read_text() == before  # never mixed
    other = tmp_path / "notes.jsonl"
    other.write_text("hello\n")
    code, _, stderr = run("certify", MLP, "--inputs", data, "--workers", "1", "--results", other)
    assert code == 2 and "not an onnxlip results file" in stderr
    # --method best is the default: the same run
    code, _, stderr = run("certify", MLP, "--inputs", data, "--workers", "1", "--results", tmp_path / "b.jsonl")
    code2, _, stderr2 = run("certify", MLP, "--inputs", data, "--workers", "1", "--results", tmp_path / "b.jsonl",
                            "--method", "best")
    assert code == code2 == 0, stderr + stderr2


def test_timeout_stops_the_search_and_keeps_the_proven_radius(tmp_path: Path) -> None:
    net = load_model(MODELS / "batchnorm_net.onnx")
    tasks = make_tasks(net, inputs("batchnorm_net", 2), None)
    full = certify_input(net, tasks[0], Options())
    record = certify_input(net, tasks[0], Options(timeout_per_input=0.02))
    assert full["status"] == "ok" and full["seconds"] > 0.1
    assert record["status"] == "timeout" and record["seconds"] < full["seconds"] / 2  # the work stopped
    # the global bound's radius is proven before any margin test (a test that finished in time may
    # have proven more): at least that, and no more than the full search
    assert full["radius_global"] * (1 - 1e-9) <= record["radius"] <= full["radius"]
    assert record["margin"] == pytest.approx(full["margin"]) and record["method"] is None
    code, stdout, stderr = run("certify", MODELS / "batchnorm_net.onnx", "--inputs",
                               _saved(tmp_path, inputs("batchnorm_net", 2)), "--workers", "1",
                               "--timeout-per-input", "0.02", "--json")
    assert code == 0, stderr
    rows = json.loads(stdout)["inputs"]
    assert [r["status"] for r in rows] == ["timeout", "timeout"] and all(r["method"] == "timeout" for r in rows)
    code, _, stderr = run("certify", MLP, "--inputs", _saved(tmp_path, inputs(n=2), "mlp"), "--timeout-per-input", "0")
    assert code == 2 and "--timeout-per-input" in stderr


def test_failing_input_is_recorded_and_the_run_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxlip.batch import dataset

    real = dataset.certified_radius

    def flaky(net, x, label, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if label == flaky.bad:
            raise MemoryError("out of memory")
        return real(net, x, label, **kwargs)

    xs = inputs(n=3)
    flaky.bad = certify_dataset(MLP, xs[1:2], workers=1).records[0]["label"]
    monkeypatch.setattr(dataset, "certified_radius", flaky)
    result = certify_dataset(MLP, xs, workers=1)
    statuses = {r["index"]: r["status"] for r in result.records}
    bad = [r for r in result.records if r["status"] == "error"]
    assert len(result.records) == 3 and statuses[1] == "error" and "MemoryError" in bad[0]["error"]
    assert all(r["radius"] > 0 for r in result.records if r["status"] == "ok")


def test_progress_lines_every_few_seconds_with_accuracy_and_eta() -> None:
    now = [0.0]
    tally = Tally(4, [0.0, 0.1], clock=lambda: now[0])
    written: list[str] = []
    reporter = Reporter(tally, write=written.append, every=0.05)
    with reporter:
        for t, radius in [(1.0, 0.2), (2.0, 0.05)]:
            now[0] = t
            reporter({"correct": True, "radius": radius, "status": "ok"})
        time.sleep(0.3)  # the timer writes while no input finishes
        assert written and all(w == written[0] for w in written)
        now[0] = 3.0
        reporter({"correct": True, "radius": None, "status": "error"})
        time.sleep(0.3)
    count = len(written)
    time.sleep(0.2)
    assert len(written) == count  # the timer stopped with the run
    assert written[0] == "certify: 2/4 inputs; certified accuracy at radius 0:100% 0.1:50%; ETA 2s"
    assert written[-1] == "certify: 3/4 inputs, 1 failed; certified accuracy at radius 0:100% 0.1:33%; ETA 1s"
    assert eta_text(3725) == "ETA 1h02m" and eta_text(75) == "ETA 1m15s" and eta_text(None) == "ETA --"
    resumed = Tally(10, [0.0], clock=lambda: now[0])
    resumed.add({"correct": True, "radius": 1.0}, computed=False)
    assert resumed.eta() is None  # inputs read back from a results file took no time


def test_cli_logs_progress_on_stderr_but_not_with_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("onnxlip.cli.batch_progress.LOG_EVERY", 0.02)
    data = _saved(tmp_path, inputs(n=4))
    code, stdout, stderr = run("certify", MLP, "--inputs", data, "--workers", "1")
    assert code == 0 and "certified fraction" in stdout and "certify: " not in stdout
    assert "inputs; certified accuracy at radius 0:" in stderr and "ETA" in stderr
    code, stdout, stderr = run("certify", MLP, "--inputs", data, "--workers", "1", "--json")
    assert code == 0 and "certify: " not in stderr and json.loads(stdout)["n"] == 4
    code, stdout, stderr = run("certify", MLP, "--inputs", data, "--workers", "1", "--quiet")
    assert code == 0 and "certify: " not in stderr


def test_without_dask(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed → ImportError
    monkeypatch.setattr("onnxlip.batch.workers.dask_available", lambda: False)
    data = _saved(tmp_path, inputs(n=2))
    code, _, stderr = run("certify", MLP, "--inputs", data, "--workers", "2")
    assert code == 2 and stderr.count("\n") == 1 and "onnxlip[distributed]" in stderr
    code, _, stderr = run("certify", MLP, "--inputs", data, "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and "onnxlip[distributed]" in stderr
    monkeypatch.setattr("onnxlip.batch.dataset.default_workers", lambda: 2)
    mode, notes = choose_mode(None, None, 5)
    assert mode == "sequential" and "Dask is not installed" in notes[0]  # the default falls back, with a note
    code, stdout, stderr = run("certify", MLP, "--inputs", data, "--json")
    assert code == 0 and json.loads(stdout)["n"] == 2
    script = ("import sys; sys.modules['dask'] = sys.modules['distributed'] = None\n"
              "import onnxlip; from onnxlip.cli.app import app; from typer.testing import CliRunner\n"
              f"r = CliRunner().invoke(app, ['certify', {str(MLP)!r}, '--inputs', {data!r}, '--workers', '1', '--json'])\n"
              "assert r.exit_code == 0, r.output; print(len(onnxlip.__all__))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
