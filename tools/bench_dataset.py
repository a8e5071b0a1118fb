"""Batch certification benchmark: the 100 MNIST test images on models/mnist_lenet.onnx,
certified in this process (``workers=1``) and on a local Dask cluster of 2 worker processes.

Checks that both give the same radii (to the bisection tolerance), prints the speed ratio of
the two runs measured here (the Dask time includes starting the cluster) and the certified
accuracy table. The machine's load average is printed before and after: other processes on
the cores slow the parallel run more than the sequential one.

    python tools/bench_dataset.py [--n 100] [--workers 2] [--data /work/shared/reference/mnist_test100.npz]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onnxlip import DatasetResult, certify_dataset  # noqa: E402
from onnxlip.batch.dataset import default_workers  # noqa: E402

RADII = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
REL_TOL = 1e-3  # the radius search's bisection tolerance (certified_radius's rel_tol)


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the local cluster's worker
    processes count once the cluster has closed)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(model: Path, xs: np.ndarray, ys: np.ndarray, workers: int) -> tuple[float, float, DatasetResult]:
    """Wall time, CPU time (all processes of the run) and the result of one run."""
    start, cpu = time.perf_counter(), cpu_seconds()
    result = certify_dataset(model, xs, ys, workers=workers)
    return time.perf_counter() - start, cpu_seconds() - cpu, result


def same_radii(a: list[dict], b: list[dict]) -> tuple[bool, float]:
    """Whether every radius agrees to the bisection tolerance, and the largest relative gap."""
    gaps = [abs(x["radius"] - y["radius"]) / max(abs(x["radius"]), 1e-300) if x["radius"] != y["radius"] else 0.0
            for x, y in zip(a, b)]
    return all(g <= REL_TOL for g in gaps) and len(a) == len(b), max(gaps, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/reference/mnist_test100.npz")
    parser.add_argument("--model", default=str(ROOT / "models" / "mnist_lenet.onnx"))
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with np.load(args.data) as z:
        xs, ys = z["x"][: args.n].astype(np.float64), z["y"][: args.n]
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} "
          f"{default_workers()}-core CPU, Python {platform.python_version()}")
    print(f"{len(xs)} inputs of {Path(args.data).name} on {Path(args.model).name}; load average {load()}")
    t_seq, c_seq, seq = timed(Path(args.model), xs, ys, 1)
    print(f"sequential (in process):        {t_seq:8.1f} s  ({t_seq / len(xs):.2f} s/input), "
          f"CPU {c_seq:.0f} s = {c_seq / t_seq:.2f} cores; load {load()}")
    t_par, c_par, par = timed(Path(args.model), xs, ys, args.workers)
    print(f"Dask, {args.workers} local worker processes: {t_par:8.1f} s  (cluster start included), "
          f"CPU {c_par:.0f} s = {c_par / t_par:.2f} cores; load {load()}")
    ok, gap = same_radii(seq.records, par.records)
    print(f"same radii: {'yes' if ok else 'NO'} (largest relative difference {gap:.2g}, tolerance {REL_TOL:g}); "
          f"statuses {sorted({r['status'] for r in par.records})}")
    print(f"speed ratio sequential/Dask: {t_seq / t_par:.2f}x on {args.workers} workers; they received "
          f"{c_par / t_par:.2f} cores on average against {c_seq / t_seq:.2f} for the sequential run, and used "
          f"{c_par / c_seq:.2f}x its CPU time")
    print(f"clean accuracy {sum(r['correct'] for r in par.records)}/{len(xs)}")
    print("radius   certified   certified accuracy")
    for row in par.table(RADII):
        print(f"{row['radius']:<8g} {row['certified']:>9d}   {row['certified_accuracy']:.2f}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
