"""Certify a whole data set: one radius search per input, in this process or on Dask workers.

The driver (``certify_dataset``, and ``run_dataset`` for the CLI, which has the network at hand)
computes the predictions in one batch, skips the inputs a results file already holds, hands the
others to ``certify_input`` (here, one after another) or to ``workers`` (a Dask cluster), and
records each input as it finishes. Every input ends with a status: ``ok``; ``timeout`` (past
``timeout_per_input``, with the largest radius proven by then); ``error`` (it kept failing, or
its worker kept dying). A failed input counts as certified at no radius above the one proven.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..bounds.domain import InputRange
from ..bounds.methods import DEFAULT_CERTIFIED, DEFAULT_METHOD
from ..errors import InputError
from ..graph.network import Network
from ..importer import load_model
from ..robustness.deadline import SearchTimeout
from ..robustness.radius import certified_radius
from . import results_file
from .accuracy import accuracy_table_rows

Record = dict[str, Any]
# Fields of a finished input, in the order of the CSV (``status`` and ``error`` follow).
FIELDS = ("index", "label", "predicted", "correct", "radius", "radius_paper", "radius_folded", "radius_tight",
          "radius_global", "margin", "method", "seconds")


@dataclass(frozen=True)
class Options:
    """What changes a radius (all of it goes into the results file's header)."""

    method: str | None = None  # None: the radius search's default
    certified: bool = DEFAULT_CERTIFIED
    input_range: InputRange | None = None
    branch_seconds: float = 0.0
    timeout_per_input: float | None = None

    def header(self) -> dict[str, Any]:
        data = asdict(self)
        data["method"] = self.method or DEFAULT_METHOD  # --method best and no --method: the same run
        data["input_range"] = None if self.input_range is None else self.input_range.as_dict()
        return data


@dataclass(frozen=True)
class Task:
    """One input to certify: what a worker needs besides the network and the options."""

    index: int
    x: np.ndarray
    label: int
    predicted: int


@dataclass
class DatasetResult:
    """Records of every input in index order; ``computed``: how many this run certified (the
    others came from the results file)."""

    records: list[Record]
    computed: int
    seconds: float
    labelled: bool
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[Record]:
        """The records as the report's rows: a radius for every input (0 where none was proven)."""
        return [{**r, "radius": r["radius"] if r["radius"] is not None else 0.0,
                 "method": r["method"] or r["status"]} for r in self.records]

    def table(self, radii: Sequence[float]) -> list[Record]:
        """Certified accuracy at each radius (``accuracy.accuracy_table_rows``)."""
        return accuracy_table_rows(self.rows(), radii)


def certify_input(net: Network, task: Task, options: Options) -> Record:
    """The record of one input: its radius search within the time limit (``timeout`` record
    past it). Errors propagate: the caller decides whether to retry."""
    box = None if options.input_range is None else options.input_range.box(task.x)
    kwargs = {} if options.method is None else {"method": options.method}
    start = time.perf_counter()
    try:
        r = certified_radius(net, task.x, task.label, certified=options.certified, box=box,
                             branch_seconds=options.branch_seconds, time_limit=options.timeout_per_input, **kwargs)
    except SearchTimeout as stop:
        return failed_record(task, "timeout", time.perf_counter() - start, stop.proven, stop.margin)
    return {"index": task.index, "label": task.label, "predicted": task.predicted,
            "correct": task.label == task.predicted, "radius": r.radius, "radius_paper": r.radius_paper,
            "radius_folded": r.radius_folded, "radius_tight": r.radius_tight, "radius_global": r.radius_global,
            "margin": r.margin, "method": r.method, "seconds": r.seconds, "status": "ok"}


def failed_record(task: Task, status: str, seconds: float, proven: float | None = None,
                  margin: float | None = None, error: str | None = None) -> Record:
    """The record of an input that did not finish: the radius proven before it stopped, if any."""
    record = {name: None for name in FIELDS}
    record.update(index=task.index, label=task.label, predicted=task.predicted,
                  correct=task.label == task.predicted, radius=proven, margin=margin, seconds=seconds, status=status)
    if error is not None:
        record["error"] = error
    return record


def error_text(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def run_sequential(net: Network, tasks: Sequence[Task], options: Options,
                   on_record: Callable[[Record], None]) -> None:
    """Certify ``tasks`` one after another in this process (``--workers 1``: no Dask needed)."""
    for task in tasks:
        start = time.perf_counter()
        try:
            record = certify_input(net, task, options)
        except Exception as exc:  # one bad input must not stop the others (as on Dask)
            record = failed_record(task, "error", time.perf_counter() - start, error=error_text(exc))
        on_record(record)


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def make_tasks(net: Network, xs: np.ndarray, labels: np.ndarray | None) -> list[Task]:
    """One task per input, labelled with the true label (or the prediction when unlabelled)."""
    predicted = np.asarray(net.forward(xs)).reshape(len(xs), -1).argmax(axis=1)
    return [Task(i, xs[i], int(predicted[i]) if labels is None else int(labels[i]), int(predicted[i]))
            for i in range(len(xs))]


def run_dataset(net: Network, model_bytes: bytes, xs: np.ndarray, labels: np.ndarray | None, options: Options,
                workers: int | None = None, scheduler: str | None = None, results: Path | None = None,
                on_record: Callable[[Record, bool], None] | None = None) -> DatasetResult:
    """``certify_dataset`` on an imported network (``model_bytes``: its ONNX file, for workers)."""
    start = time.perf_counter()
    header = results_file.make_header(results_file.sha256(model_bytes), xs, labels, options.header())
    done = results_file.read_done(results, header) if results is not None else {}
    tasks = [t for t in make_tasks(net, xs, labels) if t.index not in done]
    records = dict(done)
    report_ = on_record or _ignore
    for record in done.values():
        report_(record, False)

    def finished(record: Record) -> None:
        records[record["index"]] = record
        writer.write(record)
        report_(record, True)

    mode, notes = choose_mode(workers, scheduler, len(tasks))  # refuses before the results file is touched
    with results_file.ResultsWriter(results, header) as writer:
        if mode == "dask":
            from .workers import run_on_dask

            size = min(workers or default_workers(), len(tasks))  # no idle processes to start
            run_on_dask(model_bytes, tasks, options, size, scheduler, finished)
        else:
            run_sequential(net, tasks, options, finished)
    return DatasetResult([records[i] for i in sorted(records)], len(tasks), time.perf_counter() - start,
                         labels is not None, notes)


def choose_mode(workers: int | None, scheduler: str | None, pending: int) -> tuple[str, list[str]]:
    """'dask' or 'sequential', with a note when the default falls back for want of Dask.
    An explicit request for workers (``workers`` > 1 or a scheduler) needs Dask."""
    from .workers import dask_available, require_dask

    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if scheduler is not None or (workers or 0) > 1:
        require_dask()
        return ("dask" if pending else "sequential"), []
    if workers == 1 or pending <= 1 or default_workers() == 1:
        return "sequential", []
    if not dask_available():
        return "sequential", ["Dask is not installed: certifying in this process (pip install "
                              "'onnxlip[distributed]' for one worker per core)"]
    return "dask", []


def certify_dataset(model: str | os.PathLike | bytes, inputs: np.ndarray, labels: np.ndarray | None = None, *,
                    method: str | None = None, certified: bool = DEFAULT_CERTIFIED, input_range: InputRange | None = None,
                    branch_seconds: float = 0.0, timeout_per_input: float | None = None,
                    workers: int | None = None, scheduler: str | None = None,
                    results: str | os.PathLike | None = None,
                    on_record: Callable[[Record, bool], None] | None = None) -> DatasetResult:
    """Certified L2 radius of every input of a data set ``inputs`` [N, *input shape] (with the
    true ``labels`` [N], else each input's predicted label), on Dask workers.

    ``model``: an ONNX file (path) or its bytes. ``workers``: size of a local cluster of worker
    processes, one BLAS thread each (default: one per core; 1 certifies in this process,
    without Dask, with identical radii). ``scheduler``: the address of a running Dask scheduler
    (``dask scheduler`` / ``dask worker``) to use instead. The model travels to each worker once
    and is imported once per worker. ``results``: a JSON-lines file that gets one line per input
    as it finishes; run again with the same file (same model, inputs and options) and only the
    inputs missing from it are computed. ``timeout_per_input``: seconds per radius search; past
    it the input is recorded with status ``timeout`` and the largest radius proven by then. An
    input whose search fails (or whose worker dies) on every retry gets status ``error``.
    ``on_record(record, computed)`` is called as each input finishes (first with those read
    back from ``results``, ``computed`` False).
    Other arguments as in ``certified_radius``. Returns every record in index order
    (``DatasetResult.table(radii)``: certified accuracy at each radius)."""
    net, model_bytes = load_dataset_model(model)
    xs = np.asarray(inputs, dtype=np.float64)
    if xs.shape[1:] != tuple(net.input_shape) or len(xs) == 0:
        raise InputError(f"inputs of shape {list(xs.shape)} are not [N, {', '.join(map(str, net.input_shape))}]")
    ys = None if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    if ys is not None and len(ys) != len(xs):
        raise InputError(f"{len(ys)} labels for {len(xs)} inputs")
    options = Options(method, certified, input_range, branch_seconds, timeout_per_input)
    return run_dataset(net, model_bytes, xs, ys, options, workers, scheduler,
                       None if results is None else Path(results), on_record)


def load_dataset_model(model: str | os.PathLike | bytes) -> tuple[Network, bytes]:
    """The network and the bytes of its ONNX file (what travels to the workers)."""
    if isinstance(model, (bytes, bytearray)):
        return network_from_bytes(bytes(model)), bytes(model)
    try:
        data = Path(model).read_bytes()
    except OSError:
        data = b""  # load_model names what is wrong with the path
    return load_model(model), data


def network_from_bytes(data: bytes) -> Network:
    """Import an ONNX model held in memory (the importer reads files: through a temporary one)."""
    with tempfile.TemporaryDirectory(prefix="onnxlip-") as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(data)
        return load_model(path)


def _ignore(record: Record, computed: bool) -> None:
    pass
