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


# Below this many multiply-adds per forward pass, BLAS threads cost more than they
# save: the engine's products are small and many (measured 2-5x slower on 2 cores).
SINGLE_THREAD_FLOPS = 5e8


def forward_flops(net: Any) -> int:
    """Rough multiply-adds of one forward pass of a Network."""
    from .ir import node_flops  # the IR imports this module

    return sum(node_flops(node) for node in net.nodes)


def sized_threads(fn: Any) -> Any:
    """Run ``fn(net, ...)`` with one BLAS thread when the network is small."""
    import functools

    from threadpoolctl import threadpool_limits

    @functools.wraps(fn)
    def wrapper(net: Any, *args: Any, **kwargs: Any) -> Any:
        if forward_flops(net) >= SINGLE_THREAD_FLOPS:
            return fn(net, *args, **kwargs)
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(net, *args, **kwargs)

    return wrapper
