"""The Python API: the numbers of the CLI, for notebooks and scripts.

>>> import onnxlip
>>> net = onnxlip.load_model("models/mnist_lenet.onnx")
>>> x0 = onnxlip.load_input("models/mnist_lenet_x0.npy", net)
>>> onnxlip.local_bound(net, x0, 0.01).bound        # same as `onnxlip local ... --eps 0.01`
>>> onnxlip.certified_radius(net, x0).radius        # same as `onnxlip certify ...`

Every function checks its arguments as the CLI checks its options and raises the same
``onnxlip.InputError`` (a subclass of ``onnxlip.OnnxlipError``) with the same message; the
default ``method`` is the CLI's (``onnxlip.methods.DEFAULT_METHOD``). ``x0`` may have the
model's per-sample shape or a leading batch axis of 1.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .bounds import methods
from .bounds.perlayer.engine import BoundResult
from .bounds.domain import InputBox, InputRange
from .errors import InputError, ModelLoadError
from .importer import load_model as _import
from .inputs.arrays import check_eps, check_input
from .graph.network import Network
from .inputs.nominal import load_nominal
from .robustness.radius import RadiusResult
from .robustness.radius import certified_radius as _radius
from .importer.verify import ensure_matches


def import_model(path: str | os.PathLike[str]) -> Network:
    """Import an ONNX file as a ``Network`` without comparing it with onnxruntime."""
    if os.path.isdir(path):
        raise ModelLoadError(f"{os.fspath(path)}: is a directory, not an ONNX file")
    return _import(path)


def load_model(path: str | os.PathLike[str], verify: bool = True) -> Network:
    """Import an ONNX file as a ``Network``.

    With ``verify`` (default) the imported network is compared with onnxruntime on a random
    input, as every CLI command does before it reports; a mismatch raises
    ``ModelMismatchError``. Unsupported operators raise ``UnsupportedModelError`` listing every
    offending node; an unreadable file raises ``ModelLoadError``.
    """
    net = import_model(path)
    if verify:
        ensure_matches(net)
    return net


def load_input(path: str | os.PathLike[str], net: Network, key: str | None = None) -> np.ndarray:
    """The nominal input x0 from a file, as ``--input`` reads it, checked against ``net``.

    ``.npy``; ``.npz`` (``key`` names the array when it holds several); or a VNN-LIB property
    ``.vnnlib``, whose box centre is x0 (its L2 radius, the CLI's default ε, is
    ``onnxlip.nominal.load_nominal(path, net).eps``). Returns float64 of the model's
    per-sample shape.
    """
    return load_nominal(path, net, key).x0


def _x0(net: Network, x0: Any) -> np.ndarray:
    """x0 checked like an input file: numeric, finite, per-sample shape (batch axis of 1 dropped)."""
    if not isinstance(net, Network):
        raise InputError(f"expected a Network from onnxlip.load_model, got {type(net).__name__}")
    return check_input(x0, net, "x0")


def _box(valid: InputRange | None, x0: np.ndarray) -> InputBox | None:
    if valid is not None and not isinstance(valid, InputRange):
        raise InputError(f"valid must be an onnxlip.InputRange, got {type(valid).__name__}")
    return None if valid is None else valid.box(x0)


def global_bound(net: Network, certified: bool = methods.DEFAULT_CERTIFIED) -> BoundResult:
    """Global Lipschitz bound (``onnxlip global``): ‖f(x) − f(x')‖₂ ≤ bound·‖x − x'‖₂ for all x, x'.

    ``certified`` (default, as the CLI): every layer norm provable; False: Lanczos estimates
    where layers are large (``result.is_estimate`` says which). ``result.layers`` holds the per-layer constants.
    """
    return methods.global_bound_on(net, certified)


def local_bound(net: Network, x0: Any, eps: float, method: str = methods.DEFAULT_METHOD,
                certified: bool = methods.DEFAULT_CERTIFIED, valid: InputRange | None = None) -> BoundResult:
    """Local Lipschitz bound L(x0, ε) (``onnxlip local``): ‖f(x) − f(x0)‖₂ ≤ L·‖x − x0‖₂ for every x
    with ‖x − x0‖₂ ≤ ε (one point fixed at x0).

    ``method``: ``"best"`` (default, as the CLI), ``"tight"`` or ``"paper"`` (the per-layer
    product of Avant & Morgansen). ``certified`` (default, as the CLI): provable norms only;
    False: converged Lanczos estimates, faster on large networks. ``valid``: an
    ``InputRange`` of valid raw inputs (``--input-range``, ``--mean``, ``--std``); the bound then
    covers the ball's inputs in that range only. Raises ``InputError`` for ε ≤ 0, NaN or inf,
    an unknown method, or an x0 that does not fit the model.
    """
    return sweep(net, x0, [eps], method, certified, valid)[0]


def sweep(net: Network, x0: Any, eps_grid: Sequence[float], method: str = methods.DEFAULT_METHOD,
          certified: bool = methods.DEFAULT_CERTIFIED, valid: InputRange | None = None) -> list[BoundResult]:
    """Local bounds at each ε of ``eps_grid`` (``onnxlip sweep``), in order; arguments as for
    ``local_bound``. ``np.geomspace(1e-3, 1, 20)`` gives the CLI's log-spaced grid."""
    method = methods.check_method(method)
    grid = [check_eps(e) for e in eps_grid]
    if not grid:
        raise InputError("eps_grid is empty: give at least one eps")
    x = _x0(net, x0)
    return methods.local_bounds(net, x, grid, method, certified, _box(valid, x))


def certified_radius(net: Network, x0: Any, label: int | None = None, method: str = methods.DEFAULT_METHOD,
                     certified: bool = methods.DEFAULT_CERTIFIED, valid: InputRange | None = None,
                     branch_seconds: float = 0.0) -> RadiusResult:
    """Largest certified L2 radius around x0 (``onnxlip certify``): every input within
    ``result.radius`` of x0 gets the label of x0 (or ``label``); ``result.method`` says which
    test proved it.

    Arguments as for ``local_bound``; ``branch_seconds``: branch and bound on ReLU splits for up
    to this many seconds per radius tested (0: off). Raises ``InputError`` for a model with
    fewer than 2 outputs or a label outside them.
    """
    method = methods.check_method(method)
    x = _x0(net, x0)
    return _radius(net, x, label, method=method, certified=certified, box=_box(valid, x),
                   branch_seconds=branch_seconds)
