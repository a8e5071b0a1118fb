"""Residual networks: import of PyTorch-style ResNets as DAGs (Add and Concat nodes), forward
against onnxruntime, JVP/VJP, the per-layer bound on graphs (brute force, soundness by
sampling through onnxruntime, attacks), certified radius, and refused merges."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import MODELS_DIR, adjoint_gap, assert_rel_close, const, make_model, node, run_ort, save_model
from onnxlip.bounds.perlayer.engine import global_bound, local_bound, sweep
from onnxlip.importer import load_model
from onnxlip.robustness.radius import certified_radius
from onnxlip.robustness.attacks import min_adversarial_distance
from onnxlip.robustness.lower_bounds import ascent_lower_bound
from onnxlip.errors import UnsupportedModelError
from onnxlip.graph.nodes import Add, Concat, Conv, Dense, Relu, Reshape, Scale
from onnxlip.bounds.methods import local_bounds
from onnxlip.graph.network import Network

from random_nets import ball_samples

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


def test_resnet_imports_as_a_dag(resnet) -> None:
    net, _ = resnet
    assert [type(n) for n in net.nodes] == [Conv, Relu, Conv, Relu, Conv, Add, Relu, Conv, Relu, Conv, Conv, Add,
                                            Relu, Conv, Reshape, Dense]
    g = net.graph
    assert not net.is_chain and g.inputs[5] == (5, 2) and g.inputs[11] == (10, 11)  # identity skip; conv skip
    skip = net.nodes[10]
    assert g.inputs[10] == (7,) and g.readers(7) == [7, 10]
    assert skip.window.strides == (2, 2) and skip.names[-1].startswith("BatchNormalization")
    assert net.nodes[11].out_shape == (16, 8, 8)
    assert not any(isinstance(n, Scale) for n in net.nodes), "a BatchNorm was not folded"
    convs = [n for n in net.nodes if isinstance(n, Conv) and n.names[0].startswith("Conv")]
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


@pytest.mark.parametrize("merge", [Add((2, 3), (2, 3)), Concat(0, ((2, 3), (1, 3), (4, 3)), (7, 3)),
                                   Concat(1, ((2, 1), (2, 3)), (2, 4))])
def test_merge_nodes_adjoint_and_interval(merge, rng) -> None:
    shapes = merge.in_shapes if isinstance(merge, Concat) else (merge.in_shape, merge.in_shape)
    parts = [rng.standard_normal((3, *s)) for s in shapes]
    u = rng.standard_normal((3, *merge.out_shape))
    inner = sum(float(np.sum(p * q)) for p, q in zip(parts, merge.adjoint(u)))
    assert inner == pytest.approx(float(np.sum(merge.linear(*parts) * u)), rel=1e-12)
    boxes = [(p[:1] - 0.5, p[:1] + 0.5) for p in parts]
    lo, hi = merge.interval(*boxes)
    value = merge.forward(*(b[0] + rng.uniform(0, 1, b[0].shape) for b in boxes))
    assert np.all(lo <= value) and np.all(value <= hi)


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


def test_resnet_layer_table_has_one_row_per_layer_and_merge(resnet) -> None:
    net, x0 = resnet
    result = local_bound(net, x0, 0.01)
    ops = [layer.op for layer in result.layers]
    assert ops[:4] == ["conv 8x3x3x3 p1 + relu", "conv 8x8x3x3 p1 + relu", "conv 8x8x3x3 p1", "add"]
    assert [layer.index for layer in result.layers] == [0, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15]
    g, by_index = net.graph, {layer.index: layer for layer in result.layers}
    produced = {}  # tensor -> the ball the layer that produces it ends with
    for layer in result.layers:
        reads = g.inputs[layer.index]
        if layer.op != "add":
            assert layer.eps_in == pytest.approx(produced.get(reads[0], 0.01), rel=1e-12)
        end = layer.index + (2 if layer.op.endswith("+ relu") else 1)
        produced[end] = layer.eps_out
    add = by_index[5]  # identity skip: the main branch's ball plus the block input's
    assert add.eps_out == pytest.approx(by_index[4].eps_out + by_index[0].eps_out, rel=1e-12)
    assert result.bound == pytest.approx(result.layers[-1].eps_out / 0.01, rel=1e-12)


def test_resnet_bound_grows_with_eps_below_global(resnet) -> None:
    net, x0 = resnet
    bounds = [r.bound for r in sweep(net, x0, list(np.geomspace(1e-4, 30, 8)))]
    assert all(b2 >= b1 * (1 - 1e-6) for b1, b2 in zip(bounds, bounds[1:]))
    g = global_bound(net)
    assert bounds[-1] <= g.bound * (1 + 1e-6)
    assert g.layers[5].op == "add" and g.layers[5].lipschitz > 1
    paper, best = (local_bounds(net, x0, [1e-3], method, certified=False)[0] for method in ("paper", "best"))
    assert paper.bound == pytest.approx(local_bound(net, x0, 1e-3).bound, rel=1e-6)
    assert best.bound <= paper.bound * (1 + 1e-9)  # tight mode is chain-only: the paper bound, interval-capped


def test_resnet_global_bound_by_hand(resnet) -> None:
    net, _ = resnet
    n = [global_bound(Network((node,), node.in_shape)).bound if isinstance(node, (Conv, Dense)) else 1.0
         for node in net.nodes]
    expected = n[0] * (n[2] * n[4] + 1) * (n[7] * n[9] + n[10]) * n[13] * n[15]
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
    """x -> (W2 relu W1 x + (Ws x or x)) -> W3."""
    rng = np.random.default_rng(seed)
    n, h, m = 6, 9, 3
    w1, w2, ws, w3 = (rng.standard_normal(s) for s in ((h, n), (n, h), (n, n), (m, n)))
    b1 = rng.standard_normal(h)
    main = (Dense(w1, b1, (n,), (h,)), Relu((h,), (h,)), Dense(w2, np.zeros(n), (h,), (n,)))
    side = (Dense(ws, np.zeros(n), (n,), (n,)),) if skip else ()
    nodes = (*main, *side, Add((n,), (n,)), Dense(w3, np.zeros(m), (n,), (m,)))
    wiring = ((0,), (1,), (2,), *(((0,),) if skip else ()), (3, 4 if skip else 0), (len(nodes) - 1,))
    return Network(nodes, (n,), wiring=wiring), rng.standard_normal(n)


def _brute_force(net: Network, x0: np.ndarray, eps: float) -> float:
    """(‖R W1‖·‖W2 D‖ + ‖Ws‖ or 1)·‖W3‖ with dense matrices and numpy.linalg.svd."""
    d1, _, d2, *rest = net.nodes
    skip, last = rest[:-2], rest[-1]
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
    assert [type(n) for n in net.nodes] == [Dense, Relu, Relu, Relu, Add, Add]
    assert net.graph.inputs[1:] == ((1,), (1,), (2,), (2, 4), (3, 5))
    x = np.random.default_rng(1).standard_normal((4, 4))
    assert_rel_close(net.forward(x), run_ort(path, x), 1e-5)


def test_nested_blocks_import_and_bound(tmp_path: Path) -> None:
    net = load_model(_residual_onnx(tmp_path / "nested.onnx", 3, nested=True))
    assert sum(isinstance(n, Add) for n in net.nodes) == 2
    x0 = np.random.default_rng(3).standard_normal(net.input_shape)
    assert local_bound(net, x0, 0.1).bound <= global_bound(net).bound


def test_add_of_a_tensor_and_its_relu_is_a_block(tmp_path: Path) -> None:
    """Gemm then g + Relu(g): the smallest residual block (main = Relu, skip = identity)."""
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    model = make_model(gemm + [node("Relu", ["g"], "r"), node("Add", ["g", "r"], "output")], (4,), inits)
    path = save_model(model, tmp_path)
    net = load_model(path)
    assert [type(n) for n in net.nodes] == [Dense, Relu, Add] and net.graph.inputs == ((0,), (1,), (1, 2))
    x = np.random.default_rng(1).standard_normal((4, 4))
    assert_rel_close(net.forward(x), run_ort(path, x), 1e-5)


# --------------------------------------------------------------------------
# Graphs beyond residual blocks, and merges that stay refused
# --------------------------------------------------------------------------


def _imports_like_onnxruntime(tmp_path: Path, nodes: list, inits: list) -> Network:
    path = save_model(make_model(nodes, (4,), inits), tmp_path)
    net = load_model(path)
    x = np.random.default_rng(1).standard_normal((4, 4))
    assert_rel_close(net.forward(x), run_ort(path, x), 1e-5)
    x0 = x[0]
    bound = local_bound(net, x0, 0.3).bound
    assert_below(max_sampled_ratio(path, net, x0, 0.3, 200, 0), bound, 0.3)
    assert bound <= global_bound(net).bound * (1 + 1e-9)
    return net


def test_three_way_branch_imports(tmp_path: Path) -> None:
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    nodes = gemm + [node("Relu", ["g"], "a"), node("Relu", ["g"], "b"), node("Add", ["a", "b"], "ab"),
                    node("Add", ["ab", "g"], "output")]
    net = _imports_like_onnxruntime(tmp_path, nodes, inits)
    assert net.graph.readers(1) == [1, 2, 4]


def test_branches_meeting_at_different_adds_import(tmp_path: Path) -> None:
    """g -> a, g -> b, s = a + b, then s + a: a feeds two Adds (not series-parallel)."""
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    nodes = gemm + [node("Relu", ["g"], "a"), node("Relu", ["g"], "b"), node("Add", ["a", "b"], "s"),
                    node("Add", ["s", "a"], "output")]
    _imports_like_onnxruntime(tmp_path, nodes, inits)


def test_concat_of_branches_imports(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gemm, inits = _gemm(rng, "input", "g", 4, 5, "1")
    head, more = _gemm(rng, "c", "output", 10, 3, "2")
    nodes = gemm + [node("Relu", ["g"], "a"), node("Concat", ["g", "a"], "c", axis=-1)] + head
    net = _imports_like_onnxruntime(tmp_path, nodes, inits + more)
    assert isinstance(net.nodes[2], Concat) and net.nodes[2].out_shape == (10,)


def test_add_of_a_tensor_to_itself_imports(tmp_path: Path) -> None:
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    net = _imports_like_onnxruntime(tmp_path, gemm + [node("Add", ["g", "g"], "output")], inits)
    assert net.graph.inputs[-1] == (1, 1)


def _refused(tmp_path: Path, nodes: list, inits: list) -> UnsupportedModelError:
    with pytest.raises(UnsupportedModelError) as info:
        load_model(save_model(make_model(nodes, (4,), inits), tmp_path))
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("op", ["Mul", "Sub"])
def test_other_ops_on_two_data_tensors_are_refused(tmp_path: Path, op: str) -> None:
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    err = _refused(tmp_path, gemm + [node("Relu", ["g"], "a"), node(op, ["g", "a"], "output")], inits)
    assert [(p.name, p.op_type) for p in err.problems] == [(f"{op}_output", op)]
    assert "combines two data tensors" in str(err)


def test_concat_along_the_batch_axis_is_refused(tmp_path: Path) -> None:
    gemm, inits = _gemm(np.random.default_rng(0), "input", "g", 4, 5, "1")
    err = _refused(tmp_path, gemm + [node("Relu", ["g"], "a"), node("Concat", ["g", "a"], "output", axis=0)], inits)
    assert "batch axis" in str(err)


def test_add_of_branches_with_different_shapes_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gemm, inits = _gemm(rng, "input", "g", 4, 5, "1")
    side, more = _gemm(rng, "g", "h", 5, 1, "2")
    err = _refused(tmp_path, gemm + side + [node("Add", ["g", "h"], "output")], inits + more)
    assert [(p.name, p.op_type) for p in err.problems] == [("Add_output", "Add")]
    assert "same shape" in str(err)
