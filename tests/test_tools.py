"""The benchmark tools: ImageNet-shaped model builder, ``tools/bench.py``, ``tools/provable.py`` and the
torch-free parts of ``tools/compare_peers.py`` (its peers need torch, which these tests do not use)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxlip.importer import load_model

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
import build_imagenet_models as imagenet  # noqa: E402
import compare_peers  # noqa: E402

RTOL = 1e-4


@pytest.fixture(scope="module")
def small_alexnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("imagenet")
    subprocess.run([sys.executable, str(TOOLS / "build_imagenet_models.py"), "--out", str(out), "--only", "alexnet",
                    "--small"], check=True, capture_output=True, timeout=60)
    return imagenet.paths("alexnet", out, small=True)


def test_small_alexnet_files(small_alexnet):
    model_path, x0_path = small_alexnet
    model = onnx.load(model_path)
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert [onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == c.input[1])).shape[0]
            for c in convs] == [8, 24, 48, 32, 32]  # torchvision's 64, 192, 384, 256, 256 divided by 8
    x0 = np.load(x0_path)
    assert x0.shape == (1, 3, 224, 224) and x0.dtype == np.float32
    assert -2.2 < x0.min() < x0.max() < 2.7  # an ImageNet-normalised image


def assert_imagenet_model_matches_onnxruntime(model_path: Path, x0_path: Path) -> None:
    net = load_model(model_path)
    x0 = np.load(x0_path)
    assert net.input_shape == (3, 224, 224) and net.output_shape == (1000,)
    ours = net.forward(net.batch(x0.astype(np.float64)))
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: x0})[0]
    assert np.max(np.abs(ours - theirs)) <= RTOL * np.max(np.abs(theirs))


def test_small_alexnet_imports_and_matches_onnxruntime(small_alexnet):
    assert_imagenet_model_matches_onnxruntime(*small_alexnet)


def test_builder_is_deterministic():
    a = imagenet.build_model("vgg16", small=True, seed=3)
    b = imagenet.build_model("vgg16", small=True, seed=3)
    assert a.SerializeToString() == b.SerializeToString()
    assert sum(n.op_type == "Conv" for n in a.graph.node) == 13
    np.testing.assert_array_equal(imagenet.nominal_input(3), imagenet.nominal_input(3))


def test_bench_quick_prints_a_table(tmp_path):
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(TOOLS / "bench.py"), "--quick", "--repeat", "0", "--models", "mnist_lenet",
         "--stages", "paper,sweep,baseline", "--sweep-points", "5", "--json", str(report)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "paper s/bound" in result.stdout and "mnist_lenet" in result.stdout
    assert "× baseline" in result.stdout
    data = json.loads(report.read_text())
    stages = data["models"]["mnist_lenet"]
    assert {s["status"] for s in stages.values()} == {"ok"}
    assert stages["paper"]["seconds"] > 0
    rendered = subprocess.run([sys.executable, str(TOOLS / "bench.py"), "--from-json", str(report), "--markdown"],
                              capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0 and "| mnist_lenet |" in rendered.stdout
    # the naive baseline computes the paper's method as its authors did: their published figure
    published = json.loads((TOOLS.parent / "models" / "paper_numbers.json").read_text())
    assert stages["baseline"]["bound"] == pytest.approx(published["mnist_lenet"]["local_bound"]["bound"][0], rel=1e-3)


def test_small_resnet18_imports_and_matches_onnxruntime(tmp_path):
    model_path, x0_path = imagenet.ensure("resnet18", tmp_path, small=True)
    model = onnx.load(model_path)
    onnx.checker.check_model(model)
    assert sum(n.op_type == "Add" for n in model.graph.node) == 8  # eight BasicBlocks
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 20  # stem, 16 in blocks, 3 downsamples
    assert_imagenet_model_matches_onnxruntime(model_path, x0_path)
    assert imagenet.build_model("resnet18", small=True).SerializeToString() == model.SerializeToString()


def test_provable_table_compares_both_modes(tmp_path: Path) -> None:
    """``tools/provable.py`` runs certify with and without --estimate and says which is a proof."""
    out = tmp_path / "rows.json"
    cli = f"{sys.executable} -c \"import sys; from onnxlip.cli.app import main; sys.argv[0] = 'onnxlip'; main()\""
    done = subprocess.run([sys.executable, str(TOOLS / "provable.py"), "--models", "mlp", "--onnxlip", cli,
                           "--json", str(out), "--markdown"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(out.read_text())
    assert row["estimate"]["certified"] is False and row["certified"]["certified"] is True
    assert row["radius_ratio"] == pytest.approx(1.0, rel=1e-6) and "| mlp | " in done.stdout


def test_compare_peers_vnnlib_centre(tmp_path: Path) -> None:
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(assert (<= X_0 0.5))\n"
                    "(assert (>= X_0 0.25))\n(assert (<= X_1 -1e-1))\n(assert (>= X_1 -0.3))\n(assert (>= Y_0 Y_1))\n")
    np.testing.assert_allclose(compare_peers.vnnlib_centre(prop, 2), [0.375, -0.2])
    with pytest.raises(ValueError, match="missing"):
        compare_peers.vnnlib_centre(prop, 3)


def test_compare_peers_table_from_cached_peers(tmp_path: Path, monkeypatch, capsys) -> None:
    """With the peers cached for this x0 the script runs without torch and leaves the cache as it was."""
    onnx_path, x0_path, _ = compare_peers.MODELS["mnist_lenet"]
    logits = compare_peers.ort_logits(onnx_path, compare_peers.load_x0(onnx_path, x0_path)).ravel()
    top2 = np.sort(logits)[-2:]
    crown = {"radius": 0.2, "upper": 0.21, "seconds": 1.5, "calls": 3, "complete": True}
    cache = tmp_path / "peers.json"
    cache.write_text(json.dumps({"mnist_lenet": {
        "label": int(np.argmax(logits)), "margin": float(top2[1] - top2[0]), "maxpool": "relu", "note": "cached",
        "crown": crown, "alpha": {**crown, "radius": 0.205, "complete": False}}}))
    before = cache.read_text()
    monkeypatch.setitem(sys.modules, "torch", None)  # any import of torch fails
    monkeypatch.setattr(sys, "argv", ["compare_peers.py", "--models", "mnist_lenet", "--skip-onnxlip",
                                      "--threads", "1", "--peers-json", str(cache)])
    compare_peers.main()
    assert ("| mnist_lenet | skipped | 0.2 [< 0.21] (1.5 s, 3 calls) | 0.205 [< 0.21] (1.5 s, 3 calls) budget hit |"
            in capsys.readouterr().out)
    assert cache.read_text() == before
