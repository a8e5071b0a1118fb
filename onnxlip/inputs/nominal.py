"""Nominal inputs of every kind the CLI accepts: .npy, .npz (with a key) and .vnnlib.

A ``.vnnlib`` property gives x0 = the centre of its input box and a default ε = the L2
radius of the box (see ``onnxlip.vnnlib``); array files give x0 only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .arrays import check_input, load_input
from ..graph.network import Network
from .vnnlib import box_input, is_vnnlib, read_vnnlib


@dataclass(frozen=True, eq=False)
class Nominal:
    """x0 for one input file, with the ε it implies (None for plain arrays)."""

    x0: np.ndarray
    source: str
    eps: float | None = None  # the box's L2 radius for VNN-LIB properties
    kind: str = "array"  # "array" or "vnnlib"
    notes: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return os.path.basename(self.source)


def load_nominal(path: str | os.PathLike, net: Network, key: str | None = None) -> Nominal:
    """x0 (and for .vnnlib the default ε) from ``path``, checked against ``net``."""
    where = os.fspath(path)
    if is_vnnlib(where):
        box = read_vnnlib(where)
        x0 = check_input(box_input(box, net.input_shape, net.input_name), net, where)
        return Nominal(x0, where, box.radius, "vnnlib", tuple(box.notes()))
    return Nominal(load_input(where, net, key), where)
