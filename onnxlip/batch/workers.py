"""The Dask side of batch certification: a cluster, the model on each worker, retries.

Dask is optional (``pip install 'onnxlip[distributed]'``): it is imported only here, and only
when workers are asked for, so the rest of onnxlip runs without it.

- The cluster is a ``LocalCluster`` of worker processes (one thread each: the radius search is
  NumPy-bound and holds the GIL between BLAS calls, so threads would not scale), or an existing
  cluster through its scheduler's address.
- The model's bytes are scattered to every worker once; each worker imports them once and keeps
  the network in a module global keyed by the bytes' digest, so inputs after the first cost
  only their radius search.
- A worker that dies mid-input: the scheduler reruns the input elsewhere (up to
  ``allowed-failures`` deaths, then ``KilledWorker``); an input that raises is retried
  ``RETRIES`` times. Either way the input ends as a record (``error`` when it kept failing) and
  the run goes on.
"""
from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from .dataset import Options, Record, Task, certify_input, error_text, failed_record, network_from_bytes
from ..errors import InputError
from ..graph.network import Network
from .results_file import sha256

RETRIES = 2  # reruns of an input whose search raised (a transient failure: memory, a lost peer)
ALLOWED_FAILURES = 2  # worker deaths an input may cause on a local cluster before it is given up
# Every BLAS the worker processes may load gets one thread: the workers already fill the cores.
ONE_THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                         "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}

_NETWORKS: dict[str, Network] = {}  # on a worker: imported networks by model digest
IMPORTS = [0]  # on a worker: how many models it imported (tests check: once per worker)
MALLOC_KEPT = [False]  # on a worker: whether keep_freed_memory applied
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def dask_available() -> bool:
    return importlib.util.find_spec("distributed") is not None


def require_dask() -> Any:
    """The ``distributed`` module, or the one-line error that says how to get it."""
    try:
        import distributed
    except ImportError:
        raise InputError("certifying on workers needs Dask: pip install 'onnxlip[distributed]' "
                         "(or --workers 1 to certify in this process)") from None
    return distributed


def keep_freed_memory() -> bool:
    """Undo, in this worker process, what Dask's nanny's ``MALLOC_TRIM_THRESHOLD_`` does to
    glibc (see ``worker_environ``; workers started with ``dask worker`` have it): large blocks
    stay in the heap up to 32 MiB (glibc's own ceiling for its adaptive threshold) and up to
    64 MiB of freed memory is kept for reuse. True when it applied."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): the variable means nothing there
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 64 << 20))


def worker_network(digest: str, model_bytes: bytes) -> Network:
    """The network on this worker, imported on its first input only."""
    net = _NETWORKS.get(digest)
    if net is None:
        if not IMPORTS[0]:
            MALLOC_KEPT[0] = keep_freed_memory()
        net = network_from_bytes(model_bytes)
        net.classes()
        _NETWORKS.clear()  # one model at a time: a long-lived worker should not hoard networks
        _NETWORKS[digest] = net
        IMPORTS[0] += 1
    return net


def certify_task(model_bytes: bytes, digest: str, task: Task, options: Options) -> Record:
    """What a worker runs for one input (``model_bytes`` arrives as the scattered copy)."""
    return certify_input(worker_network(digest, model_bytes), task, options)


def worker_environ(config_get: Callable[..., Any]) -> dict[str, Any]:
    """The environment Dask's nanny gives a new worker process, less ``MALLOC_TRIM_THRESHOLD_``
    (Dask sets it to return memory sooner; it also fixes glibc's mmap threshold, so each large
    NumPy temporary is mapped afresh and page-faulted in: 1.35x slower radius searches on
    mnist_lenet, a third of it system time), plus one BLAS thread."""
    environ = dict(config_get("distributed.nanny.pre-spawn-environ", default={}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return {**environ, **ONE_THREAD_ENV}


@contextmanager
def client_for(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client: on the cluster at ``scheduler``, else on a local cluster of ``workers``
    single-threaded processes (closed on exit)."""
    distributed = require_dask()
    import dask

    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="5s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {scheduler}: cannot connect ({' '.join(str(exc).split())})") from None
        with client:
            yield client
        return
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                          "distributed.nanny.pre-spawn-environ": worker_environ(dask.config.get)}):
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
    with cluster, distributed.Client(cluster) as client:
        yield client


def _outcome(future: Any, task: Task, submitted: float) -> Record:
    """The record of a finished future: its result, or an ``error`` record once retries and
    worker restarts are spent."""
    try:
        return future.result()
    except Exception as exc:  # KilledWorker, or what the search raised on its last retry
        return failed_record(task, "error", time.perf_counter() - submitted, error=error_text(exc))


def run_on_dask(model_bytes: bytes, tasks: Sequence[Task], options: Options, workers: int, scheduler: str | None,
                on_record: Callable[[Record], None]) -> None:
    """Certify ``tasks`` on Dask workers, calling ``on_record`` as each input finishes."""
    distributed = require_dask()
    digest = sha256(model_bytes)
    with client_for(workers, scheduler) as client:
        model = client.scatter(model_bytes, broadcast=True, hash=False)
        run, submitted = uuid.uuid4().hex[:8], time.perf_counter()
        tasks_by_key = {f"onnxlip-certify-{run}-{task.index}": task for task in tasks}
        # Only the as_completed iterator holds the futures: a finished one is dropped once
        # yielded, so its record does not stay in the cluster's memory.
        pending = distributed.as_completed([
            client.submit(certify_task, model, digest, task, options, retries=RETRIES, pure=False, key=key)
            for key, task in tasks_by_key.items()])
        for future in pending:
            on_record(_outcome(future, tasks_by_key[future.key], submitted))
            future.release()
