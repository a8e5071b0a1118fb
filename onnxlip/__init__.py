"""onnxlip: provable Lipschitz bounds and robustness radii for ReLU networks in ONNX.

Data flows one way: ONNX file → importer → IR (``Network``) → bound engine → report.
The public functions live in ``onnxlip.api`` (see its docstring); they and the result
classes load on first use, so ``import onnxlip`` (and the CLI's ``--help``) stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import InputError, ModelLoadError, ModelMismatchError, OnnxlipError, UnsupportedModelError

__version__ = "0.1.0"

# Public name → the module that defines it, imported when the name is first read.
_LAZY = {
    "load_model": "api", "load_input": "api", "global_bound": "api", "local_bound": "api", "sweep": "api",
    "certified_radius": "api", "BoundResult": "bounds.perlayer.engine", "LayerReport": "bounds.perlayer.engine",
    "RadiusResult": "robustness.radius", "Network": "graph.network", "InputRange": "bounds.domain",
    "METHODS": "bounds.methods", "DEFAULT_METHOD": "bounds.methods",
    "certify_dataset": "batch.dataset", "DatasetResult": "batch.dataset",
}

__all__ = sorted([*_LAZY, "InputError", "ModelLoadError", "ModelMismatchError", "OnnxlipError",
                  "UnsupportedModelError", "__version__"])


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'onnxlip' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
