#!/usr/bin/env python3
"""Build the small ONNX test/example models shipped with onnxlip.

Every model is assembled node by node with ``onnx.helper`` and
``onnx.numpy_helper`` from NumPy weights drawn with a fixed seed
(``numpy.random.default_rng``), so the output is deterministic and the script
needs only ``numpy`` and ``onnx`` (no torch / tensorflow).  Weights use He
initialisation (std = sqrt(2 / fan_in)) so activations stay O(1).

Good models (written to ``--out``, default ``<repo>/models``), each together
with a nominal input ``<name>_x0.npy`` (float32, batch size 1):

* ``mlp.onnx``             PyTorch-style Gemm/Relu MLP, 20 -> 32 -> 32 -> 10.
* ``convnet.onnx``         PyTorch-style conv net: Conv, MaxPool, grouped
                           strided Conv, AveragePool, Flatten, Gemm.
* ``nhwc_tf.onnx``         tf2onnx-style NHWC net: Transpose, Conv, Transpose,
                           Reshape, MatMul + Add.
* ``normalized_mlp.onnx``  MATLAB-style MLP with Sub(mean) / Div(std) input
                           normalisation and a [1, 784, 1] input.
* ``normalized_conv.onnx`` Conv net with Sub(mean) / Mul(1/std) normalisation.
* ``batchnorm_net.onnx``   Conv + BatchNormalization, Pad node, MaxPool,
                           Dropout, Gemm.
* ``shape_ops_net.onnx``   PyTorch-style dynamic flatten through
                           Shape / Gather / Unsqueeze / Concat / Reshape.

Bad models for error tests (written to ``--bad``, default
``<repo>/tests/data``): ``sigmoid_net.onnx``, ``tanh_net.onnx``,
``two_inputs.onnx``, ``nonconst_weight.onnx``, ``truncated.onnx``,
``random_bytes.onnx``, ``nan_weights.onnx``, ``multi_unsupported.onnx``.

All models use opset 17 and IR version 8 (loadable by older onnxruntime),
are float32 and pass ``onnx.checker.check_model(full_check=True)``, except
``truncated.onnx`` and ``random_bytes.onnx`` which are deliberately not
valid protobuf.

Usage::

    python tools/build_models.py [--out DIR] [--bad DIR] [--seed N]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PRODUCER = "onnxlip/tools/build_models.py"
REPO_ROOT = Path(__file__).resolve().parent.parent

Dim = Union[int, str]
Shape = Sequence[Dim]


# --------------------------------------------------------------------------
# Generic graph-building helpers
# --------------------------------------------------------------------------


class GraphBuilder:
    """Accumulates inputs, initializers and nodes and produces a ModelProto.

    Tensor and node names are generated automatically (``<base>_<k>``)
    unless given explicitly, so the model functions stay short.
    """

    def __init__(self, name: str, rng: np.random.Generator) -> None:
        self.name = name
        self.rng = rng
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self._counts: Counter[str] = Counter()

    def fresh(self, base: str) -> str:
        """Return a new unique name starting with ``base``."""
        self._counts[base] += 1
        return f"{base}_{self._counts[base]}"

    def input(self, name: str, shape: Shape, dtype: int = TensorProto.FLOAT) -> str:
        """Declare a graph input and return its name."""
        self.inputs.append(helper.make_tensor_value_info(name, dtype, list(shape)))
        return name

    def const(self, base: str, array: np.ndarray) -> str:
        """Add ``array`` as an initializer and return its (unique) name."""
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(
        self,
        op: str,
        inputs: Sequence[str],
        out: str | None = None,
        **attrs: object,
    ) -> str:
        """Append a single-output node and return the output tensor name."""
        node_name = self.fresh(op)
        out_name = out if out is not None else f"{node_name}_out"
        self.nodes.append(
            helper.make_node(op, list(inputs), [out_name], name=node_name, **attrs)
        )
        return out_name

    def output(self, name: str, shape: Shape) -> None:
        """Declare ``name`` (an existing tensor) as a float graph output."""
        self.outputs.append(
            helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
        )

    def build(self, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=PRODUCER,
            doc_string=doc,
        )
        model.ir_version = IR_VERSION
        return model


def he_normal(rng: np.random.Generator, shape: Sequence[int], fan_in: int) -> np.ndarray:
    """He-normal weights: N(0, 2 / fan_in), float32."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def small_bias(rng: np.random.Generator, n: int) -> np.ndarray:
    return (0.1 * rng.standard_normal(n)).astype(np.float32)


def relu(b: GraphBuilder, x: str, out: str | None = None) -> str:
    return b.node("Relu", [x], out=out)


def gemm(b: GraphBuilder, x: str, n_in: int, n_out: int, out: str | None = None) -> str:
    """PyTorch nn.Linear export: Gemm(x, W[n_out, n_in], b, transB=1)."""
    w = b.const("weight", he_normal(b.rng, (n_out, n_in), n_in))
    bias = b.const("bias", small_bias(b.rng, n_out))
    return b.node("Gemm", [x, w, bias], out=out, alpha=1.0, beta=1.0, transB=1)


def matmul_add(
    b: GraphBuilder, x: str, n_in: int, n_out: int, out: str | None = None
) -> str:
    """TF / MATLAB style dense layer: MatMul(x, W[n_in, n_out]) + bias."""
    w = b.const("kernel", he_normal(b.rng, (n_in, n_out), n_in))
    bias = b.const("bias", small_bias(b.rng, n_out))
    return b.node("Add", [b.node("MatMul", [x, w]), bias], out=out)


def conv(
    b: GraphBuilder,
    x: str,
    c_in: int,
    c_out: int,
    kernel: int = 3,
    pad: int = 0,
    stride: int = 1,
    group: int = 1,
    dilation: int = 1,
) -> str:
    """2-D convolution with explicit attributes, He-initialised weights."""
    fan_in = (c_in // group) * kernel * kernel
    w = b.const("conv_weight", he_normal(b.rng, (c_out, c_in // group, kernel, kernel), fan_in))
    bias = b.const("conv_bias", small_bias(b.rng, c_out))
    return b.node(
        "Conv",
        [x, w, bias],
        kernel_shape=[kernel, kernel],
        pads=[pad] * 4,
        strides=[stride, stride],
        dilations=[dilation, dilation],
        group=group,
    )


def batchnorm(b: GraphBuilder, x: str, channels: int) -> str:
    """Inference-mode BatchNormalization with non-trivial statistics."""
    rng = b.rng
    scale = b.const("bn_scale", rng.uniform(0.5, 1.5, channels).astype(np.float32))
    shift = b.const("bn_B", small_bias(rng, channels))
    mean = b.const("bn_mean", (0.2 * rng.standard_normal(channels)).astype(np.float32))
    var = b.const("bn_var", rng.uniform(0.5, 2.0, channels).astype(np.float32))
    return b.node("BatchNormalization", [x, scale, shift, mean, var], epsilon=1e-5)


def pool(b: GraphBuilder, op: str, x: str, kernel: int, stride: int, **attrs: object) -> str:
    return b.node(op, [x], kernel_shape=[kernel, kernel], strides=[stride, stride], **attrs)


def image_x0(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Image-like nominal input: uniform pixels in [0, 1]."""
    return rng.random(shape).astype(np.float32)


def normal_x0(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Generic nominal input: standard normal entries."""
    return rng.standard_normal(shape).astype(np.float32)


Built = tuple[onnx.ModelProto, np.ndarray]


# --------------------------------------------------------------------------
# Good models
# --------------------------------------------------------------------------


def build_mlp(rng: np.random.Generator) -> Built:
    b = GraphBuilder("mlp", rng)
    h = b.input("input", ["batch", 20])
    h = relu(b, gemm(b, h, 20, 32))
    h = relu(b, gemm(b, h, 32, 32))
    gemm(b, h, 32, 10, out="output")
    b.output("output", ["batch", 10])
    return b.build("PyTorch-style MLP 20-32-32-10"), normal_x0(rng, (1, 20))


def build_convnet(rng: np.random.Generator) -> Built:
    b = GraphBuilder("convnet", rng)
    h = b.input("input", ["batch", 3, 16, 16])
    h = relu(b, conv(b, h, 3, 8, pad=1))                      # 8x16x16
    h = pool(b, "MaxPool", h, 2, 2)                           # 8x8x8
    h = relu(b, conv(b, h, 8, 8, pad=1, stride=2, group=2))   # 8x4x4
    h = pool(b, "AveragePool", h, 2, 1, count_include_pad=1)  # 8x3x3
    h = b.node("Flatten", [h], axis=1)                        # 72
    gemm(b, h, 72, 10, out="output")
    b.output("output", ["batch", 10])
    return b.build("PyTorch-style conv net"), image_x0(rng, (1, 3, 16, 16))


def build_nhwc_tf(rng: np.random.Generator) -> Built:
    b = GraphBuilder("tf2onnx", rng)
    h = b.input("input_1", ["unk__17", 12, 12, 1])
    h = b.node("Transpose", [h], perm=[0, 3, 1, 2])           # NCHW 1x12x12
    h = relu(b, conv(b, h, 1, 4))                             # 4x10x10
    h = b.node("Transpose", [h], perm=[0, 2, 3, 1])           # NHWC 10x10x4
    shape = b.const("const_fold_opt", np.array([-1, 400], dtype=np.int64))
    h = b.node("Reshape", [h, shape])                         # 400
    h = relu(b, matmul_add(b, h, 400, 16))
    matmul_add(b, h, 16, 10, out="dense_1")
    b.output("dense_1", ["unk__18", 10])
    return b.build("tf2onnx-style NHWC conv net"), image_x0(rng, (1, 12, 12, 1))


def build_normalized_mlp(rng: np.random.Generator) -> Built:
    b = GraphBuilder("normalized_mlp", rng)
    h = b.input("imageinput", [1, 784, 1])
    mean = b.const("imageinput_Mean", rng.uniform(0.0, 0.3, (1, 784, 1)).astype(np.float32))
    std = b.const("imageinput_StandardDeviation", np.array(0.3081, dtype=np.float32))
    h = b.node("Div", [b.node("Sub", [h, mean]), std])
    h = b.node("Flatten", [h], axis=1)                        # 1x784
    h = relu(b, matmul_add(b, h, 784, 24))
    matmul_add(b, h, 24, 10, out="fc_2")
    b.output("fc_2", [1, 10])
    return b.build("MATLAB-style normalised MLP"), image_x0(rng, (1, 784, 1))


def build_normalized_conv(rng: np.random.Generator) -> Built:
    b = GraphBuilder("normalized_conv", rng)
    h = b.input("input", ["BatchSize", 1, 8, 8])
    mean = b.const("mean", np.full((1, 1, 1, 1), 0.45, dtype=np.float32))
    inv_std = b.const("inv_std", np.full((1, 1, 1, 1), 1.0 / 0.25, dtype=np.float32))
    h = b.node("Mul", [b.node("Sub", [h, mean]), inv_std])
    h = relu(b, conv(b, h, 1, 4, pad=1))                      # 4x8x8
    h = b.node("Flatten", [h], axis=1)                        # 256
    gemm(b, h, 256, 10, out="output")
    b.output("output", ["BatchSize", 10])
    return b.build("Conv net with Sub/Mul input normalisation"), image_x0(rng, (1, 1, 8, 8))


def build_batchnorm_net(rng: np.random.Generator) -> Built:
    b = GraphBuilder("batchnorm_net", rng)
    h = b.input("input", ["batch", 2, 10, 10])
    h = relu(b, batchnorm(b, conv(b, h, 2, 6, pad=1), 6))     # 6x10x10
    pads = b.const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))
    h = b.node("Pad", [h, pads], mode="constant")             # 6x12x12
    h = relu(b, batchnorm(b, conv(b, h, 6, 6), 6))            # 6x10x10
    h = pool(b, "MaxPool", h, 2, 2)                           # 6x5x5
    h = b.node("Flatten", [h], axis=1)                        # 150
    h = b.node("Dropout", [h])
    gemm(b, h, 150, 10, out="output")
    b.output("output", ["batch", 10])
    return b.build("Conv+BatchNorm net with Pad and Dropout"), image_x0(rng, (1, 2, 10, 10))


def build_shape_ops_net(rng: np.random.Generator) -> Built:
    b = GraphBuilder("shape_ops_net", rng)
    x = b.input("input", ["batch", 2, 6, 6])
    h = relu(b, conv(b, x, 2, 3))                             # 3x4x4
    # torch.flatten(h, 1) as exported by older PyTorch versions.  The Gather
    # index comes from a Constant node, as PyTorch emits it.
    idx = b.node("Constant", [], value=numpy_helper.from_array(np.array(0, dtype=np.int64)))
    n = b.node("Gather", [b.node("Shape", [h]), idx], axis=0)
    n = b.node("Unsqueeze", [n, b.const("axes", np.array([0], dtype=np.int64))])
    minus_one = b.const("minus_one", np.array([-1], dtype=np.int64))
    new_shape = b.node("Concat", [n, minus_one], axis=0)
    h = b.node("Identity", [b.node("Reshape", [h, new_shape])])  # 48
    gemm(b, h, 48, 5, out="output")
    b.output("output", ["batch", 5])
    return b.build("Dynamic flatten via Shape/Gather/Concat/Reshape"), image_x0(rng, (1, 2, 6, 6))


GOOD_MODELS: dict[str, tuple[Callable[[np.random.Generator], Built], int]] = {
    # name: (builder, per-model seed offset) -- offsets keep models independent
    "mlp": (build_mlp, 0),
    "convnet": (build_convnet, 1),
    "nhwc_tf": (build_nhwc_tf, 2),
    "normalized_mlp": (build_normalized_mlp, 3),
    "normalized_conv": (build_normalized_conv, 4),
    "batchnorm_net": (build_batchnorm_net, 5),
    "shape_ops_net": (build_shape_ops_net, 6),
}


# --------------------------------------------------------------------------
# Bad models (for error-handling tests)
# --------------------------------------------------------------------------


def build_activation_chain(
    name: str, activations: Sequence[str], rng: np.random.Generator
) -> onnx.ModelProto:
    """Gemm (act Gemm)*: one hidden Gemm layer per entry of ``activations``."""
    b = GraphBuilder(name, rng)
    h = b.input("input", ["batch", 8])
    for act in activations:
        h = b.node(act, [gemm(b, h, 8, 8)])
    gemm(b, h, 8, 4, out="output")
    b.output("output", ["batch", 4])
    return b.build(f"Unsupported activations: {', '.join(activations)}")


def build_two_inputs(rng: np.random.Generator) -> onnx.ModelProto:
    b = GraphBuilder("two_inputs", rng)
    s = b.node("Add", [b.input("input_a", ["batch", 8]), b.input("input_b", ["batch", 8])])
    gemm(b, relu(b, gemm(b, s, 8, 8)), 8, 4, out="output")
    b.output("output", ["batch", 4])
    return b.build("Two data inputs")


def build_nonconst_weight(rng: np.random.Generator) -> onnx.ModelProto:
    b = GraphBuilder("nonconst_weight", rng)
    x = b.input("input", ["batch", 8])
    w = b.input("weight", [8, 4])
    b.node("MatMul", [x, w], out="output")
    b.output("output", ["batch", 4])
    return b.build("MatMul weight is a graph input, not a constant")


def build_nan_weights(rng: np.random.Generator) -> onnx.ModelProto:
    model, _ = build_mlp(rng)
    init = model.graph.initializer[2]  # second Gemm's weight
    w = numpy_helper.to_array(init).copy()
    w[3, 5] = np.nan
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    model.doc_string = "MLP with a NaN weight"
    return model


def write_bad_models(bad_dir: Path, seed: int) -> list[Path]:
    """Write the deliberately broken / unsupported models; return their paths."""

    def rng(k: int) -> np.random.Generator:
        return np.random.default_rng(seed + 100 + k)

    def mlp_rng() -> np.random.Generator:  # same weights as models/mlp.onnx
        return np.random.default_rng(seed + GOOD_MODELS["mlp"][1])

    protos: dict[str, onnx.ModelProto] = {
        "sigmoid_net": build_activation_chain("sigmoid_net", ["Sigmoid"], rng(0)),
        "tanh_net": build_activation_chain("tanh_net", ["Tanh"], rng(1)),
        "two_inputs": build_two_inputs(rng(2)),
        "nonconst_weight": build_nonconst_weight(rng(3)),
        "nan_weights": build_nan_weights(mlp_rng()),
        "multi_unsupported": build_activation_chain(
            "multi_unsupported", ["Sigmoid", "Tanh"], rng(4)
        ),
    }
    written = []
    for name, model in protos.items():
        onnx.checker.check_model(model, full_check=True)
        path = bad_dir / f"{name}.onnx"
        onnx.save(model, path)
        written.append(path)

    mlp_bytes = build_mlp(mlp_rng())[0].SerializeToString()
    raw = {
        "truncated": mlp_bytes[: len(mlp_bytes) // 2],
        "random_bytes": rng(5).integers(0, 256, 2000, dtype=np.uint8).tobytes(),
    }
    for name, data in raw.items():
        path = bad_dir / f"{name}.onnx"
        path.write_bytes(data)
        written.append(path)
    return written


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def write_good_models(out_dir: Path, seed: int) -> list[Path]:
    """Build, check and write every good model and its nominal input."""
    written = []
    for name, (builder, offset) in GOOD_MODELS.items():
        model, x0 = builder(np.random.default_rng(seed + offset))
        onnx.checker.check_model(model, full_check=True)
        model_path = out_dir / f"{name}.onnx"
        x0_path = out_dir / f"{name}_x0.npy"
        onnx.save(model, model_path)
        np.save(x0_path, x0)
        written += [model_path, x0_path]
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models",
                        help="directory for the good models (default: <repo>/models)")
    parser.add_argument("--bad", type=Path, default=REPO_ROOT / "tests" / "data",
                        help="directory for the bad models (default: <repo>/tests/data)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    args.bad.mkdir(parents=True, exist_ok=True)
    written = write_good_models(args.out, args.seed) + write_bad_models(args.bad, args.seed)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
