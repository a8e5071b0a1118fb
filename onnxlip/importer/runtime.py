"""The original ONNX file run by onnxruntime: the ground truth the IR is checked against."""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np


@lru_cache(maxsize=8)
def _session(path: str, output: str) -> Any:
    """A CPU session whose outputs include ``output`` (exposed if it is internal, e.g. logits before Softmax)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    if output not in {o.name for o in model.graph.output}:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(output))
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: errors are raised, not logged
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


_INPUT_DTYPES = {"tensor(double)": np.float64}


def run_onnx(path: str | os.PathLike, x: np.ndarray, output: str) -> np.ndarray:
    """Tensor ``output`` of the ONNX file for a batch x (N, *sample), one sample per run: a graph
    may fix its batch to 1 inside (a Reshape to [1, -1]), or have no batch axis at all."""
    session = _session(os.path.abspath(os.fspath(path)), output)
    inp = session.get_inputs()[0]
    x = np.asarray(x, dtype=_INPUT_DTYPES.get(inp.type, np.float32))
    batched = len(inp.shape) == x.ndim
    return np.stack([session.run([output], {inp.name: sample[None] if batched else sample})[0].reshape(-1)
                     for sample in x])
