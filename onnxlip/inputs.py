"""Nominal inputs: read .npy/.npz files and check them against the model."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import InputError
from .network import Network


def read_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Array from a .npy file, or from a .npz file (``key``, or its only array)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such input file")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy/.npz file ({type(exc).__name__})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if key is None and len(keys) != 1:
            raise InputError(f"{path}: holds {len(keys)} arrays ({', '.join(keys)}); name one with --key")
        name = key if key is not None else keys[0]
        if name not in keys:
            raise InputError(f"{path}: no array '{name}' (has {', '.join(keys)})")
        data = data[name]
    return np.asarray(data)


def check_input(x: Any, net: Network, where: str = "input") -> np.ndarray:
    """One nominal input as float64 with the model's per-sample shape."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise InputError(f"{where}: dtype {x.dtype} is not numeric")
    if x.shape == (1, *net.input_shape):
        x = x[0]
    if x.shape != net.input_shape:
        raise InputError(f"{where}: shape {list(x.shape)} does not match the model input "
                         f"'{net.input_name}' of shape {list(net.onnx_input_shape)}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{where}: contains NaN or Inf")
    return x.astype(np.float64)


def load_input(path: str | os.PathLike, net: Network, key: str | None = None) -> np.ndarray:
    """Read and check a nominal input file for ``net``."""
    return check_input(read_array(path, key), net, os.fspath(path))


def check_eps(eps: float) -> float:
    if not np.isfinite(eps) or eps <= 0:
        raise InputError(f"eps must be a positive finite number, got {eps}")
    return float(eps)
