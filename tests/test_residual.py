"""Residual networks: import of PyTorch-style ResNets (Residual IR nodes), forward against
onnxruntime, JVP/VJP, the per-layer bound with residual blocks (brute force, soundness by
sampling through onnxruntime, attacks), certified radius, and refused topologies."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import MODELS_DIR, adjoint_gap, assert_rel_close, const, make_model, node, run_ort, save_model
from onnxlip.bounds import global_bound, local_bound, sweep
from onnxlip.importer import load_model
from onnxlip.radius import certified_radius
from onnxlip.attacks import ascent_lower_bound, min_adversarial_distance
from onnxlip.errors import UnsupportedModelError
from onnxlip.ir import Conv, Dense, Relu, Reshape, Residual, Scale, all_nodes
from onnxlip.methods import local_bounds
from onnxlip.network import Network

from .random_nets import ball_samples

RESNET = MODELS_DIR / "resnet_small.onnx"


@pytest.fixture(scope="module")
def resnet() -> tuple[Network, np.ndarray]:
    net = load_model(RESNET)
    return net, np.load(MODELS_DIR / "resnet_small_x0.npy")[0].astype(np.float64)


def max_sampled_ratio(path: Path, net: Network, x0: np.ndarray, eps: float, n: int, seed: int) -> float:
    """Largest ‖f(x) − f(x0)‖/‖x − x0‖ over n points of the ball, f run by onnxruntime."""
    points = ball_samples(x0, eps, n, np.random.default_rng(seed))
    outputs = run_ort(path, np.concatenate([x0[None], points])).astype(np.float64)
    deltas = np.linalg.norm((outputs[1:] - outputs[0]).reshape(n, -1), axis=1)
    return float(np.max(deltas / np.linalg.norm((points - x0[None]).reshape(n, -1), axis=1)))


def assert_below(ratio: float, bound: float, eps: float) -> None:
    # float32 in onnxruntime: allow its rounding, relative to the output scale
    assert ratio <= bound * (1 + 1e-4) + 1e-3 / eps, f"sampled ratio {ratio} above the bound {bound} at eps={eps}"


# --------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------


def test_resnet_imports_as_chain_of_blocks(resnet) -> None:
    net, _ = resnet
    assert [type(n) for n in net.nodes] == [Conv, Relu, Residual, Relu, Residual, Relu, Conv, Reshape, Dense]
    block1, block2 = net.nodes[2], net.nodes[4]
    assert [type(n) for n in block1.main] == [Conv, Relu, Conv] and block1.skip == ()
    assert [type(n) for n in block2.main] == [Conv, Relu, Conv] and [type(n) for n in block2.skip] == [Conv]
    assert block2.skip[0].window.strides == (2, 2) and block2.skip[0].names[-1].startswith("BatchNormalization")
    assert block2.in_shape == (8, 16, 16) and block2.out_shape == (16, 8, 8)
    assert not any(isinstance(n, Scale) for n in all_nodes(net.nodes)), "a BatchNorm was not folded"
    convs = [n for n in all_nodes(net.nodes) if isinstance(n, Conv) and n.names[0].startswith("Conv")]
    assert len(convs) == 6 and all(n.names[-1].startswith("BatchNormalization") for n in convs)
    assert len(net.affine_nodes()) == 8 and net.output_name == "output"


def test_resnet_matches_onnxruntime(resnet, rng) -> None:
    net, x0 = resnet
    assert_rel_close(net.forward(x0[None]), run_ort(RESNET, x0[None]), 1e-4, "at x0")
    x = rng.uniform(-1, 2, (6, *net.input_shape))
    expected = run_ort(RESNET, x)
    actual = net.forward(x.astype(np.float32).astype(np.float64))
    for k in range(len(x)):
        assert_rel_close(actual[k], expected[k], 1e-4, f"sample {k}")


def test_resnet_jvp_vjp_adjoint_and_finite_differences(resnet, rng) -> None:
    net, x0 = resnet
    acts = net.activations(x0)
    assert len(acts) == len(net.nodes) + 1
    gap = adjoint_gap(lambda v: net.jvp(acts, v), lambda u: net.vjp(acts, u), net.input_shape, net.output_shape, rng)
    assert gap < 1e-12
    v = rng.standard_normal((3, *net.input_shape))
    h = 1e-6  # the network is piecewise linear: central differences are exact unless a kink is crossed
    numeric = (net.forward(x0 + h * v) - net.forward(x0 - h * v)) / (2 * h)
    assert_rel_close(net.jvp(acts, v), numeric, 1e-6, "jvp vs finite differences")


def test_residual_node_jvp_vjp(resnet, rng) -> None:
    net, x0 = resnet
    acts = net.activations(x0)
    block = net.nodes[4]
    a = acts[4]
    assert np.array_equal(block.forward(a), acts[5])
    gap = adjoint_gap(lambda v: block.jvp(a, v), lambda u: block.vjp(a, u), block.in_shape, block.out_shape, rng)
    assert gap < 1e-12


# --------------------------------------------------------------------------
# Bounds on the ResNet
# --------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-3, 0.1, 1.0])
def test_resnet_local_bound_is_sound(resnet, eps: float) -> None:
    net, x0 = resnet
    result = local_bound(net, x0, eps)
    assert_below(max_sampled_ratio(RESNET, net, x0, eps, 200, 0), result.bound, eps)
    assert ascent_lower_bound(net, x0, eps, steps=20, restarts=4).value <= result.bound
    for variant in (local_bound(net, x0, eps, interval=True), local_bound(net, x0, eps, certified=True)):
        assert_below(max_sampled_ratio(RESNET, net, x0, eps, 100, 1), variant.bound, eps)


def test_resnet_layer_table_has_one_row_per_block(resnet) -> None:
    net, x0 = resnet
    result = local_bound(net, x0, 0.01)
    ops = [layer.op for layer in result.layers]
    assert ops[1] == "residual(conv 8x8x3x3 p1 + relu + conv 8x8x3x3 p1 | identity)"
    assert ops[3] == "residual(conv 16x8x3x3 s2 p1 + relu + conv 16x16x3x3 p1 | conv 16x8x1x1 s2)"
    assert [layer.index for layer in result.layers] == [0, 2, 3, 4, 5, 6, 7, 8]
    assert result.bound == pytest.approx(np.prod([layer.lipschitz for layer in result.layers]), rel=1e-12)
    for before, layer in zip(result.layers, result.layers[1:]):
        assert layer.eps_in == pytest.approx(before.eps_out, rel=1e-12)
    assert result.layers[1].lipschitz > 1  # identity skip adds 1 to the main branch's product


def test_resnet_bound_grows_with_eps_below_global(resnet) -> None:
    net, x0 = resnet
    bounds = [r.bound for r in sweep(net, x0, list(np.geomspace(1e-4, 30, 8)))]
    assert all(b2 >= b1 * (1 - 1e-6) for b1, b2 in zip(bounds, bounds[1:]))
    g = global_bound(net)
    assert bounds[-1] <= g.bound * (1 + 1e-6)
    assert g.layers[2].op.startswith("residual(") and g.layers[2].lipschitz > 1
    paper, best = (local_bounds(net, x0, [1e-3], method)[0] for method in ("paper", "best"))
    assert paper.bound == pytest.approx(local_bound(net, x0, 1e-3).bound, rel=1e-6)
    assert best.bound <= paper.bound * (1 + 1e-9)  # tight mode is chain-only: the paper bound, interval-capped


def test_resnet_global_bound_by_hand(resnet) -> None:
    net, _ = resnet
    norms = {id(n): global_bound(Network((n,), n.in_shape)).bound for n in net.affine_nodes()}
    b1, b2 = net.nodes[2], net.nodes[4]
    expected = (norms[id(net.nodes[0])] * (norms[id(b1.main[0])] * norms[id(b1.main[2])] + 1)
                * (norms[id(b2.main[0])] * norms[id(b2.main[2])] + norms[id(b2.skip[0])])
                * norms[id(net.nodes[6])] * norms[id(net.nodes[8])])
    assert global_bound(net).bound == pytest.approx(expected, rel=1e-6)


def test_resnet_radius_below_attack_distance(resnet) -> None:
    net, x0 = resnet
    r = certified_radius(net, x0, method="paper")
    attack = min_adversarial_distance(net, x0)
    assert 0 < r.radius_global <= r.radius_paper <= r.radius
    assert attack.found and r.radius < attack.distance
    points = ball_samples(x0, r.radius, 200, np.random.default_rng(0))
    assert np.all(run_ort(RESNET, points).argmax(axis=1) == r.label)


# --------------------------------------------------------------------------
# Small residual MLPs: brute force and property tests
# --------------------------------------------------------------------------


def _residual_mlp(seed: int, skip: bool) -> tuple[Network, np.ndarray]:
    """x -> Residual(W1, relu, W2 | Ws or identity) -> W3."""
    rng = np.random.default_rng(seed)
    n, h, m = 6, 9, 3
    w1, w2, ws, w3 = (rng.standard_normal(s) for s in ((h, n), (n, h), (n, n), (m, n)))
    b1 = rng.standard_normal(h)
    main = (Dense(w1, b1, (n,), (h,)), Relu((h,), (h,)), Dense(w2, np.zeros(n), (h,), (n,)))
    side = (Dense(ws, np.zeros(n), (n,), (n,)),) if skip else ()
    nodes = (Residual(main, side, (n,), (n,)), Dense(w3, np.zeros(m), (n,), (m,)))
    return Network(nodes, (n,)), rng.standard_normal(n)


def _brute_force(net: Network, x0: np.ndarray, eps: float) -> float:
    """(‖R W1‖·‖W2 D‖ + ‖Ws‖ or 1)·‖W3‖ with dense matrices and numpy.linalg.svd."""
    block, last = net.nodes
    (d1, _, d2), skip = block.main, block.skip
    y0 = d1.weight @ x0 + d1.bias
    y_up = y0 + eps * np.linalg.norm(d1.weight, axis=1)
    gap = y_up - y0
    r = np.where(gap > 0, (np.maximum(y_up, 0) - np.maximum(y0, 0)) / np.where(gap > 0, gap, 1), 0)
    mask = (y_up > 0).astype(float)
    main = np.linalg.norm(r[:, None] * d1.weight, 2) * np.linalg.norm(d2.weight * mask[None, :], 2)
    side = np.linalg.norm(skip[0].weight, 2) if skip else 1.0
    return (main + side) * np.linalg.norm(last.weight, 2)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("eps", [1e-3, 0.5, 5.0])
def test_residual_mlp_matches_brute_force(seed: int, skip: bool, eps: float) -> None:
    net, x0 = _residual_mlp(seed, skip)
    assert local_bound(net, x0, eps).bound == pytest.approx(_brute_force(net, x0, eps), rel=1e-10)


def _gemm(rng: np.random.Generator, src: str, out: str, n_in: int, n_out: int, tag: str) -> tuple[list, list]:
    w = rng.standard_normal((n_out, n_in)) * np.sqrt(2 / n_in)
    inits = [const(f"w{tag}", w), const(f"b{tag}", 0.1 * rng.standard_normal(n_out))]
    return [node("Gemm", [src, f"w{tag}", f"b{tag}"], out, transB=1)], inits


def _residual_onnx(path: Path, seed: int, nested: bool = False) -> Path:
    """Gemm Relu [x + main(x)] Relu Gemm, main = Gemm Relu Gemm (or a block inside it)."""
    rng = np.random.default_rng(seed)
    parts = [_gemm(rng, "input", "g0", 5, 8, "0"), ([node("Relu", ["g0"], "x")], []), _gemm(rng, "x", "m1", 8, 8, "1"),
             ([node("Relu", ["m1"], "r1")], [])]
    if nested:  # r1 + Gemm(Relu(Gemm(r1))) inside the main branch
        parts += [_gemm(rng, "r1", "n1", 8, 6, "n1"), ([node("Relu", ["n1"], "nr")], []),
                  _gemm(rng, "nr", "n2", 6, 8, "n2"), ([node("Add", ["r1", "n2"], "r1b")], [])]
    parts += [_gemm(rng, "r1b" if nested else "r1", "m2", 8, 8, "2"), ([node("Add", ["m2", "x"], "s")], []),
              ([node("Relu", ["s"], "rs")], []), _gemm(rng, "rs", "output", 8, 3, "3")]
    model = make_model([n for p in parts for n in p[0]], (5,), [t for p in parts for t in p[1]])
    return save_model(model, path.parent, path.stem)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), eps=st.floats(1e-3, 3.0), nested=st.booleans(), interval=st.booleans())
def test_sampled_ratios_never_exceed_residual_bound(tmp_path: Path, seed: int, eps: float, nested: bool,
                                                    interval: bool) -> None:
    path = _residual_onnx(tmp_path / f"res{seed}_{nested:d}.onnx", seed, nested)
    net = load_model(path)
    x0 = np.random.default_rng(seed).standard_normal(net.input_shape)
    assert_rel_close(net.forward(x0[None]), run_ort(path, x0[None]), 1e-4, "forward")
    bound = local_bound(net, x0, eps, interval=interval).bound
    assert_below(max_sampled_ratio(path, net, x0, eps, 300, seed), bound, eps)


def test_block_inside_a_branch_before_its_join(tmp_path: Path) -> None:
    """g -> a -> (a + Relu(a)) and g -> b, then their sum: a block nested in the main branch."""
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    nodes = gemm + [node("Relu", ["g"], "a"), node("Relu", ["g"], "b"), node("Relu", ["a"], "c"),
                    node("Add", ["a", "c"], "ac"), node("Add", ["b", "ac"], "output")]
    path = save_model(make_model(nodes, (4,), inits), tmp_path)
    net = load_model(path)
    block = net.nodes[1]
    assert [type(n) for n in block.main] == [Relu, Residual] and [type(n) for n in block.skip] == [Relu]
    x = np.random.default_rng(1).standard_normal((4, 4))
    assert_rel_close(net.forward(x), run_ort(path, x), 1e-5)


def test_nested_blocks_import_and_bound(tmp_path: Path) -> None:
    net = load_model(_residual_onnx(tmp_path / "nested.onnx", 3, nested=True))
    (block,) = [n for n in net.nodes if isinstance(n, Residual)]
    inner = [n for n in block.main if isinstance(n, Residual)]
    assert block.skip == () and len(inner) == 1 and inner[0].skip == ()
    x0 = np.random.default_rng(3).standard_normal(net.input_shape)
    assert local_bound(net, x0, 0.1).bound <= global_bound(net).bound


def test_add_of_a_tensor_and_its_relu_is_a_block(tmp_path: Path) -> None:
    """Gemm then g + Relu(g): the smallest residual block (main = Relu, skip = identity)."""
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    model = make_model(gemm + [node("Relu", ["g"], "r"), node("Add", ["g", "r"], "output")], (4,), inits)
    path = save_model(model, tmp_path)
    net = load_model(path)
    assert [type(n) for n in net.nodes] == [Dense, Residual]
    assert [type(n) for n in net.nodes[1].main] == [Relu] and net.nodes[1].skip == ()
    x = np.random.default_rng(1).standard_normal((4, 4))
    assert_rel_close(net.forward(x), run_ort(path, x), 1e-5)


# --------------------------------------------------------------------------
# Topologies that stay refused
# --------------------------------------------------------------------------


def _refused(tmp_path: Path, nodes: list, inits: list) -> UnsupportedModelError:
    with pytest.raises(UnsupportedModelError) as info:
        load_model(save_model(make_model(nodes, (4,), inits), tmp_path))
    assert "\n" not in str(info.value)
    return info.value


def test_three_way_branch_is_refused(tmp_path: Path) -> None:
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    nodes = gemm + [node("Relu", ["g"], "a"), node("Relu", ["g"], "b"), node("Add", ["a", "b"], "ab"),
                    node("Add", ["ab", "g"], "output")]
    err = _refused(tmp_path, nodes, inits)
    assert [(p.name, p.op_type) for p in err.problems] == [("Add_output", "Add")]
    assert "3 ways" in str(err) and "'g'" in str(err)


def test_branches_meeting_at_different_adds_are_refused(tmp_path: Path) -> None:
    """g -> a, g -> b, s = a + b, then s + a: a feeds two Adds (not series-parallel)."""
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    nodes = gemm + [node("Relu", ["g"], "a"), node("Relu", ["g"], "b"), node("Add", ["a", "b"], "s"),
                    node("Add", ["s", "a"], "output")]
    err = _refused(tmp_path, nodes, inits)
    assert [(p.name, p.op_type) for p in err.problems] == [("Add_output", "Add")]
    assert "branches at tensor 'a'" in str(err)


def test_concat_of_branches_names_the_concat(tmp_path: Path) -> None:
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    nodes = gemm + [node("Relu", ["g"], "a"), node("Concat", ["g", "a"], "output", axis=1)]
    err = _refused(tmp_path, nodes, inits)
    assert [(p.name, p.op_type) for p in err.problems] == [("Concat_output", "Concat")]


def test_add_of_branches_with_different_shapes_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gemm, inits = _gemm(rng, "input", "g", 4, 5, "1")
    side, more = _gemm(rng, "g", "h", 5, 1, "2")
    err = _refused(tmp_path, gemm + side + [node("Add", ["g", "h"], "output")], inits + more)
    assert [(p.name, p.op_type) for p in err.problems] == [("Add_output", "Add")]
    assert "same shape" in str(err)
