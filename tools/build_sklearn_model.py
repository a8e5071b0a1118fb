"""Build models/sklearn_mlp.onnx: a scikit-learn MLPClassifier (ReLU) exported by skl2onnx.

Needs scikit-learn and skl2onnx (not onnxlip dependencies): pip install scikit-learn skl2onnx.
The exported graph ends in Softmax → ArgMax → ArrayFeatureExtractor → Reshape → Cast, which
onnxlip drops (bounds are on the logits). The model and its nominal input are committed, so
tests need neither package.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def build(out: Path, seed: int = 0) -> None:
    """Train a small 3-class MLPClassifier on synthetic data and export it without ZipMap."""
    from sklearn.neural_network import MLPClassifier
    from skl2onnx import to_onnx

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((400, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5)
    clf = MLPClassifier(hidden_layer_sizes=(16, 8), activation="relu", max_iter=2000, random_state=seed).fit(x, y)
    model = to_onnx(clf, x[:1], options={"zipmap": False}, target_opset=17)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sklearn_mlp.onnx").write_bytes(model.SerializeToString())
    np.save(out / "sklearn_mlp_x0.npy", x[:1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "models")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
