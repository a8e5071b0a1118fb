"""Nominal inputs: read .npy/.npz files and check them against the model."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import InputError
from ..graph.network import Network


def read_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Array from a .npy file, or from a .npz file (``key``, or its only array)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not an input file")
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


def without_unit_axes(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` without its axes of length 1: [1, 28, 28] and [28, 28] hold the same sample."""
    return tuple(d for d in shape if d != 1)


def check_input(x: Any, net: Network, where: str = "input") -> np.ndarray:
    """One nominal input as float64 with the model's per-sample shape; axes of length 1 (a batch
    axis, a single channel) may be there or not, as ``certify --inputs`` takes them."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise InputError(f"{where}: dtype {x.dtype} is not numeric")
    if x.shape != net.input_shape and without_unit_axes(x.shape) == without_unit_axes(net.input_shape):
        x = x.reshape(net.input_shape)
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
