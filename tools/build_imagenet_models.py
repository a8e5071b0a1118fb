#!/usr/bin/env python3
"""Build AlexNet-, VGG16- and ResNet-18-shaped ONNX models for benchmarks (no torch needed).

The layer shapes are torchvision's (input 1×3×224×224, 1000 logits); the weights
are random, He-initialised (std = sqrt(2 / fan_in)) from a fixed seed, so the
files are deterministic. Each model comes with a nominal input ``<name>_x0.npy``
(float32, shape [1, 3, 224, 224]): a smooth random image in [0, 1] normalised
with the ImageNet mean and std, from a fixed seed.

* AlexNet: Conv(64,11,s4,p2) ReLU MaxPool(3,s2) Conv(192,5,p2) ReLU MaxPool(3,s2)
  Conv(384,3,p1) ReLU Conv(256,3,p1) ReLU Conv(256,3,p1) ReLU MaxPool(3,s2)
  Flatten Gemm(9216→4096) ReLU Gemm(4096→4096) ReLU Gemm(4096→1000).
  (torchvision's AdaptiveAvgPool2d(6×6) is the identity at 224×224 and its
  Dropouts vanish in inference, so neither is written.)
* VGG16: 13 Conv 3×3 p1 + ReLU, widths 64,64,M,128,128,M,256×3,M,512×3,M,512×3,M
  (M = MaxPool 2 s2), Flatten, Gemm(25088→4096) ReLU Gemm(4096→4096) ReLU
  Gemm(4096→1000).
* ResNet-18: Conv(64,7,s2,p3) BN ReLU MaxPool(3,s2,p1), four stages of two
  BasicBlocks (64, 128, 256, 512 channels; the first block of stages 2–4 has
  stride 2 and a Conv 1×1 s2 + BN downsample on its skip), GlobalAveragePool,
  PyTorch's Shape/Gather/Concat/Reshape flatten, Gemm(512→1000) — exported the way
  PyTorch exports torchvision's model (bias-free convs, BatchNorm in eval mode with
  random statistics; ``tools/build_resnet.py`` writes the small one in ``models/``).
* ``--small``: the same graphs with every hidden width (conv channels and the
  two hidden Gemm widths) divided by 8; still 224×224×3 in and 1000 logits out.

Files are ``alexnet.onnx``, ``vgg16.onnx``, ``resnet18.onnx`` (``*_small.onnx`` with ``--small``),
opset 17, IR version 8, float32, dynamic batch dimension ``batch``. A model whose
protobuf would exceed 2 GB is written with external data (VGG16 is ~550 MB, a
single file). Existing files are kept unless ``--force``.

Usage::

    python tools/build_imagenet_models.py [--out DIR] [--only alexnet|vgg16|resnet18] [--small] [--seed N] [--force]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PRODUCER = "onnxlip/tools/build_imagenet_models.py"
DEFAULT_OUT = Path(os.environ.get("ONNXLIP_MODEL_CACHE", Path.home() / ".cache" / "onnxlip" / "models"))
NAMES = ("alexnet", "vgg16", "resnet18")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PROTO_LIMIT = 2**31 - 1 - 2**20  # protobuf's 2 GB, with room for the graph itself
SMALL_DIVISOR = 8


@dataclass(frozen=True)
class ConvSpec:
    channels: int
    kernel: int
    stride: int = 1
    pad: int = 0


@dataclass(frozen=True)
class PoolSpec:
    kernel: int
    stride: int


ALEXNET_FEATURES = (
    ConvSpec(64, 11, 4, 2), PoolSpec(3, 2),
    ConvSpec(192, 5, 1, 2), PoolSpec(3, 2),
    ConvSpec(384, 3, 1, 1), ConvSpec(256, 3, 1, 1), ConvSpec(256, 3, 1, 1), PoolSpec(3, 2),
)
VGG16_FEATURES = tuple(
    PoolSpec(2, 2) if c == "M" else ConvSpec(int(c), 3, 1, 1)
    for c in "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M".split()
)
HIDDEN = (4096, 4096)
CLASSES = 1000
FEATURES = {"alexnet": ALEXNET_FEATURES, "vgg16": VGG16_FEATURES}
RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the first block)


def model_name(name: str, small: bool = False) -> str:
    return f"{name}_small" if small else name


def paths(name: str, out: Path, small: bool = False) -> tuple[Path, Path]:
    """(model path, nominal input path) of a model in ``out``."""
    stem = model_name(name, small)
    return out / f"{stem}.onnx", out / f"{stem}_x0.npy"


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


class _Graph:
    """Collects nodes and initializers; weights are He-normal float32 from one generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def add(self, op: str, inputs: Sequence[str], **attrs: object) -> str:
        self.count += 1
        name = f"{op.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attrs))
        return name

    def weight(self, shape: tuple[int, ...], fan_in: int) -> tuple[str, str]:
        k = len(self.inits) // 2 + 1
        w = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        b = self.rng.standard_normal(shape[0], dtype=np.float32) * np.float32(0.01)
        self.inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(b, f"b{k}")]
        return f"w{k}", f"b{k}"


def build_model(name: str, small: bool = False, seed: int = 0) -> onnx.ModelProto:
    """The ONNX model ``name`` (one of ``NAMES``), widths divided by 8 when ``small``."""
    if name == "resnet18":
        return build_resnet18(small, seed)
    if name not in FEATURES:
        raise ValueError(f"unknown model '{name}', expected one of {', '.join(NAMES)}")
    div = SMALL_DIVISOR if small else 1
    g = _Graph(np.random.default_rng(seed))
    x, channels, size = "input", 3, 224
    for spec in FEATURES[name]:
        if isinstance(spec, PoolSpec):
            x = g.add("MaxPool", [x], kernel_shape=[spec.kernel] * 2, strides=[spec.stride] * 2)
            size = _out_size(size, spec.kernel, spec.stride, 0)
            continue
        c_out = spec.channels // div
        w, b = g.weight((c_out, channels, spec.kernel, spec.kernel), channels * spec.kernel**2)
        x = g.add("Conv", [x, w, b], kernel_shape=[spec.kernel] * 2, strides=[spec.stride] * 2,
                  pads=[spec.pad] * 4, dilations=[1, 1], group=1)
        x = g.add("Relu", [x])
        channels, size = c_out, _out_size(size, spec.kernel, spec.stride, spec.pad)
    x = g.add("Flatten", [x], axis=1)
    width = channels * size * size
    for i, n_out in enumerate([h // div for h in HIDDEN] + [CLASSES]):
        w, b = g.weight((n_out, width), width)
        x = g.add("Gemm", [x, w, b], alpha=1.0, beta=1.0, transB=1)
        if i < len(HIDDEN):
            x = g.add("Relu", [x])
        width = n_out
    g.nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        g.nodes, model_name(name, small),
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER,
                              doc_string=f"{name}-shaped network with random He-initialised weights (seed {seed})")
    model.ir_version = IR_VERSION
    return model


def build_resnet18(small: bool = False, seed: int = 0) -> onnx.ModelProto:
    """torchvision's ResNet-18 layer shapes, from the small ResNet's PyTorch-style pieces."""
    from build_models import GraphBuilder, gemm, relu
    from build_resnet import basic_block, conv_bn, torch_flatten

    div = SMALL_DIVISOR if small else 1
    b = GraphBuilder(model_name("resnet18", small), np.random.default_rng(seed))
    x = b.input("input", ["batch", 3, 224, 224])
    channels = 64 // div
    h = relu(b, conv_bn(b, x, 3, channels, 7, stride=2))  # 64×112×112
    h = b.node("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # 64×56×56
    for width, stride in RESNET18_STAGES:
        h = basic_block(b, h, channels, width // div, stride)
        h = basic_block(b, h, width // div, width // div, 1)
        channels = width // div
    h = b.node("GlobalAveragePool", [h])
    gemm(b, torch_flatten(b, h), channels, CLASSES, out="logits")
    b.output("logits", ["batch", CLASSES])
    return b.build(f"resnet18-shaped network with random He-initialised weights (seed {seed})")


def nominal_input(seed: int = 0) -> np.ndarray:
    """A smooth random 'image' in [0, 1], ImageNet-normalised, shape [1, 3, 224, 224] float32."""
    rng = np.random.default_rng(seed + 1000)
    coarse = rng.uniform(0.0, 1.0, (3, 14, 14))
    image = np.repeat(np.repeat(coarse, 16, axis=1), 16, axis=2)  # blocky 224×224
    kernel = np.ones(9) / 9  # blur the block edges along each axis
    for axis in (1, 2):
        image = np.apply_along_axis(lambda v: np.convolve(np.pad(v, 4, mode="edge"), kernel, "valid"), axis, image)
    image = np.clip(image + 0.05 * rng.standard_normal(image.shape), 0.0, 1.0).astype(np.float32)
    return ((image - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None])[None].astype(np.float32)


def parameter_count(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)


def save(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model``; with external data (``<name>.onnx.data``) if it exceeds 2 GB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    external = model.ByteSize() > PROTO_LIMIT
    tmp = path.with_suffix(".onnx.tmp")
    if external:
        onnx.save_model(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, tmp)
    os.replace(tmp, path)


def ensure(name: str, out: Path = DEFAULT_OUT, small: bool = False, seed: int = 0,
           force: bool = False) -> tuple[Path, Path]:
    """Build ``name`` into ``out`` unless both of its files are already there; return their paths."""
    model_path, x0_path = paths(name, Path(out), small)
    if force or not (model_path.exists() and x0_path.exists()):
        model = build_model(name, small, seed)
        save(model, model_path)
        onnx.checker.check_model(str(model_path))
        np.save(x0_path, nominal_input(seed))
    return model_path, x0_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--only", choices=NAMES, help="build only this model")
    parser.add_argument("--small", action="store_true", help="widths divided by 8 (quick tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if the files exist")
    args = parser.parse_args(argv)
    for name in [args.only] if args.only else NAMES:
        start = time.perf_counter()
        model_path, x0_path = ensure(name, args.out, args.small, args.seed, args.force)
        size = model_path.stat().st_size / 2**20
        print(f"{model_path}  ({size:.1f} MiB, {time.perf_counter() - start:.1f} s)  {x0_path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
