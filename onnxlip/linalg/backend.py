"""Array backend: NumPy by default, CuPy when asked for and available.

Every numeric routine takes its array module from its inputs (``array_module``),
so the same code runs on either; mixing the two is an error, never a silent copy.
"""
from __future__ import annotations

import contextlib
import functools
import os
from types import ModuleType
from typing import Any, Iterator

import numpy as np

from ..errors import InputError

DEVICES = ("cpu", "gpu", "auto")


def _cupy() -> ModuleType | None:
    try:
        import cupy  # type: ignore[import-not-found]
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:
        return None
    return cupy


def select(device: str = "cpu") -> ModuleType:
    """Return the array module for ``device`` ('cpu', 'gpu' or 'auto')."""
    if device not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}, got '{device}'")
    if device == "cpu":
        return np
    cp = _cupy()
    if cp is None:
        if device == "gpu":
            raise InputError("--device gpu needs CuPy and a CUDA GPU; install onnxlip[gpu]")
        return np
    return cp


def array_module(*arrays: Any) -> ModuleType:
    """The module (numpy or cupy) that owns ``arrays``."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy  # type: ignore[import-not-found]

            return cupy
    return np


def to_numpy(a: Any) -> np.ndarray:
    """Copy an array of either backend to host memory."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def single_blas_thread(fn: Any) -> Any:
    """Run ``fn`` with one BLAS thread. The engine's products are mostly many and small
    (per-offset conv GEMMs, Lanczos vectors): two OpenBLAS threads were 2-5x slower on the
    reference nets (docs/benchmarks.md). Large products opt back in (``all_blas_threads``)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        controller, _ = _threadpools()
        with controller.limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def all_blas_threads() -> Iterator[None]:
    """More BLAS threads inside a ``single_blas_thread`` function, for products large enough
    to scale (VGG16's convolutions: 1.6–1.7x faster on 2 idle cores): as many as the cores
    other processes leave idle, up to BLAS's own count. A busy core costs more than it
    gives: AlexNet's bound took 14–15 s with 2 threads beside one busy process, 6.6–6.9 s with 1."""
    controller, threads = _threadpools()
    _LAST_THREADS[0] = min(threads, idle_cores(_LAST_THREADS[0]))
    with controller.limit(limits=_LAST_THREADS[0], user_api="blas"):
        yield


_LAST_THREADS = [1]  # what this process last ran with: its own share of the load average


def idle_cores(own: int = 1) -> int:
    """Cores not used by other processes: the 1-minute load average less ``own``, this
    process's threads (counting them stops its own second thread from pushing it back to one)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 1
    return max(1, int((os.cpu_count() or 1) - max(load - own, 0.0) + 0.5))


@functools.cache
def _threadpools() -> tuple[Any, int]:
    """The process's BLAS libraries and their thread count before any limit, found once:
    scanning them costs 0.2–2 ms, a tenth of a small network's bound. First called from a
    wrapped engine function, so NumPy and SciPy are loaded and no limit is in force yet."""
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    blas = [lib.num_threads for lib in controller.lib_controllers if lib.user_api == "blas"]
    return controller, max(blas, default=1)
