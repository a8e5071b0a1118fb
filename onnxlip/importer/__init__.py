"""ONNX importer: ONNX file → framework-neutral IR (see ``loader.load_model``)."""
from .declared import read_model
from .loader import load_model

__all__ = ["load_model", "read_model"]
