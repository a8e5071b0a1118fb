"""Modules and functions loaded on first use.

``onnxlip --version`` and ``--help`` need only Typer and Rich; NumPy, SciPy, ONNX (which pulls
ml_dtypes) and onnxruntime take over a second to import, so the CLI names what it calls
through these and imports each module when a command first uses it.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable


class LazyModule(ModuleType):
    """A stand-in for module ``name`` that imports it when an attribute is first read."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attr)


def lazy_module(name: str) -> Any:
    """Module ``name``, imported on first attribute access (typed Any: it acts as the module)."""
    return LazyModule(name)


def lazy_function(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported on first call (for functions and classes that are only called)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported on first call."
    return call
