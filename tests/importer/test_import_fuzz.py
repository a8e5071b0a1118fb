"""Fuzz the importer: random ONNX graphs over the supported operators, their opset
variants and attribute forms (``random_graphs``: pads as attribute or input, axes as
attribute or input, auto_pad, ceil_mode, dilations, groups, transB/alpha/beta,
normalisation constants to fold, residual adds, output heads, dangling nodes, extra
outputs). On each: the IR agrees with onnxruntime on the original file, the local bound is
above every ratio onnxruntime shows in the ball, and the certified radius is below the
smallest attack found."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from helpers import exposing, run_ort, run_ort_each
from onnxlip.importer import load_model
from onnxlip.robustness.attacks import min_adversarial_distance
from onnxlip.bounds.methods import local_bounds
from onnxlip.robustness.radius import certified_radius
from random_graphs import random_model

SEEDS = range(24)


def ball(x0: np.ndarray, eps: float, n: int, rng: np.random.Generator) -> np.ndarray:
    d = rng.standard_normal((n, x0.size))
    d *= (eps * rng.uniform(0, 1, (n, 1)) ** (1 / x0.size)) / np.linalg.norm(d, axis=1, keepdims=True)
    return x0 + d.reshape(n, *x0.shape)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_graph(seed: int, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.onnx"
    model = random_model(seed)
    onnx.save(model, str(path))
    net = load_model(path)
    path = tmp_path / "logits.onnx"
    onnx.save(exposing(model, net.output_name), str(path))
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(net.input_shape)
    eps = 0.3
    xs = np.concatenate([x0[None], ball(x0, eps, 48, rng)]).astype(np.float32)
    logits = run_ort_each(path, xs, net.output_name).astype(np.float64)
    ours = np.asarray(net.forward(xs.astype(np.float64))).reshape(len(xs), -1)
    assert np.max(np.abs(ours - logits)) <= 1e-4 * max(1.0, np.max(np.abs(logits))), "IR != onnxruntime"
    dx = np.linalg.norm((xs[1:] - xs[:1]).reshape(len(xs) - 1, -1).astype(np.float64), axis=1)
    ratios = np.linalg.norm(logits[1:] - logits[:1], axis=1) / dx
    bound = local_bounds(net, x0, [eps])[0].bound
    assert bound >= ratios.max() * (1 - 1e-4), f"local bound {bound} < sampled ratio {ratios.max()}"
    radius = certified_radius(net, x0).radius
    attack = min_adversarial_distance(net, x0, ddn_steps=60, bisections=5)
    if attack.found:
        point = np.asarray(attack.point, dtype=np.float32)[None]
        assert int(np.argmax(run_ort(path, point, net.output_name))) != int(np.argmax(logits[0]))
        assert radius <= attack.distance * (1 + 1e-6), f"radius {radius} > attack {attack.distance}"
