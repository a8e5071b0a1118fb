"""One error hierarchy: every problem a user can cause maps to one of these.

The CLI prints ``str(error)`` on one line and exits with code 2; nothing else
should escape as a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass


class OnnxlipError(Exception):
    """Base class of every error onnxlip reports to a user."""


class ModelLoadError(OnnxlipError):
    """The file is missing, unreadable, or not a valid ONNX model."""


class ModelMismatchError(OnnxlipError):
    """The imported network does not compute what onnxruntime computes on the file."""


class InputError(OnnxlipError):
    """A nominal input (or option value) does not fit the model."""


@dataclass(frozen=True)
class UnsupportedNode:
    """Why one ONNX node cannot be turned into IR."""

    name: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"node '{self.name}' ({self.op_type}): {self.reason}"


class UnsupportedModelError(OnnxlipError):
    """The model uses operators or structure the bound engine cannot handle.

    Carries every offending node at once so users can fix them in one go.
    """

    def __init__(self, problems: list[UnsupportedNode]):
        self.problems = list(problems)
        super().__init__(self._message())

    def _message(self) -> str:
        shown = "; ".join(str(p) for p in self.problems)
        count = len(self.problems)
        plural = "s" if count != 1 else ""
        return f"unsupported model ({count} problem{plural}): {shown}"
