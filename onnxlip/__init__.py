"""onnxlip: provable Lipschitz bounds and robustness radii for ReLU networks in ONNX.

Data flows one way: ONNX file → importer → IR (``Network``) → bound engine → report.
"""
from .bounds import BoundResult, LayerReport, global_bound, local_bound, sweep
from .dataset import DatasetResult, certify_dataset
from .errors import InputError, ModelLoadError, OnnxlipError, UnsupportedModelError
from .importer import load_model
from .inputs import load_input
from .network import Network
from .radius import RadiusResult, certified_radius

__version__ = "0.1.0"

__all__ = [
    "BoundResult", "DatasetResult", "InputError", "LayerReport", "ModelLoadError", "Network", "OnnxlipError",
    "RadiusResult", "UnsupportedModelError", "certified_radius", "certify_dataset", "global_bound", "load_input",
    "load_model", "local_bound", "sweep", "__version__",
]
