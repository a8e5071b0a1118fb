"""Array backend: NumPy by default, CuPy when asked for and available.

Every numeric routine takes its array module from its inputs (``array_module``),
so the same code runs on either; mixing the two is an error, never a silent copy.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .errors import InputError

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
    """Run ``fn`` with one BLAS thread. The engine's products are many and small (per-offset
    conv GEMMs, Lanczos vectors): two OpenBLAS threads were 2-5x slower on the reference
    nets and 2x slower on AlexNet (docs/benchmarks.md)."""
    import functools

    from threadpoolctl import threadpool_limits

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper
