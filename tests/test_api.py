"""The Python API: the CLI's numbers and checks, x0 with or without a batch axis, short reprs."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import onnxlip
from onnxlip.bounds import methods

from cli_runner import MODELS, run_json
from helpers import box_text

LENET, LENET_X0 = MODELS / "mnist_lenet.onnx", MODELS / "mnist_lenet_x0.npy"


@pytest.fixture(scope="module")
def lenet() -> tuple[onnxlip.Network, np.ndarray]:
    net = onnxlip.load_model(LENET)
    return net, onnxlip.load_input(LENET_X0, net)


@pytest.mark.parametrize("method", [None, "paper"])
def test_local_bound_matches_the_cli(lenet, method: str | None) -> None:
    net, x0 = lenet
    options = ["--method", method] if method else []
    cli = run_json("local", LENET, "-i", LENET_X0, "--eps", "0.01", "--eps", "0.1", *options)
    kwargs = {"method": method} if method else {}
    api = onnxlip.sweep(net, x0, [0.01, 0.1], **kwargs)
    assert [r.bound for r in api] == pytest.approx([b["bound"] for b in cli["bounds"]], rel=1e-9)
    assert onnxlip.local_bound(net, x0, 0.01, **kwargs).bound == pytest.approx(cli["bounds"][0]["bound"], rel=1e-9)


def test_default_is_the_clis_best(lenet) -> None:
    """``best``, provable: here the provable secant bound (more segments formed) is below the
    estimate's; ``certified=False`` gives the Lanczos figures."""
    net, x0 = lenet
    assert methods.DEFAULT_METHOD == "best" and methods.DEFAULT_CERTIFIED
    proven = onnxlip.local_bound(net, x0, 0.01)
    assert not proven.is_estimate and proven.bound == pytest.approx(67.1045, rel=1e-5)
    assert onnxlip.local_bound(net, x0, 0.01, certified=False).bound == pytest.approx(68.8944, rel=1e-5)
    assert onnxlip.local_bound(net, x0, 0.01, method="paper", certified=False).bound == pytest.approx(396.226, rel=1e-5)


def test_global_bound_and_radius_match_the_cli(lenet) -> None:
    net, x0 = lenet
    assert onnxlip.global_bound(net).bound == pytest.approx(run_json("global", LENET)["bound"], rel=1e-9)
    cli = run_json("certify", LENET, "-i", LENET_X0)
    api = onnxlip.certified_radius(net, x0)
    assert (api.radius, api.label, api.method) == (pytest.approx(cli["radius"], rel=1e-9), cli["label"], cli["method"])


def test_x0_with_or_without_batch_axis(lenet) -> None:
    net, x0 = lenet
    assert x0.shape == net.input_shape
    assert onnxlip.local_bound(net, x0[None], 0.01).bound == onnxlip.local_bound(net, x0, 0.01).bound


@pytest.mark.parametrize("eps", [-1.0, 0.0, math.nan, math.inf])
def test_bad_eps_is_refused_as_in_the_cli(lenet, eps: float) -> None:
    net, x0 = lenet
    with pytest.raises(onnxlip.InputError, match="eps must be a positive finite number"):
        onnxlip.local_bound(net, x0, eps)
    with pytest.raises(onnxlip.InputError, match="eps must be a positive finite number"):
        onnxlip.sweep(net, x0, [0.01, eps])


def test_bad_method_shape_and_values_are_refused(lenet) -> None:
    net, x0 = lenet
    with pytest.raises(onnxlip.InputError, match="method must be one of best, tight, paper, got 'fast'"):
        onnxlip.local_bound(net, x0, 0.01, method="fast")
    with pytest.raises(onnxlip.InputError, match=r"x0: shape \[1, 28, 27\] does not match the model input"):
        onnxlip.local_bound(net, x0[..., :27], 0.01)
    with pytest.raises(onnxlip.InputError, match="contains NaN or Inf"):
        onnxlip.certified_radius(net, np.full_like(x0, np.nan))
    with pytest.raises(onnxlip.InputError, match="label 10 is outside the model's 10 outputs"):
        onnxlip.certified_radius(net, x0, label=10)
    with pytest.raises(onnxlip.InputError, match="eps_grid is empty"):
        onnxlip.sweep(net, x0, [])


def test_load_input_reads_vnnlib_like_the_cli(tmp_path: Path) -> None:
    net = onnxlip.load_model(MODELS / "mlp.onnx")
    centre = np.load(MODELS / "mlp_x0.npy").reshape(-1).astype(np.float64)
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_text(centre - 0.01, centre + 0.01))
    assert np.allclose(onnxlip.load_input(prop, net).reshape(-1), centre)


def test_missing_model_or_directory_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(onnxlip.ModelLoadError, match="no such file"):
        onnxlip.load_model(tmp_path / "missing.onnx")
    with pytest.raises(onnxlip.ModelLoadError, match="is a directory, not an ONNX file"):
        onnxlip.load_model(tmp_path)


def test_flat_and_unit_axis_inputs_are_taken_like_the_batch_path(lenet) -> None:
    net, x0 = lenet
    assert onnxlip.local_bound(net, x0[0], 0.01).bound == onnxlip.local_bound(net, x0, 0.01).bound


def test_reprs_are_short(lenet) -> None:
    net, _ = lenet
    assert repr(net).startswith("<Network mnist_lenet.onnx: 1×28×28 → 10, 12 nodes") and len(repr(net)) < 200
    assert repr(net.nodes[0]) == "<Conv conv 6x1x5x5: 1×28×28 → 6×24×24, 156 parameters>"


def test_public_names_resolve() -> None:
    for name in onnxlip.__all__:
        assert getattr(onnxlip, name) is not None
    with pytest.raises(AttributeError):
        onnxlip.no_such_name  # noqa: B018


def test_cli_says_a_directory_is_one(tmp_path: Path) -> None:
    from cli_runner import run

    code, _, stderr = run("inspect", tmp_path)
    assert code == 2 and stderr.strip() == f"error: {tmp_path}: is a directory, not an ONNX file"
    code, _, stderr = run("local", MODELS / "mlp.onnx", "-i", tmp_path, "--eps", "0.1")
    assert code == 2 and "is a directory, not an input file" in stderr


def test_cli_takes_an_input_without_its_unit_axes(tmp_path: Path) -> None:
    flat = tmp_path / "x.npy"
    np.save(flat, np.load(LENET_X0).reshape(28, 28))
    same = run_json("local", LENET, "-i", flat, "--eps", "0.01", "--method", "paper")["bounds"][0]["bound"]
    assert same == pytest.approx(run_json("local", LENET, "-i", LENET_X0, "--eps", "0.01", "--method", "paper")["bounds"][0]["bound"])
