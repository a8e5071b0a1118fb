"""Branch and bound on ReLU splits (``onnxlip.branching``): soundness on small random nets.

The strong test: a search may never prove row·f > t for a t above a value row·f(x) reached at
a point x of the ball (found by PGD); every domain's bound is also checked against the margin
at sampled points of that domain (onnxruntime), and its affine minorant pointwise."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import onnx

from helpers import exposing
from onnxlip.bounds.relax import branching, domains
from onnxlip.importer import load_model
from onnxlip.bounds.relax.margins import margin_rows
from onnxlip.bounds.relax.ranges import graph_ranges
from random_graphs import random_resnet
from onnxlip.bounds.tight.chain import build_secants

from random_nets import ball_samples, random_conv_net, random_mlp

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import bab_probe  # noqa: E402

CASES = [("mlp", 0, 0.8), ("mlp", 1, 1.2), ("mlp", 2, 0.6), ("conv", 3, 0.5), ("conv", 4, 0.8), ("resnet", 1, 0.3),
         ("resnet", 3, 0.3)]


def load_model_proto(model: onnx.ModelProto, path: Path):
    onnx.save(model, str(path))
    return load_model(path)


def _net(tmp_path: Path, kind: str, seed: int):
    if kind == "resnet":  # a DAG (residual blocks, Concat), its logits exposed for onnxruntime
        model = random_resnet(seed)
        net = load_model_proto(model, tmp_path / f"resnet{seed}.onnx")
        path = tmp_path / f"logits{seed}.onnx"
        onnx.save(exposing(model, net.output_name), str(path))
        return path, net, np.random.default_rng(seed + 100).standard_normal(net.input_shape)
    if kind == "mlp":
        path = random_mlp(tmp_path / f"mlp{seed}.onnx", seed, (6, 12, 12, 3))
    else:
        path = random_conv_net(tmp_path / f"conv{seed}.onnx", seed, channels=1, size=6, hidden=10, classes=3)
    net = load_model(str(path))
    x0 = np.random.default_rng(seed + 100).standard_normal(net.input_shape)
    return path, net, x0


def _pgd_min(net, x0, eps, row, rng) -> float:
    xs = np.concatenate([bab_probe.pgd_points(net, x0, eps, row, 32, 60, rng), ball_samples(x0, eps, 2000, rng)])
    return float((net.forward(xs).reshape(len(xs), -1) @ row.reshape(-1)).min())


def _margins_and_ranges(net, x0, eps: float, seed: int):
    """The margin rows at x0, the ball's ranges, and a generator for the searches' points."""
    y0 = net.forward(x0[None]).reshape(-1)
    rows = margin_rows(y0, int(np.argmax(y0)), net.output_shape)
    ranges = build_secants(net, x0, eps).ranges if net.is_chain else graph_ranges(net.graph, x0, eps)
    return rows, ranges, np.random.default_rng(seed)


@pytest.mark.parametrize("kind,seed,eps", CASES)
def test_never_proves_above_a_reached_value(tmp_path: Path, kind: str, seed: int, eps: float) -> None:
    path, net, x0 = _net(tmp_path, kind, seed)
    rows, base, rng = _margins_and_ranges(net, x0, eps, seed)
    record = []
    for r in range(len(rows)):
        reached = _pgd_min(net, x0, eps, rows[r], rng)
        found: list = []
        res = branching.branch_and_bound(net.graph, base, rows[r : r + 1], x0, eps, max_domains=150,
                                         max_seconds=20, record=found, threshold=reached + 1e-9)
        assert not res.certified
        record.extend((r, d) for d in found)
        # the open leaves' bounds (the search's lower bound on the minimum) stay below it
        assert min(d.bound for d in found) <= reached
    slack = bab_probe.check(path, net, x0, eps, record, samples=2000, seed=seed)
    assert slack["points"] > 0
    assert slack["bound"] >= -1e-4 and slack["minorant"] >= -1e-4


@pytest.mark.parametrize("kind,seed,eps", CASES[:3])
def test_splitting_closes_the_gap_on_small_mlps(tmp_path: Path, kind: str, seed: int, eps: float) -> None:
    """With every unstable unit splittable, a threshold a little under the reached minimum is proven."""
    _, net, x0 = _net(tmp_path, kind, seed)
    rows, base, rng = _margins_and_ranges(net, x0, eps, seed)
    r = 0
    reached = _pgd_min(net, x0, eps, rows[r], rng)
    root = domains.bound_domain(net.graph, domains.Domain({}, dict(base)), rows[r : r + 1], x0, eps)
    below = reached - 0.05 * (reached - root.bound)
    res = branching.branch_and_bound(net.graph, base, rows[r : r + 1], x0, eps, max_domains=2000,
                                     max_seconds=60, root=root, threshold=below)
    assert res.certified


def test_a_nan_bound_proves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: if the relaxation ever returned NaN for the children, the search must not
    count them as proven (a NaN compares False both ways)."""
    _, net, x0 = _net(tmp_path, "mlp", 1)
    eps = 5.0
    rows, base, _ = _margins_and_ranges(net, x0, eps, 1)
    assert not branching.certify_margins(net.graph, base, rows, x0, eps, max_seconds=3).certified
    real, calls = domains.lower_bounds, [0]

    def nan_after_the_roots(*args, **kwargs):
        calls[0] += 1
        out = real(*args, **kwargs)
        return out if calls[0] == 1 else np.full_like(out, np.nan)

    monkeypatch.setattr(domains, "lower_bounds", nan_after_the_roots)
    assert not branching.certify_margins(net.graph, base, rows, x0, eps, max_seconds=3).certified


def test_best_split_children_cover_the_parent(tmp_path: Path) -> None:
    """The chosen children are the two sign cases of one unsplit unit, with the ranges ``split``
    recomputes (the clamp-only ranges serve only the estimate)."""
    _, net, x0 = _net(tmp_path, "conv", 3)
    rows, base, _ = _margins_and_ranges(net, x0, 0.5, 3)
    root = domains.bound_domain(net.graph, domains.Domain({}, dict(base)), rows[:1], x0, 0.5)
    (active, inactive), = branching.best_split(net.graph, [root], rows[:1], x0, 0.5)
    k = next(k for k, s in active.signs.items() if np.any(s))
    (i,) = np.flatnonzero(active.signs[k].reshape(-1))
    assert active.signs[k].reshape(-1)[i] == 1 and inactive.signs[k].reshape(-1)[i] == -1
    assert (k, int(i)) in branching.candidate_units(root)
    expected = branching.split(net.graph, root, (k, int(i)), x0, 0.5)
    for got, want in zip((active, inactive), expected):
        for j in want.ranges:
            assert all(np.array_equal(a, b) for a, b in zip(got.ranges[j], want.ranges[j]))
