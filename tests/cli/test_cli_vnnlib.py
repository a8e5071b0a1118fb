"""VNN-LIB property files as inputs: the parser, and every command taking one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxlip.errors import InputError
from onnxlip.inputs.vnnlib import box_input, parse_vnnlib

from cli_runner import model, run, run_json
from helpers import box_text


def test_parse_box_centre_and_radius() -> None:
    lo, hi = np.array([0.0, -1.0, 2.0]), np.array([1.0, 1.0, 2.0])
    box = parse_vnnlib(box_text(lo, hi, outputs=2, extra="(assert (<= Y_0 Y_1))\n"))
    assert np.allclose(box.centre, [0.5, 0.0, 2.0]) and np.allclose(box.half_widths, [0.5, 1.0, 0.0])
    assert box.radius == pytest.approx(np.sqrt(0.25 + 1.0))  # ‖half-widths‖₂
    assert box.outputs == 2 and box.ignored == 1 and "1 output constraint ignored" in box.notes()[0]


def test_parse_variants() -> None:
    text = """
    (declare-const X_0 Real) ; comment after a declaration
    (declare-const X_1 Real)
    (declare-const Y_0 Real)
    (assert (<= 0.25 X_0))            ; number first: 0.25 <= X_0
    (assert (and (<= X_0 0.75) (>= X_0 (- 1.0)) (< X_1 1e-1)))
    (assert (or (and (>= X_1 -0.1) (>= Y_0 0))))
    (assert (<= X_0 0.5))             ; tighter bound wins
    (check-sat)
    """
    box = parse_vnnlib(text)
    assert np.allclose(box.lower, [0.25, -0.1]) and np.allclose(box.upper, [0.5, 0.1])
    assert box.ignored == 1


def test_disjuncts_with_one_input_box_are_one_box():
    """nn4sys-style: the same input box in every disjunct, different output constraints."""
    one = "(and (>= X_0 0.25) (<= X_0 0.5) ({} Y_0 1))"
    box = parse_vnnlib(f"(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                       f"(assert (or {one.format('>=')} {one.format('<=')}))\n")
    assert np.allclose(box.lower, [0.25]) and np.allclose(box.upper, [0.5]) and box.ignored == 2


@pytest.mark.parametrize("text, message", [
    ("(declare-const X_0 Real)\n(assert (<= X_0 1))\n", "lack a lower or upper bound"),
    ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(assert (<= X_0 X_1))\n", ":3: only constant bounds"),
    ("(declare-const X_0 Real)\n(assert (or (and (<= X_0 1) (>= X_0 0)) (and (<= X_0 3) (>= X_0 2))))\n",
     "disjunction of 2 different input boxes"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1)\n", "never closed"),
    ("(declare-const X_0 Real))\n", "unbalanced"),
    ("(declare-const X_1 Real)\n", "not all declared"),
    ("(declare-const X_0 Int)\n", "expected Real"),
    ("(declare-const Z Real)\n", "neither X_i nor Y_j"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 0))\n(assert (>= X_0 1))\n", "empty box"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_3 1))\n", "undeclared"),
    ("(declare-fun f () Real)\n", "unsupported command"),
])
def test_parse_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_vnnlib(text, "prop.vnnlib")
    assert str(info.value).startswith("prop.vnnlib")


def test_box_input_reshapes_in_c_order() -> None:
    lo = np.arange(12, dtype=float)
    box = parse_vnnlib(box_text(lo, lo + 2))
    x0 = box_input(box, (3, 2, 2))
    assert x0.shape == (3, 2, 2) and np.array_equal(x0.reshape(-1), lo + 1)
    with pytest.raises(InputError, match="declares 12 inputs"):
        box_input(box, (1, 28, 28))


@pytest.fixture
def mlp_property(tmp_path: Path) -> tuple[str, np.ndarray, Path]:
    path, x0 = model("mlp")
    centre = np.load(x0).reshape(-1).astype(np.float64)
    half = np.linspace(0.001, 0.02, centre.size)
    prop = tmp_path / "prop.vnnlib"
    prop.write_text(box_text(centre - half, centre + half, outputs=10,
                             extra="(assert (or (and (>= Y_0 Y_2)) (and (>= Y_1 Y_2))))\n"))
    return path, half, prop


def test_local_defaults_eps_to_box_radius(mlp_property: tuple[str, np.ndarray, Path]) -> None:
    path, half, prop = mlp_property
    code, stdout, stderr = run("local", path, "--input", str(prop), "--json")
    data = json.loads(stdout)
    assert code == 0 and data["bounds"][0]["eps"] == pytest.approx(np.linalg.norm(half))
    assert "output constraint ignored" in stderr
    x0 = model("mlp")[1]  # same x0 (up to float32), so the same bound as the array input
    same = run_json("local", path, "--input", x0, "--eps", str(np.linalg.norm(half)))
    assert same["bounds"][0]["bound"] == pytest.approx(data["bounds"][0]["bound"], rel=1e-5)
    # --eps overrides the box radius
    assert run_json("local", path, "-i", str(prop), "-e", "0.3")["bounds"][0]["eps"] == 0.3


def test_certify_check_sweep_lower_with_vnnlib(mlp_property: tuple[str, np.ndarray, Path], tmp_path: Path) -> None:
    path, half, prop = mlp_property
    cert = run_json("certify", path, "--input", str(prop))
    assert cert["box_radius"] == pytest.approx(np.linalg.norm(half)) and cert["box_certified"] is True
    code, stdout, _ = run("check", path, "--input", str(prop), "--max-bound", "100", "--json")
    assert code == 0 and json.loads(stdout)["conditions"][0]["eps"] == pytest.approx(np.linalg.norm(half))
    sweep = run_json("sweep", path, "--input", str(prop), "--n", "3")
    assert sweep["points"][-1]["eps"] == pytest.approx(np.linalg.norm(half))
    lower = run_json("lower", path, "--input", str(prop), "--samples", "16", "--steps", "3", "--restarts", "2")
    assert lower["eps"] == pytest.approx(np.linalg.norm(half))


def test_vnnlib_for_the_wrong_model(mlp_property: tuple[str, np.ndarray, Path]) -> None:
    _, _, prop = mlp_property
    code, _, stderr = run("local", model("convnet")[0], "--input", str(prop))
    assert code == 2 and "declares 20 inputs" in stderr and len(stderr.strip().splitlines()) == 1
