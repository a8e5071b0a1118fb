#!/usr/bin/env python3
"""Build ``models/resnet_small.onnx``: a small ResNet exported the way PyTorch exports
torchvision-style ResNets, and its nominal input ``models/resnet_small_x0.npy``.

Graph (per-sample shapes), opset 17, dynamic batch, float32, He-initialised weights
and non-trivial BatchNorm statistics from a fixed seed (no torch needed):

    input 3x16x16
    stem    Conv(8, 3x3, p1) - BatchNormalization - Relu                     8x16x16
    block1  Conv(8, 3x3, p1) - BN - Relu - Conv(8, 3x3, p1) - BN
            + identity, Add, Relu                                            8x16x16
    block2  Conv(16, 3x3, s2, p1) - BN - Relu - Conv(16, 3x3, p1) - BN
            + downsample Conv(16, 1x1, s2) - BN on the skip, Add, Relu       16x8x8
    GlobalAveragePool                                                        16x1x1
    Shape - Gather(0) - Unsqueeze - Concat([n, -1]) - Reshape                16
    Gemm(10)                                                                 10

As in PyTorch's export, the convolutions have no bias (BatchNorm holds it), the
Add's first input is the main branch, and the flatten before the classifier is a
dynamic Shape/Gather/Concat/Reshape subgraph.

Usage::

    python tools/build_resnet.py [--out DIR] [--seed N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_models import REPO_ROOT, GraphBuilder, gemm, he_normal, image_x0, relu  # noqa: E402

NAME = "resnet_small"


def conv_bn(b: GraphBuilder, x: str, c_in: int, c_out: int, kernel: int, stride: int = 1) -> str:
    """PyTorch ``conv{k}x{k}(bias=False)`` then ``BatchNorm2d`` in eval mode."""
    w = b.const("conv_weight", he_normal(b.rng, (c_out, c_in, kernel, kernel), c_in * kernel * kernel))
    pad = kernel // 2
    h = b.node("Conv", [x, w], kernel_shape=[kernel, kernel], pads=[pad] * 4, strides=[stride, stride])
    rng = b.rng
    gamma = b.const("bn_weight", rng.uniform(0.5, 1.2, c_out).astype(np.float32))
    beta = b.const("bn_bias", (0.1 * rng.standard_normal(c_out)).astype(np.float32))
    mean = b.const("bn_running_mean", (0.3 * rng.standard_normal(c_out)).astype(np.float32))
    var = b.const("bn_running_var", rng.uniform(0.5, 2.0, c_out).astype(np.float32))
    return b.node("BatchNormalization", [h, gamma, beta, mean, var], epsilon=1e-5, momentum=0.9)


def basic_block(b: GraphBuilder, x: str, c_in: int, c_out: int, stride: int) -> str:
    """torchvision ``BasicBlock``: relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x))."""
    h = relu(b, conv_bn(b, x, c_in, c_out, 3, stride))
    h = conv_bn(b, h, c_out, c_out, 3)
    skip = conv_bn(b, x, c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else x
    return relu(b, b.node("Add", [h, skip]))


def torch_flatten(b: GraphBuilder, x: str) -> str:
    """``x.view(x.size(0), -1)`` as PyTorch exports it: Shape/Gather/Unsqueeze/Concat/Reshape."""
    idx = b.node("Constant", [], value=numpy_helper.from_array(np.array(0, dtype=np.int64)))
    n = b.node("Gather", [b.node("Shape", [x]), idx], axis=0)
    n = b.node("Unsqueeze", [n, b.const("axes", np.array([0], dtype=np.int64))])
    shape = b.node("Concat", [n, b.const("minus_one", np.array([-1], dtype=np.int64))], axis=0)
    return b.node("Reshape", [x, shape])


def build_resnet_small(rng: np.random.Generator) -> tuple[onnx.ModelProto, np.ndarray]:
    b = GraphBuilder(NAME, rng)
    x = b.input("input", ["batch", 3, 16, 16])
    h = relu(b, conv_bn(b, x, 3, 8, 3))          # stem: 8x16x16
    h = basic_block(b, h, 8, 8, stride=1)         # identity skip: 8x16x16
    h = basic_block(b, h, 8, 16, stride=2)        # 1x1 conv + BN skip: 16x8x8
    h = b.node("GlobalAveragePool", [h])          # 16x1x1
    gemm(b, torch_flatten(b, h), 16, 10, out="output")
    b.output("output", ["batch", 10])
    model = b.build("Small ResNet (two BasicBlocks) exported PyTorch-style")
    return model, image_x0(rng, (1, 3, 16, 16))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models", help="output directory")
    parser.add_argument("--seed", type=int, default=8, help="random seed (default: 8)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model, x0 = build_resnet_small(np.random.default_rng(args.seed))
    onnx.checker.check_model(model, full_check=True)
    for path in (args.out / f"{NAME}.onnx", args.out / f"{NAME}_x0.npy"):
        onnx.save(model, path) if path.suffix == ".onnx" else np.save(path, x0)
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
