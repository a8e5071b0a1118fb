"""``onnxlip.toml``: a repository's pinned robustness budget for ``onnxlip check``.

Example::

    model = "models/mnist_lenet.onnx"          # paths are relative to this file
    inputs = ["models/mnist_lenet_x0.npy"]     # .npy, .npz (with key) or .vnnlib
    # key = "x"                                # array name inside .npz inputs
    # method = "paper"                         # local-bound method
    # junit = "onnxlip-report.xml"             # JUnit XML report
    # input_range = [0, 1]                     # valid raw inputs (bounds and radii then cover only those)
    # mean = [0.1307]                          # ... reaching the model as (x - mean) / std
    # std = [0.3081]
    # branch_seconds = 10                      # branch and bound per radius tested

    [thresholds]
    eps = 0.01                 # ball radius for max_bound (default for .vnnlib: the box's L2 radius)
    max_bound = 500.0          # local bound L(x0, eps) must be <= this
    min_radius = 0.05          # certified L2 radius must be >= this
    # max_global_bound = 1e5   # global bound must be <= this

Unknown keys are errors, so a misspelt threshold cannot silently switch a check off.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:  # the CLI reads CONFIG_NAME for its help text without loading NumPy
    from ..bounds.domain import InputRange

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_NAME = "onnxlip.toml"
TOP_KEYS = ("model", "inputs", "key", "method", "junit", "input_range", "mean", "std", "branch_seconds", "thresholds")
THRESHOLD_KEYS = ("eps", "max_bound", "min_radius", "max_global_bound")


@dataclass(frozen=True)
class Thresholds:
    eps: float | None = None
    max_bound: float | None = None
    min_radius: float | None = None
    max_global_bound: float | None = None

    def merged(self, **override: float | None) -> "Thresholds":
        """These thresholds with every non-None value of ``override`` in place."""
        values = {k: getattr(self, k) for k in THRESHOLD_KEYS}
        values.update({k: v for k, v in override.items() if v is not None})
        return Thresholds(**values)

    @property
    def empty(self) -> bool:
        return self.max_bound is None and self.min_radius is None and self.max_global_bound is None


@dataclass(frozen=True)
class CheckConfig:
    """What ``onnxlip check`` runs: every path already resolved against the config file."""

    model: Path | None = None
    inputs: tuple[Path, ...] = ()
    key: str | None = None
    method: str | None = None
    junit: Path | None = None
    input_range: InputRange | None = None
    branch_seconds: float = 0.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    source: Path | None = None


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _unknown(keys: Any, known: tuple[str, ...], where: str) -> None:
    extra = sorted(set(keys) - set(known))
    if extra:
        raise InputError(f"{where}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} "
                         f"(known: {', '.join(known)})")


def _numbers(value: Any, where: str) -> tuple[float, ...]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise InputError(f"{where} must be a number or a non-empty list of numbers, got {value!r}")
    return tuple(_number(v, where) for v in values)


def _input_range(data: dict[str, Any], where: str) -> InputRange | None:
    """``input_range = [lo, hi]`` with optional ``mean``/``std`` (numbers or per-channel lists)."""
    if "input_range" not in data:
        if "mean" in data or "std" in data:
            raise InputError(f"{where}: mean and std describe input_range: give input_range = [lo, hi] too")
        return None
    bounds = _numbers(data["input_range"], f"{where}: input_range")
    if len(bounds) != 2:
        raise InputError(f"{where}: input_range must be [lo, hi], got {data['input_range']!r}")
    from ..bounds.domain import InputRange

    return InputRange(*bounds, _numbers(data.get("mean", 0.0), f"{where}: mean"),
                      _numbers(data.get("std", 1.0), f"{where}: std"))


def parse_config(data: dict[str, Any], base: Path, where: str) -> CheckConfig:
    """A ``CheckConfig`` from parsed TOML ``data``; relative paths are taken from ``base``."""
    _unknown(data, TOP_KEYS, where)
    resolve = lambda p: base / Path(p)  # noqa: E731 - absolute paths stay absolute
    model = resolve(_string(data["model"], f"{where}: model")) if "model" in data else None
    inputs = data.get("inputs", [])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list):
        raise InputError(f"{where}: inputs must be a list of paths, got {inputs!r}")
    paths = tuple(resolve(_string(p, f"{where}: inputs[{i}]")) for i, p in enumerate(inputs))
    table = data.get("thresholds", {})
    if not isinstance(table, dict):
        raise InputError(f"{where}: [thresholds] must be a table")
    _unknown(table, THRESHOLD_KEYS, f"{where} [thresholds]")
    thresholds = Thresholds(**{k: _number(v, f"{where}: thresholds.{k}") for k, v in table.items()})
    if thresholds.eps is not None and thresholds.eps <= 0:
        raise InputError(f"{where}: thresholds.eps must be positive, got {thresholds.eps}")
    branch_seconds = _number(data.get("branch_seconds", 0.0), f"{where}: branch_seconds")
    if branch_seconds < 0:
        raise InputError(f"{where}: branch_seconds must be at least 0, got {branch_seconds}")
    return CheckConfig(
        model=model, inputs=paths, input_range=_input_range(data, where), branch_seconds=branch_seconds,
        key=_string(data["key"], f"{where}: key") if "key" in data else None,
        method=_string(data["method"], f"{where}: method") if "method" in data else None,
        junit=resolve(_string(data["junit"], f"{where}: junit")) if "junit" in data else None,
        thresholds=thresholds,
    )


def load_config(path: str | os.PathLike) -> CheckConfig:
    """Read an ``onnxlip.toml`` file."""
    path = Path(path)
    where = os.fspath(path)
    if not path.is_file():
        raise InputError(f"{where}: no such config file")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read ({exc.strerror})") from None
    return replace(parse_config(data, path.parent, where), source=path)
