"""Print the README's comparison table: per-layer (paper-style) vs onnxlip's tightened bound and
radius vs the global bound vs what attacks find, for the reference nets and the shipped models;
for image models, also the radius and attack distance over the valid pixels (``--input-range``).

Usage: python tools/compare.py [--eps 0.01] [--models mnist_lenet cifar10_net ...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from onnxlip.bounds.perlayer.engine import global_bound, local_bound
from onnxlip.importer import load_model
from onnxlip.robustness.radius import certified_radius
from onnxlip.robustness.attacks import min_adversarial_distance
from onnxlip.robustness.lower_bounds import ascent_lower_bound
from onnxlip.bounds.domain import InputRange
from onnxlip.bounds.tight.chain import tight_bound

MODELS = Path(__file__).resolve().parent.parent / "models"
DEFAULT = ["mnist_lenet", "cifar10_net", "mlp", "convnet", "batchnorm_net", "nhwc_tf", "resnet_small"]
# Valid pixels of the image models: the reference nets' normalisations (their README), and the
# demo models' nominal inputs, which tools/build_models.py draws as pixels in [0, 1].
PIXELS = {
    "mnist_lenet": InputRange(0.0, 1.0, (0.1307,), (0.3081,)),
    "cifar10_net": InputRange(0.0, 1.0, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "convnet": InputRange(0.0, 1.0), "batchnorm_net": InputRange(0.0, 1.0), "nhwc_tf": InputRange(0.0, 1.0),
}


def row(name: str, eps: float) -> str:
    """One markdown row for model ``name``."""
    net = load_model(MODELS / f"{name}.onnx")
    x0 = np.load(MODELS / f"{name}_x0.npy")[0].astype(np.float64)
    paper = local_bound(net, x0, eps).bound
    best = tight_bound(net, x0, eps).bound
    lower = ascent_lower_bound(net, x0, eps).value
    radius = certified_radius(net, x0)
    attack = min_adversarial_distance(net, x0)
    pixels = "n/a | n/a"
    if name in PIXELS:
        box = PIXELS[name].box(x0)
        pixels = (f"{certified_radius(net, x0, box=box).radius:.3g} | "
                  f"{min_adversarial_distance(net, x0, box=box).distance:.3g}")
    return (f"| {name} | {paper:.4g} | {best:.4g} | {global_bound(net).bound:.4g} | {lower:.4g} | "
            f"{radius.radius_paper:.3g} | {radius.radius:.3g} ({radius.method}) | {attack.distance:.3g} | {pixels} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eps", type=float, default=0.01)
    parser.add_argument("--models", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    print(f"| model | paper-style L(ε={args.eps:g}) | onnxlip best L | global | lower bound (ascent) "
          "| radius, paper-style | radius, onnxlip | attack distance | radius, valid pixels | attack, valid pixels |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        print(row(name, args.eps), flush=True)


if __name__ == "__main__":
    main()
