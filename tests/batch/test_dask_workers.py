"""Batch certification on Dask: a local cluster, and a real ``dask scheduler`` with two
``dask worker`` processes on 127.0.0.1 used through --scheduler (a worker killed mid-run loses
no input; the model is imported once per worker; timeouts are recorded)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from onnxlip import certify_dataset  # noqa: E402

from cli_runner import MODELS, run  # noqa: E402
from .test_dataset import MLP, inputs, lines  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # dask's processes close their connections on SIGINT
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a scheduler with two single-threaded workers (each under a nanny, which
    restarts it if it dies), all stopped at the end."""
    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    dask = [sys.executable, "-m", "dask"]
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> None:
        with open(logs / f"{name}.log", "w") as log:
            procs.append(subprocess.Popen(dask + args, stdout=log, stderr=subprocess.STDOUT))

    try:
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"])
        for i in range(2):
            start(f"worker{i}", ["worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                                 "--no-dashboard", "--name", f"w{i}"])
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


def test_local_cluster_gives_the_sequential_radii(tmp_path: Path) -> None:
    xs = inputs(n=6)
    np.save(tmp_path / "xs.npy", xs)
    args = ("certify", MLP, "--inputs", tmp_path / "xs.npy", "--radii", "0,0.2,0.4", "--json")
    code, out1, err1 = run(*args, "--workers", "1")
    code2, out2, err2 = run(*args, "--workers", "2", "--results", tmp_path / "r.jsonl")
    assert code == code2 == 0, err1 + err2
    seq, par = json.loads(out1), json.loads(out2)
    assert [r["radius"] for r in par["inputs"]] == [r["radius"] for r in seq["inputs"]]
    assert par["table"] == seq["table"] and par["computed"] == 6
    assert sorted(r["index"] for r in lines(tmp_path / "r.jsonl")[1:]) == list(range(6))


def test_local_workers_are_single_threaded_with_glibc_default_trimming() -> None:
    from onnxlip.batch.workers import client_for

    with client_for(1, None) as client:
        env = client.run(lambda: {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OPENBLAS_NUM_THREADS")})
        info = client.scheduler_info()["workers"]
    assert list(env.values()) == [{"MALLOC_TRIM_THRESHOLD_": None, "OPENBLAS_NUM_THREADS": "1"}]
    assert [w["nthreads"] for w in info.values()] == [1]


def _imports(client: distributed.Client) -> dict[str, int]:
    return client.run(lambda: __import__("onnxlip.batch.workers", fromlist=["IMPORTS"]).IMPORTS[0])


def test_scheduler_address_runs_on_its_workers(scheduler: str, tmp_path: Path) -> None:
    xs = inputs("normalized_mlp", 8, seed=3)
    np.save(tmp_path / "xs.npy", xs)
    code, stdout, stderr = run("certify", MODELS / "normalized_mlp.onnx", "--inputs", tmp_path / "xs.npy",
                               "--scheduler", scheduler, "--json")
    assert code == 0, stderr
    data = json.loads(stdout)
    assert data["n"] == 8 and all(r["status"] == "ok" and r["radius"] > 0 for r in data["inputs"])
    alone = certify_dataset(MODELS / "normalized_mlp.onnx", xs[:2], workers=1)
    assert [r["radius"] for r in alone.records] == [r["radius"] for r in data["inputs"][:2]]
    with distributed.Client(scheduler) as client:
        counts = _imports(client)
        kept = client.run(lambda: __import__("onnxlip.batch.workers", fromlist=["MALLOC_KEPT"]).MALLOC_KEPT[0])
    assert len(counts) == 2 and max(counts.values()) == 1  # imported once per worker, not per input
    if sys.platform.startswith("linux"):  # dask worker's nanny set MALLOC_TRIM_THRESHOLD_: undone
        assert all(kept.values())
    code, _, stderr = run("certify", MODELS / "normalized_mlp.onnx", "--inputs", tmp_path / "xs.npy",
                          "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    errors = [line for line in stderr.splitlines() if not line.startswith("certify: ")]  # progress lines in a log
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: --scheduler")


def test_timeout_on_a_worker(scheduler: str) -> None:
    xs = inputs("batchnorm_net", 2)
    full = certify_dataset(MODELS / "batchnorm_net.onnx", xs, scheduler=scheduler)
    result = certify_dataset(MODELS / "batchnorm_net.onnx", xs, scheduler=scheduler, timeout_per_input=0.01)
    assert [r["status"] for r in result.records] == ["timeout", "timeout"]
    for cut, done in zip(result.records, full.records):  # the search stopped on the worker, with a proven radius
        assert cut["seconds"] < done["seconds"] / 2 and 0 < cut["radius"] <= done["radius"]


def test_a_killed_worker_loses_no_input(scheduler: str, tmp_path: Path) -> None:
    xs = inputs("batchnorm_net", 10, seed=1)
    results = tmp_path / "r.jsonl"
    killed: list[int] = []
    first = threading.Event()

    def kill_one_busy_worker() -> None:
        first.wait(timeout=120)
        with distributed.Client(scheduler) as client:
            pids = client.run(os.getpid)
            for _ in range(200):  # a worker with an input in hand
                busy = [addr for addr, keys in client.processing().items() if keys and addr in pids]
                if busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(pids[busy[0]])
                    return
                time.sleep(0.05)

    killer = threading.Thread(target=kill_one_busy_worker)
    killer.start()
    result = certify_dataset(MODELS / "batchnorm_net.onnx", xs, scheduler=scheduler, results=results,
                             on_record=lambda record, computed: first.set())
    killer.join(timeout=60)
    assert killed, "no worker was busy"
    assert [r["index"] for r in result.records] == list(range(10)) and result.computed == 10
    assert all(r["status"] == "ok" and r["radius"] > 0 for r in result.records)
    assert sorted(r["index"] for r in lines(results)[1:]) == list(range(10))
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    with distributed.Client(scheduler) as client:
        client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_an_input_that_keeps_killing_workers_is_an_error_record() -> None:
    from onnxlip.batch.dataset import Task
    from onnxlip.batch.workers import _outcome

    class Dead:
        def result(self) -> None:
            worker = type("WorkerState", (), {"address": "tcp://127.0.0.1:1"})()
            raise distributed.KilledWorker("onnxlip-certify-x-3", worker, allowed_failures=2)

    record = _outcome(Dead(), Task(3, np.zeros(2), 1, 1), time.perf_counter())
    assert record["index"] == 3 and record["status"] == "error" and record["radius"] is None
    assert record["error"].startswith("KilledWorker") and record["correct"] is True
