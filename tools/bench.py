#!/usr/bin/env python3
"""Benchmark onnxlip: seconds per local bound, per ε sweep, peak memory, speed-ups.

For each model, in a fresh worker process per stage (so each stage has its own
time limit and its own peak memory):

* ``paper``    seconds per local bound L(x0, ε), the paper's per-layer method;
* ``best``     the same with the default method (min of paper and tight);
* ``sweep``    seconds per ``onnxlip.bounds.sweep`` over a log-spaced ε grid
               (paper method, warm starts), and its ratio to one paper bound;
* ``baseline`` (mnist_lenet and cifar10_net only) a naive implementation of the
               paper's method as its authors computed it, timed in the same run:
               row norms by pushing input basis vectors through the layer one at
               a time, spectral norms by 100 fixed power iterations.

A stage's time is the median of ``--repeat`` runs after one untimed warm-up run;
when the warm-up itself takes ≥ 5 s it is the only run and is reported as is.
Memory: the worker's resident set after loading, its peak while loading, and its
peak (VmHWM, reset after loading) during the stage, the loaded weights included.
Speed-ups compare the paper method's median with the paper's published GPU
seconds per bound, the authors' own code on a 2-core CPU, and the baseline of the
same run. The issue's targets are checked at the end (met / NOT met).

Limits: a stage still running ``--time-limit`` seconds after its model is loaded
gets SIGTERM (it reports how far it got: sweep points done, the profile so far),
then SIGKILL; a worker above ``--mem-limit`` GiB is killed. When the paper stage
of a model runs out, its best and sweep stages are skipped (both compute at least
one paper bound). ``--profile N`` runs the first run of each stage under cProfile
(never the timed runs of a fast stage) and prints the top N functions by own time
and the seconds of each layer step. ``--blas-threads`` caps BLAS threads (default:
the engine's choice). The wall-clock times are sensitive to other processes on
the machine: the tables show the highest load average seen during each model.

Models: ``mnist_lenet``, ``cifar10_net`` (from ``models/``), ``alexnet``, ``vgg16``,
``resnet18`` (random-weight ImageNet-shaped nets, built by ``tools/build_imagenet_models.py``
into ``--cache`` when missing) and their ``*_small`` variants (widths / 8).

Usage::

    python tools/bench.py --quick                  # mnist_lenet, cifar10_net (~1-2 min)
    python tools/bench.py --time-limit 600 --json bench.json   # + alexnet, vgg16, resnet18
    python tools/bench.py --models alexnet --stages paper --profile 20
    python tools/bench.py --from-json bench.json --markdown   # re-print a saved run
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_imagenet_models as imagenet  # noqa: E402

SMALL_MODELS = ("mnist_lenet", "cifar10_net")
BIG_MODELS = ("alexnet", "vgg16")  # the targets
IMAGENET_MODELS = BIG_MODELS + ("resnet18",)
MODELS = SMALL_MODELS + IMAGENET_MODELS + tuple(f"{m}_small" for m in IMAGENET_MODELS)
STAGES = ("paper", "best", "sweep", "baseline")
PAPER_KEYS = {"mnist_lenet": "mnist_lenet", "cifar10_net": "cifar10_net",
              "alexnet": "alexnet_imagenet", "vgg16": "vgg16_imagenet"}
AUTHORS_CPU_SECONDS = {"mnist_lenet": 0.60, "cifar10_net": 16.3}  # the authors' code on a 2-core CPU (docs/benchmarks.md)
TARGET_SECONDS = {"mnist_lenet": 0.02, "cifar10_net": 0.2, "alexnet": 10.0, "vgg16": 120.0}
TARGET_PEAK_GIB = 8.0  # AlexNet and VGG16
TARGET_SWEEP_RATIO = 10.0
WARM_LIMIT = 5.0  # a warm-up run at least this long is the measurement itself
POLL = 0.2
STOP_GRACE = 30.0  # seconds a stopped worker gets to report its profile
LOAD_LIMIT = 300.0  # seconds allowed for loading a model, on top of the stage limit
GIB = 2.0**30


# --------------------------------------------------------------------------
# Memory and device
# --------------------------------------------------------------------------


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS / VmHWM (bytes) of a process from /proc, {} where unavailable."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM), so later peaks exclude loading."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    import resource

    return proc_status().get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def blas_info() -> list[str]:
    from threadpoolctl import threadpool_info

    return [f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
            for p in threadpool_info() if p.get("user_api") == "blas"]


def git_revision() -> str:
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no", "onnxlip") else "")


def device_info() -> dict[str, Any]:
    import scipy

    import onnxlip

    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_total() / GIB, 1), "blas": blas_info(), "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__, "onnxlip": onnxlip.__version__,
        "git": git_revision(), "platform": platform.platform(), "load_average": list(os.getloadavg()),
        "gpu": gpu_name(),
    }


def gpu_name() -> str | None:
    """The first CUDA GPU's name when CuPy sees one (None otherwise)."""
    from onnxlip.linalg.backend import select

    xp = select("auto")
    if xp is np:
        return None
    name = xp.cuda.runtime.getDeviceProperties(0)["name"]
    return (name.decode() if isinstance(name, bytes) else str(name)) + f" (CuPy {xp.__version__})"


# --------------------------------------------------------------------------
# The naive baseline: the paper's method computed as its authors did
# --------------------------------------------------------------------------


def _plain_maps(node: Any) -> tuple[Callable, Callable]:
    """(A·v, Aᵀ·u) on batches, straight from the weights (no cached sparse matrices)."""
    from onnxlip.graph.nodes import Conv, Dense

    if isinstance(node, Dense):
        return (lambda v: v @ node.weight.T), (lambda u: u @ node.weight)
    if isinstance(node, Conv):
        from onnxlip.linalg.conv import conv2d, conv2d_adjoint

        return (lambda v: conv2d(v, node.weight, node.window, node.groups),
                lambda u: conv2d_adjoint(u, node.weight, node.window, node.groups))
    return node.linear, node.adjoint


def basis_row_norms(linear: Callable, d: np.ndarray, out_shape: tuple) -> np.ndarray:
    """‖a_iᵀD‖₂ by pushing each masked input basis vector through the layer, one at a time."""
    squares = np.zeros(out_shape)
    e = np.zeros((1, d.size))
    for j in np.flatnonzero(d.reshape(-1)):
        e[0, j] = d.flat[j]
        squares += linear(e.reshape(1, *d.shape))[0] ** 2
        e[0, j] = 0.0
    return np.sqrt(squares)


def power_norm(linear: Callable, adjoint: Callable, r: np.ndarray, d: np.ndarray,
               iterations: int, rng: np.random.Generator) -> float:
    """‖R A D‖₂ by a fixed number of power iterations on (RAD)ᵀ(RAD) (an estimate from below)."""
    v = rng.standard_normal((1, *d.shape)) * d
    sigma = 0.0
    for _ in range(iterations):
        v /= max(np.linalg.norm(v), 1e-300)
        w = adjoint(linear(v * d) * r * r) * d
        sigma = float(np.sqrt(np.linalg.norm(w)))
        v = w
    return sigma


def naive_paper_bound(net: Any, x0: np.ndarray, eps: float, iterations: int = 100, seed: int = 0) -> float:
    """L(x0, ε) by the paper's per-layer product, computed the way its authors did."""
    from onnxlip.graph.nodes import MaxPool, Relu

    acts = net.activations(np.asarray(x0, dtype=np.float64))
    rng = np.random.default_rng(seed)
    nodes = net.nodes
    d, ball, total, i = np.ones(net.input_shape), float(eps), 1.0, 0
    while i < len(nodes):
        node = nodes[i]
        fused = node.weighted and i + 1 < len(nodes) and isinstance(nodes[i + 1], Relu)
        if node.weighted:
            linear, adjoint = _plain_maps(node)
            r, d_out = np.ones(node.out_shape), np.ones(node.out_shape)
            if fused:
                y0 = acts[i + 1][0]
                spread = ball * basis_row_norms(linear, d, node.out_shape)
                rise = np.maximum(y0 + spread, 0) - np.maximum(y0, 0)
                r = np.where(spread > 0, rise / np.where(spread > 0, spread, 1), 0.0)
                d_out = (y0 + spread > 0).astype(float)
            lip = power_norm(linear, adjoint, r, d, iterations, rng)
        elif isinstance(node, MaxPool):
            lip, d_out = float(np.sqrt(node.window.max_windows_per_element())), node.mask(d[None])[0]
        elif isinstance(node, Relu):
            lip, d_out = 1.0, d
        else:  # reshape, transpose, padding
            lip, d_out = 1.0, node.linear(d[None])[0]
        ball, total, d = ball * lip, total * lip, d_out
        i += 2 if fused else 1
    return total


# --------------------------------------------------------------------------
# Worker: one stage of one model, results as JSON lines on stdout
# --------------------------------------------------------------------------


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


class Stopped(Exception):
    """The supervisor asked this worker to stop (SIGTERM at the time limit)."""


def _stop(signum: int, frame: Any) -> None:
    raise Stopped()


def timed(fn: Callable[[], Any], repeat: int, profile: int = 0,
          warm_limit: float = WARM_LIMIT) -> tuple[dict[str, Any], Any]:
    """Run ``fn`` once (warm-up, profiled if asked), then ``repeat`` timed runs unless it took
    ``warm_limit`` seconds or more (a GPU's first run compiles its kernels: no limit there).

    A profiled run stopped by the time limit still emits its profile so far."""
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        with layer_timer(profile > 0):
            if profiler is not None:
                profiler.enable()
            value = fn()
    except Stopped:
        if profiler is not None:
            profiler.disable()
            emit({"event": "stopped", "stopped_after": time.perf_counter() - start,
                  "profile": top_functions(profiler, profile)})
        raise
    cold, cpus = time.perf_counter() - start, [time.process_time() - cpu]
    if profiler is not None:
        profiler.disable()
    times = [cold]
    if cold < warm_limit and (repeat > 0 or profiler is not None):  # a profiled run is never the measurement
        times, cpus = [], []
        for _ in range(max(repeat, 1)):
            start, cpu = time.perf_counter(), time.process_time()
            value = fn()
            times.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    out = {"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpus), "cold_seconds": cold,
           "runs": len(times), "times": times}
    if profiler is not None:
        out["profile"] = top_functions(profiler, profile)
    return out, value


@contextlib.contextmanager
def layer_timer(active: bool) -> Iterator[None]:
    """Emit each layer's seconds of the paper bound, by wrapping the engine's per-layer step
    (``bounds._local_step``, a private function: skipped quietly if it is gone)."""
    import onnxlip.bounds.perlayer.engine as bounds

    original = getattr(bounds, "_local_step", None)
    if not active or original is None:
        yield
        return

    def step(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = original(*args, **kwargs)
        node = args[0] if args else kwargs.get("node")
        weight = getattr(getattr(node, "weight", None), "shape", None)
        name = type(node).__name__ + (f" {'x'.join(map(str, weight))}" if weight else "")
        emit({"event": "layer", "layer": f"{name} -> {'x'.join(map(str, getattr(node, 'out_shape', ())))}",
              "method": getattr(result, "method", None), "seconds": time.perf_counter() - start})
        return result

    bounds._local_step = step
    try:
        yield
    finally:
        bounds._local_step = original


def top_functions(profiler: Any, n: int) -> list[dict[str, Any]]:
    """The ``n`` functions with the most own time, with their cumulative time."""
    import pstats

    stats = pstats.Stats(profiler).stats
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.items():
        where = f"{Path(file).name}:{line}({name})" if line else name
        rows.append({"function": where, "calls": calls, "own_seconds": own, "cumulative_seconds": cumulative})
    return sorted(rows, key=lambda r: -r["own_seconds"])[:n]


@contextlib.contextmanager
def sweep_progress() -> Iterator[None]:
    """Emit a line after each ε of a sweep (``sweep`` calls ``bounds.local_bound`` per point), so a
    sweep stopped by the time limit still tells how far it got."""
    import onnxlip.bounds.perlayer.engine as bounds

    original, start, done = bounds.local_bound, time.perf_counter(), [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        done[0] += 1
        emit({"event": "progress", "points_done": done[0], "progress_seconds": time.perf_counter() - start})
        return result

    bounds.local_bound = counted
    try:
        yield
    finally:
        bounds.local_bound = original


def run_stage(stage: str, net: Any, x0: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    from onnxlip.linalg.backend import select
    from onnxlip.bounds.perlayer.engine import sweep
    from onnxlip.bounds.methods import local_bounds, on_device, runs_on_device

    xp = select(args.device)
    if stage in ("paper", "sweep"):  # the weights and x0 go to the device once, outside the timed runs
        net, x0 = on_device(net, x0, xp)
    if stage in ("paper", "best"):
        if not runs_on_device(stage, False):
            xp = np
        result, bound = timed(lambda: local_bounds(net, x0, [args.eps], stage, xp=xp)[0], args.repeat, args.profile,
                              WARM_LIMIT if xp is np else float("inf"))
        return {**result, "bound": bound.bound, "estimate": bound.is_estimate,
                "layers": [[layer.op, layer.lipschitz, layer.method] for layer in bound.layers]}
    if stage == "sweep":
        if args.model not in IMAGENET_MODELS:  # fill the per-layer caches the single bounds also enjoy
            local_bounds(net, x0, [args.eps], "paper", xp=xp)
        grid = list(np.geomspace(args.eps, args.sweep_max, args.sweep_points))
        emit({"event": "sweep", "points": len(grid), "eps_max": args.sweep_max})
        with sweep_progress():
            result, bounds = timed(lambda: sweep(net, x0, grid), 0, args.profile)
        out = {**result, "points": len(grid), "eps_max": args.sweep_max, "bounds": [b.bound for b in bounds]}
        if args.independent:  # the same grid, one bound at a time: what warm starts save
            start = time.perf_counter()
            for eps in grid:
                local_bounds(net, x0, [eps], "paper", xp=xp)
            out["independent_seconds"] = time.perf_counter() - start
        return out
    if stage == "baseline":
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            result, bound = timed(lambda: naive_paper_bound(net, x0, args.eps), args.repeat)
        return {**result, "bound": bound, "iterations": 100}
    raise ValueError(f"unknown stage {stage}")


@contextlib.contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Cap the BLAS threads (None: leave the engine's own choice)."""
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def worker(args: argparse.Namespace) -> int:
    from onnxlip.importer import load_model
    from onnxlip.graph.nodes import parameter_count

    model_path, x0_path = model_files(args.model, args.cache)
    start = time.perf_counter()
    net = load_model(model_path)
    x0 = np.load(x0_path)
    load = time.perf_counter() - start
    params = sum(parameter_count(n) for n in net.nodes)  # residual blocks' branches included
    emit({"event": "loaded", "load_seconds": load, "params": params,
          "rss_gib": proc_status().get("VmRSS", 0) / GIB, "load_peak_gib": peak_bytes() / GIB})
    reset = reset_peak()
    signal.signal(signal.SIGTERM, _stop)
    try:
        with blas_threads(args.blas_threads):
            result = run_stage(args.stage, net, x0, args)
    except Stopped:
        emit({"event": "stopped_peak", "peak_gib": peak_bytes() / GIB, "peak_excludes_load": reset})
        return 3
    emit({"event": "done", **result, "peak_gib": peak_bytes() / GIB, "peak_excludes_load": reset})
    return 0


# --------------------------------------------------------------------------
# Parent: run the workers under a time and memory limit
# --------------------------------------------------------------------------


def model_files(name: str, cache: Path) -> tuple[Path, Path]:
    if name in SMALL_MODELS:
        return REPO / "models" / f"{name}.onnx", REPO / "models" / f"{name}_x0.npy"
    small = name.endswith("_small")
    return imagenet.paths(name.removesuffix("_small"), Path(cache), small)


def prepare(name: str, cache: Path) -> None:
    """Build an ImageNet-shaped model into the cache if it is missing."""
    if name in SMALL_MODELS:
        return
    small = name.endswith("_small")
    model_path, _ = imagenet.paths(name.removesuffix("_small"), Path(cache), small)
    if not model_path.exists():
        print(f"building {model_path} ...", file=sys.stderr, flush=True)
    imagenet.ensure(name.removesuffix("_small"), Path(cache), small)


def stop(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM (the worker reports its profile so far), then SIGKILL after ``grace`` seconds."""
    if grace > 0:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait()


def _drain(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


def supervise(model: str, stage: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one stage in a worker; kill it past the time limit (after loading) or the memory limit."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--models", model, "--stages", stage,
           "--eps", repr(args.eps), "--repeat", str(args.repeat), "--sweep-points", str(args.sweep_points),
           "--sweep-max", repr(args.sweep_max), "--cache", str(args.cache), "--profile", str(args.profile),
           "--device", args.device, *(["--independent"] if args.independent else []),
           *(["--blas-threads", str(args.blas_threads)] if args.blas_threads else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=_drain, args=(s, sink), daemon=True) for s, sink in ((proc.stdout, out), (proc.stderr, err))]
    for t in readers:
        t.start()
    start, loaded_at, peak, status, load = time.perf_counter(), None, 0, "ok", 0.0
    while proc.poll() is None:
        time.sleep(POLL)
        load = max(load, os.getloadavg()[0])
        mem = proc_status(proc.pid)
        peak = max(peak, mem.get("VmHWM", 0))
        if loaded_at is None and any('"loaded"' in line for line in out):
            loaded_at, peak = time.perf_counter(), mem.get("VmRSS", 0)
        if mem.get("VmRSS", 0) > args.mem_limit * GIB:
            status = "memory"
        elif time.perf_counter() - (loaded_at or start) > args.time_limit + (0 if loaded_at else LOAD_LIMIT):
            status = "timeout"
        if status != "ok":
            stop(proc, grace=0 if status == "memory" else STOP_GRACE)
    for t in readers:
        t.join(timeout=5)
    records = [json.loads(line) for line in out if line.startswith("{")]
    result: dict[str, Any] = {"status": status, "wall_seconds": time.perf_counter() - start, "max_load": load}
    for record in records:
        if record.get("event") == "layer":
            result.setdefault("layer_seconds", []).append([record["layer"], record["method"], record["seconds"]])
        else:
            result.update({k: v for k, v in record.items() if k != "event"})
    if status == "ok" and proc.returncode != 0:
        result["status"] = "error"
        result["error"] = "".join(err[-20:]).strip()
    if "peak_gib" not in result:
        result["peak_gib"] = peak / GIB  # a killed worker: its peak seen by polling
    if status == "timeout":
        result["time_limit"] = args.time_limit
    return result


def stages_for(model: str, stages: Sequence[str]) -> list[str]:
    return [s for s in stages if s != "baseline" or model in SMALL_MODELS]


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "device": device_info(),
        "config": {"device": args.device, "eps": args.eps, "repeat": args.repeat, "blas_threads": args.blas_threads, "sweep_points": args.sweep_points,
                   "sweep_max": args.sweep_max, "time_limit": args.time_limit, "mem_limit_gib": args.mem_limit},
        "models": {},
    }
    for model in args.models:
        prepare(model, args.cache)
        entry: dict[str, Any] = {}
        for stage in stages_for(model, args.stages):
            paper = entry.get("paper", {})
            if stage in ("best", "sweep") and paper.get("status") in ("timeout", "memory"):
                # both compute at least one paper bound: they cannot finish within the same limit
                entry[stage] = {"status": "skipped", "reason": f"paper stage: {paper['status']}"}
                continue
            print(f"{model}: {stage} ...", file=sys.stderr, flush=True)
            entry[stage] = supervise(model, stage, args)
            print(f"{model}: {stage} {summary(entry[stage])}", file=sys.stderr, flush=True)
        report["models"][model] = entry
    report["targets"] = targets(report)
    report["device"]["load_average_end"] = list(os.getloadavg())
    return report


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def summary(stage: dict[str, Any]) -> str:
    if stage["status"] == "ok":
        return f"{stage['seconds']:.4g} s (median of {stage['runs']}), peak {stage['peak_gib']:.2f} GiB"
    return f"{stage['status']} after {stage['wall_seconds']:.0f} s: {stage.get('error', '')}"


def seconds(stage: dict[str, Any] | None) -> str:
    if stage is None:
        return "—"
    if stage["status"] == "ok":
        return f"{stage['seconds']:.4g}"
    if stage["status"] == "timeout":
        done = f" ({stage['points_done']}/{stage['points']} ε)" if stage.get("points_done") else ""
        return f">{stage['time_limit']:g}{done}"
    return stage["status"]


def ratio(num: float | None, den: dict[str, Any] | None, fmt: str = "{:.3g}×") -> str:
    if num is None or den is None or den["status"] != "ok":
        return "—"
    return fmt.format(num / den["seconds"])


def reference_seconds(model: str) -> float | None:
    numbers = json.loads((REPO / "models" / "paper_numbers.json").read_text())
    return numbers.get(PAPER_KEYS.get(model, ""), {}).get("seconds_per_local_bound_gpu")


def sweep_ratio(entry: dict[str, Any]) -> str:
    """Sweep seconds / one paper bound; for a sweep stopped by the limit, ~ an estimate from its progress."""
    sw, paper = entry.get("sweep"), entry.get("paper")
    if sw is None or paper is None or paper["status"] != "ok":
        return "—"
    if sw["status"] == "ok":
        return f"{sw['seconds'] / paper['seconds']:.3g}"
    estimate = estimated_sweep(sw)
    if estimate is not None:
        return f"~{estimate / paper['seconds']:.3g}"
    if sw["status"] == "timeout":
        return f">{sw['time_limit'] / paper['seconds']:.3g}"
    return sw["status"]


def estimated_sweep(sw: dict[str, Any]) -> float | None:
    """Whole-sweep seconds extrapolated from the points a stopped sweep finished."""
    done = sw.get("points_done", 0)
    if sw["status"] == "ok" or not done:
        return None
    return sw["progress_seconds"] / done * sw["points"]


def peak(entry: dict[str, Any]) -> str:
    values = [s["peak_gib"] for s in entry.values() if s.get("peak_gib")]
    return f"{max(values):.2f}" if values else "—"


MARKDOWN = {"on": False}  # set by --markdown: tables as Markdown pipe tables


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    if MARKDOWN["on"]:
        line = lambda cells: "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
        rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"
        return "\n".join([line(headers), rule, *(line(r) for r in rows)])
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def timing_table(report: dict[str, Any]) -> str:
    n = report["config"]["sweep_points"]
    rows = []
    for model, e in report["models"].items():
        load = next((s for s in e.values() if "load_seconds" in s), {})
        paper, sw = e.get("paper"), e.get("sweep") or {}
        cpu = f"{paper['cpu_seconds']:.4g}" if paper and paper["status"] == "ok" else "—"
        indep = f"{sw['independent_seconds']:.4g}" if "independent_seconds" in sw else "—"
        rows.append([model, f"{load.get('params', 0) / 1e6:.3g}M", f"{load.get('load_seconds', 0):.3g}",
                     f"{load.get('rss_gib', 0):.2f}", f"{load.get('load_peak_gib', 0):.2f}", seconds(paper), cpu,
                     seconds(e.get("best")),
                     seconds(e.get("sweep")), sweep_ratio(e), indep, peak(e),
                     f"{max([s.get('max_load', 0) for s in e.values()], default=0):.1f}"])
    return table(["model", "params", "load s", "RSS GiB", "load peak GiB", "paper s/bound", "(CPU s)", "best s/bound",
                  f"sweep s ({n} ε)", "sweep/single", f"{n} singles s", "peak GiB", "max load"], rows)


def speedup_table(report: dict[str, Any]) -> str:
    rows = []
    for model, e in report["models"].items():
        paper, base = e.get("paper"), e.get("baseline")
        gpu, cpu = reference_seconds(model), AUTHORS_CPU_SECONDS.get(model)
        base_s = base["seconds"] if base and base["status"] == "ok" else None
        rows.append([model, seconds(paper), seconds(base), ratio(base_s, paper), "—" if gpu is None else f"{gpu:g}",
                     ratio(gpu, paper), "—" if cpu is None else f"{cpu:g}", ratio(cpu, paper)])
    return table(["model", "paper s", "baseline s", "× baseline", "paper GPU s", "× paper GPU",
                  "authors CPU s", "× authors CPU"], rows)


def bound_table(report: dict[str, Any]) -> str:
    rows = []
    for model, e in report["models"].items():
        get = lambda s: f"{e[s]['bound']:.6g}" if s in e and e[s]["status"] == "ok" else "—"
        sw = e.get("sweep")
        last = f"{sw['bounds'][-1]:.6g}" if sw and sw["status"] == "ok" else "—"
        rows.append([model, get("paper"), get("best"), get("baseline"), last])
    eps, top = report["config"]["eps"], report["config"]["sweep_max"]
    return table(["model", f"paper L(ε={eps:g})", "best", "baseline (100 power its)", f"sweep L(ε={top:g})"], rows)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met (None: not measured)."""
    out = []
    for model, e in report["models"].items():
        paper, sw = e.get("paper"), e.get("sweep")
        if model in TARGET_SECONDS and paper:
            value = paper["seconds"] if paper["status"] == "ok" else None
            out.append({"what": f"{model}: paper s/bound ≤ {TARGET_SECONDS[model]:g}", "measured": value,
                        "met": None if value is None else value <= TARGET_SECONDS[model], "status": paper["status"]})
        if model in BIG_MODELS:
            value = max([max(s.get("peak_gib", 0), s.get("load_peak_gib", 0)) for s in e.values()
                         if s.get("peak_gib")], default=None)
            over = any(s["status"] == "memory" for s in e.values())
            out.append({"what": f"{model}: peak memory ≤ {TARGET_PEAK_GIB:g} GiB", "measured": value,
                        "met": False if over else None if value is None else value <= TARGET_PEAK_GIB, "status": "ok"})
        if sw and paper and paper["status"] == "ok":
            total = sw["seconds"] if sw["status"] == "ok" else estimated_sweep(sw)
            if total is None and sw["status"] == "timeout":
                total = sw["time_limit"]  # a lower bound on the sweep time
            value = None if total is None else total / paper["seconds"]
            met = None if value is None else value < TARGET_SWEEP_RATIO
            if sw["status"] == "timeout" and met:
                met = None  # a lower bound below the target decides nothing
            status = sw["status"] + (", estimated from the points done" if estimated_sweep(sw) else "")
            out.append({"what": f"{model}: sweep < {TARGET_SWEEP_RATIO:g} single bounds", "measured": value,
                        "met": met, "status": status})
    return out


def layer_table(layer_seconds: list[list[Any]]) -> str:
    """Seconds per layer, summed over the bounds of a run (several in a sweep or a tight bound)."""
    totals: dict[str, list[Any]] = {}
    for name, method, sec in layer_seconds:
        entry = totals.setdefault(name, [set(), 0, 0.0])
        entry[0].add(str(method))
        entry[1] += 1
        entry[2] += sec
    rows = [[name, ",".join(sorted(m)), str(n), f"{sec:.3f}"] for name, (m, n, sec) in totals.items()]
    return table(["layer", "norm", "steps", "seconds"], rows)


def format_report(report: dict[str, Any]) -> str:
    dev, cfg = report["device"], report["config"]
    header = [
        f"onnxlip {dev['onnxlip']} benchmark, {report['date']}, git {dev['git']}",
        f"device: {dev['cpu']}, {dev['usable_cores']} of {dev['cores']} cores, {dev['memory_gib']} GiB RAM; "
        f"BLAS: {', '.join(dev['blas']) or 'unknown'}; numpy {dev['numpy']}, scipy {dev['scipy']}",
        f"computing on: {cfg.get('device', 'cpu')}" + (f" ({dev['gpu']})" if cfg.get("device") == "gpu" else "")
        + " (paper and sweep stages)",
        f"load average at start {dev['load_average'][0]:.2f}, at end {dev.get('load_average_end', [0])[0]:.2f} "
        f"(max load: highest 1-min load average seen during the model's stages, its own worker included; "
        f"other processes on the machine slow the wall-clock times)",
        f"ε = {cfg['eps']:g}; sweep: {cfg['sweep_points']} log-spaced ε in [{cfg['eps']:g}, {cfg['sweep_max']:g}]; "
        f"median of {cfg['repeat']} runs after a warm-up (one cold run when ≥ {WARM_LIMIT:g} s); "
        f"limits per model and stage: {cfg['time_limit']:g} s, {cfg['mem_limit_gib']:g} GiB"
        + (f"; BLAS threads capped at {cfg['blas_threads']}" if cfg.get("blas_threads") else ""),
    ]
    bullet = "- " if MARKDOWN["on"] else ""
    parts = ["\n".join(bullet + h for h in header), timing_table(report), speedup_table(report), bound_table(report)]
    lines = []
    for t in report["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        value = "—" if t["measured"] is None else f"{t['measured']:.4g}"
        lines.append(f"{bullet or '  '}{t['what']:<44} measured {value:>10}  {verdict}" + ("" if t["status"] == "ok" else f" ({t['status']})"))
    parts.append("targets:\n" + "\n".join(lines))
    for model, e in report["models"].items():
        for stage, s in e.items():
            if s.get("profile"):
                rows = [[p["function"], str(p["calls"]), f"{p['own_seconds']:.3f}", f"{p['cumulative_seconds']:.3f}"]
                        for p in s["profile"]]
                run = (f"first run, {s['cold_seconds']:.3g} s" if "cold_seconds" in s
                       else f"stopped after {s.get('stopped_after', 0):.3g} s")
                parts.append(f"profile {model} {stage} ({run}):\n"
                             + table(["function", "calls", "own s", "cumulative s"], rows))
            if s.get("layer_seconds"):
                parts.append(f"per-layer seconds {model} {stage} (paper-method layer steps of the first run):\n"
                             + layer_table(s["layer_seconds"]))
            if s["status"] == "error":
                parts.append(f"error {model} {stage}:\n{s.get('error', '')}")
    return "\n\n".join(parts)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="only mnist_lenet and cifar10_net")
    p.add_argument("--models", help=f"comma-separated, from: {', '.join(MODELS)}")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, from: {', '.join(STAGES)}")
    p.add_argument("--repeat", type=int, default=3, help="timed runs after the warm-up (median)")
    p.add_argument("--eps", type=float, default=0.001)
    p.add_argument("--sweep-points", type=int, default=30)
    p.add_argument("--sweep-max", type=float, default=1.0)
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds per model and stage, after loading")
    p.add_argument("--mem-limit", type=float, default=round(0.85 * mem_total() / GIB, 1) or 16.0,
                   help="GiB of resident memory at which a worker is stopped")
    p.add_argument("--cache", type=Path, default=imagenet.DEFAULT_OUT, help="where ImageNet-shaped models are built")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile the first run; print the top N")
    p.add_argument("--independent", action="store_true",
                   help="also time the sweep's ε grid as independent single bounds (what warm starts save)")
    p.add_argument("--blas-threads", type=int, help="cap the BLAS threads (default: the engine's choice)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu: the paper and sweep stages on CuPy (best and baseline stay on the CPU)")
    p.add_argument("--json", type=Path, help="also write the full report as JSON")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--from-json", type=Path, metavar="FILE", help="print the report of an earlier --json run")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    default = SMALL_MODELS if args.quick else SMALL_MODELS + IMAGENET_MODELS
    args.models = args.models.split(",") if args.models else list(default)
    args.stages = args.stages.split(",")
    for value, allowed in [(m, MODELS) for m in args.models] + [(s, STAGES) for s in args.stages]:
        if value not in allowed:
            p.error(f"unknown '{value}', expected one of {', '.join(allowed)}")
    if args.worker:
        args.model, args.stage = args.models[0], args.stages[0]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    MARKDOWN["on"] = args.markdown
    if args.from_json:
        print(format_report(json.loads(args.from_json.read_text())))
        return 0
    report = run_all(args)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    failed = [f"{m} {s}" for m, e in report["models"].items() for s, r in e.items() if r["status"] == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
