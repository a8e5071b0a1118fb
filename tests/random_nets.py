"""Random small ReLU networks written as ONNX files, for property tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def random_conv_net(path: Path, seed: int, channels: int = 2, size: int = 8, pool: bool = True,
                    hidden: int = 12, classes: int = 4) -> Path:
    """Conv(3x3) Relu [MaxPool 2] Flatten Gemm Relu Gemm, He-initialised from ``seed``."""
    rng = np.random.default_rng(seed)
    c1 = 3
    nodes, inits = [], []
    w1 = rng.standard_normal((c1, channels, 3, 3)) * np.sqrt(2 / (channels * 9))
    inits += [_init("w1", w1), _init("b1", rng.standard_normal(c1) * 0.1)]
    nodes += [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c1"], ["r1"], name="relu1")]
    last, spatial = "r1", size
    if pool:
        nodes.append(helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]))
        last, spatial = "p1", size // 2
    features = c1 * spatial * spatial
    nodes.append(helper.make_node("Flatten", [last], ["f"], name="flatten"))
    w2 = rng.standard_normal((hidden, features)) * np.sqrt(2 / features)
    w3 = rng.standard_normal((classes, hidden)) * np.sqrt(2 / hidden)
    inits += [_init("w2", w2), _init("b2", rng.standard_normal(hidden) * 0.1),
              _init("w3", w3), _init("b3", rng.standard_normal(classes) * 0.1)]
    nodes += [helper.make_node("Gemm", ["f", "w2", "b2"], ["g2"], name="fc1", transB=1),
              helper.make_node("Relu", ["g2"], ["r2"], name="relu2"),
              helper.make_node("Gemm", ["r2", "w3", "b3"], ["y"], name="fc2", transB=1)]
    graph = helper.make_graph(
        nodes, "random_conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, path)
    return path


def random_mlp(path: Path, seed: int, sizes: tuple[int, ...] = (6, 10, 10, 3)) -> Path:
    """Gemm/Relu chain with the given layer sizes."""
    rng = np.random.default_rng(seed)
    nodes, inits, last = [], [], "x"
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.standard_normal((n_out, n_in)) * np.sqrt(2 / n_in)
        inits += [_init(f"w{k}", w), _init(f"b{k}", rng.standard_normal(n_out) * 0.1)]
        out = "y" if k == len(sizes) - 2 else f"h{k}"
        nodes.append(helper.make_node("Gemm", [last, f"w{k}", f"b{k}"], [out], name=f"fc{k}", transB=1))
        if out != "y":
            nodes.append(helper.make_node("Relu", [out], [f"r{k}"], name=f"relu{k}"))
            out = f"r{k}"
        last = out
    graph = helper.make_graph(
        nodes, "random_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", sizes[-1]])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def ball_samples(x0: np.ndarray, eps: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points in the L2 ball of radius eps around x0: half on the sphere, half inside."""
    directions = rng.standard_normal((n, *x0.shape))
    norms = np.linalg.norm(directions.reshape(n, -1), axis=1)
    radii = eps * np.where(np.arange(n) % 2 == 0, 1.0, rng.uniform(0.05, 1.0, n) ** (1 / x0.size))
    scale = (radii / norms).reshape(n, *([1] * x0.ndim))
    return x0[None] + directions * scale
