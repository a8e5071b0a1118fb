"""Linear algebra of the IR: every linear node against an explicit matrix built
independently of onnxlip, adjoint identities, the winner-fixed JVP/VJP of Relu
and MaxPool, masked row norms, and whole-network JVP/VJP on the shipped models."""
from __future__ import annotations

import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from helpers import (MODELS_DIR, adjoint_gap, assert_rel_close, conv_matrix, const, dense_matrix, make_model,
                     make_window, maxpool_reference, node, node_matrix, out_size, run_ort, save_model)
import onnxlip.linalg.conv as conv_module
from onnxlip.importer import load_model
from onnxlip.graph.nodes import Conv, Dense, MaxPool, Pad, Relu, Reshape, Scale, Transpose

ADJOINT_TOL = 1e-9
EXACT_TOL = 1e-12
HYPOTHESIS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------
# Linear nodes with independently built matrices
# --------------------------------------------------------------------------

# (C, H, W, M, kernel, strides, dilations, pads, groups)
CONV_GEOMETRIES = {
    "k3": (2, 5, 6, 3, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 1),
    "k1": (3, 4, 4, 2, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1),
    "s2x1_asym_pads": (2, 6, 5, 4, (3, 2), (2, 1), (1, 1), (1, 0, 2, 1), 1),
    "dil2x1_pads": (3, 6, 5, 3, (3, 3), (1, 1), (2, 1), (2, 1, 2, 1), 1),
    "groups2_s2_p1": (4, 6, 7, 6, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), 2),
    "depthwise_mult2": (3, 5, 6, 6, (2, 2), (1, 2), (1, 1), (0, 1, 1, 0), 3),
    "s3_nondividing": (2, 7, 8, 2, (2, 2), (3, 3), (1, 1), (0, 0, 0, 0), 1),
    "combo": (4, 7, 6, 4, (3, 2), (2, 3), (2, 2), (2, 1, 0, 2), 2),
}


def conv_node(rng, c, h, w, m, kernel, strides, dilations, pads, groups) -> tuple[Conv, np.ndarray]:
    win = make_window(kernel, strides, dilations, pads, (h, w))
    weight = rng.standard_normal((m, c // groups, *kernel))
    bias = rng.standard_normal((m, 1, 1))
    return Conv(weight, bias, win, groups, (c, h, w), (m, *win.out_hw)), conv_matrix(weight, win, groups)


def permutation_matrix(in_shape, perm) -> np.ndarray:
    n = int(np.prod(in_shape))
    return np.eye(n)[np.arange(n).reshape(in_shape).transpose(perm).ravel()]


def pad_matrix(in_shape, pads) -> np.ndarray:
    index = np.pad(np.arange(int(np.prod(in_shape))).reshape(in_shape) + 1, pads).ravel() - 1
    mat = np.zeros((index.size, int(np.prod(in_shape))))
    rows = np.flatnonzero(index >= 0)
    mat[rows, index[rows]] = 1.0
    return mat


def build_linear(name: str, rng: np.random.Generator):
    """(IR node, explicit matrix of its linear part) for each linear node type."""
    if name.startswith("conv_"):
        return conv_node(rng, *CONV_GEOMETRIES[name[5:]])
    if name == "dense":
        w = rng.standard_normal((5, 7))
        return Dense(w, rng.standard_normal(5), (7,), (5,)), w
    if name.startswith("scale_"):
        shape = (3, 4, 5)
        sshape = {"scale_channel": (3, 1, 1), "scale_element": shape, "scale_scalar": (1, 1, 1)}[name]
        s = rng.standard_normal(sshape)
        return Scale(s, rng.standard_normal(sshape), shape, shape), np.diag(np.broadcast_to(s, shape).ravel())
    if name == "reshape":
        return Reshape((3, 4, 5), (12, 5)), np.eye(60)
    if name == "transpose":
        return Transpose((1, 2, 0), (3, 4, 5), (4, 5, 3)), permutation_matrix((3, 4, 5), (1, 2, 0))
    if name == "pad":
        pads = ((1, 0), (0, 2), (2, 1))
        return Pad(pads, (2, 3, 4), (3, 5, 7)), pad_matrix((2, 3, 4), pads)
    raise KeyError(name)


LINEAR_NODES = ["dense", "scale_channel", "scale_element", "scale_scalar", "reshape", "transpose", "pad"] + [
    f"conv_{k}" for k in CONV_GEOMETRIES
]
AFFINE_NODES = [n for n in LINEAR_NODES if n.startswith(("dense", "scale", "conv"))]


@pytest.mark.parametrize("name", LINEAR_NODES)
def test_linear_matches_explicit_matrix(name, rng):
    node_, mat = build_linear(name, rng)
    assert mat.shape == (int(np.prod(node_.out_shape)), int(np.prod(node_.in_shape)))
    v = rng.standard_normal((4, *node_.in_shape))
    u = rng.standard_normal((4, *node_.out_shape))
    lin, adj = node_.linear(v), node_.adjoint(u)
    assert lin.shape == (4, *node_.out_shape) and adj.shape == (4, *node_.in_shape)
    assert_rel_close(lin.reshape(4, -1), v.reshape(4, -1) @ mat.T, EXACT_TOL, "linear")
    assert_rel_close(adj.reshape(4, -1), u.reshape(4, -1) @ mat, EXACT_TOL, "adjoint")
    assert_rel_close(node_matrix(node_), mat, EXACT_TOL, "matrix from the identity basis")


@pytest.mark.parametrize("name", LINEAR_NODES)
def test_adjoint_identity(name, rng):
    node_, _ = build_linear(name, rng)
    assert adjoint_gap(node_.linear, node_.adjoint, node_.in_shape, node_.out_shape, rng) < ADJOINT_TOL


@pytest.mark.parametrize("name", LINEAR_NODES)
def test_forward_is_linear_plus_bias(name, rng):
    node_, mat = build_linear(name, rng)
    x = rng.standard_normal((2, *node_.in_shape))
    offset = node_.forward(np.zeros((1, *node_.in_shape)))[0]
    expected = (x.reshape(2, -1) @ mat.T).reshape(2, *node_.out_shape) + offset
    assert_rel_close(node_.forward(x), expected, EXACT_TOL, "forward")
    for field in ("bias", "shift"):
        if hasattr(node_, field):
            assert_rel_close(offset, np.broadcast_to(getattr(node_, field), node_.out_shape), EXACT_TOL, field)


def binary_masks(shape, rng) -> list[np.ndarray]:
    return [np.ones(shape), np.zeros(shape), (rng.random(shape) < 0.5).astype(float)]


@pytest.mark.parametrize("name", AFFINE_NODES)
def test_masked_row_norms_binary_mask(name, rng):
    node_, mat = build_linear(name, rng)
    for d in binary_masks(node_.in_shape, rng):
        expected = np.linalg.norm(mat * d.ravel()[None, :], axis=1).reshape(node_.out_shape)
        assert_rel_close(node_.row_norms(d), expected, 1e-12, "masked row norms")


def test_masked_row_norms_fractional_mask(rng):
    node_, mat = build_linear("dense", rng)
    d = np.full(node_.in_shape, 0.5)
    expected = np.linalg.norm(mat * np.sqrt(d)[None, :], axis=1)  # documented: sqrt(sum_j A_ij^2 d_j)
    assert_rel_close(node_.row_norms(d), expected, 1e-12, "masked row norms, d = 0.5")


# --------------------------------------------------------------------------
# Relu and MaxPool: winner-fixed JVP/VJP at x0
# --------------------------------------------------------------------------


def check_jvp_vjp(op, x0: np.ndarray, mat: np.ndarray, rng) -> None:
    """op.jvp(x0, ·) is ``mat`` and op.vjp(x0, ·) is its transpose."""
    in_shape, out_shape = op.in_shape, op.out_shape
    jvp_mat = dense_matrix(lambda v: op.jvp(x0, v), in_shape)
    vjp_mat = dense_matrix(lambda u: op.vjp(x0, u), out_shape)
    assert_rel_close(jvp_mat, mat, EXACT_TOL, "jvp")
    assert_rel_close(vjp_mat, mat.T, EXACT_TOL, "vjp")
    gap = adjoint_gap(lambda v: op.jvp(x0, v), lambda u: op.vjp(x0, u), in_shape, out_shape, rng)
    assert gap < ADJOINT_TOL


@pytest.mark.parametrize("shape", [(9,), (3, 4, 5)])
def test_relu_jvp_vjp(shape, rng):
    relu = Relu(shape, shape)
    x0 = rng.standard_normal((1, *shape))
    check_jvp_vjp(relu, x0, np.diag((x0[0] > 0).ravel().astype(float)), rng)
    assert_rel_close(relu.forward(x0), np.maximum(x0, 0), 0.0, "forward")


# (C, H, W, kernel, strides, dilations, pads, ceil_mode)
MAXPOOL_GEOMETRIES = {
    "k2_s2": (2, 6, 6, (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), False),
    "k3_s1": (2, 5, 6, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), False),
    "k3_s2_p1": (2, 7, 6, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False),
    "k2x3_asym_pads": (1, 5, 7, (2, 3), (1, 2), (1, 1), (0, 1, 1, 0), False),
    "k3_dil2": (2, 7, 7, (3, 3), (1, 2), (2, 2), (0, 0, 0, 0), False),
    "k3_s2_ceil": (2, 8, 8, (3, 3), (2, 2), (1, 1), (0, 0, 0, 0), True),
    "k2_s2_p1_ceil_drop": (1, 5, 7, (2, 2), (2, 2), (1, 1), (1, 1, 1, 1), True),
    "k2_s3_dil2_ceil": (2, 9, 10, (2, 2), (3, 3), (2, 2), (1, 0, 0, 1), True),
}


def maxpool_node(c, h, w, kernel, strides, dilations, pads, ceil_mode) -> MaxPool:
    win = make_window(kernel, strides, dilations, pads, (h, w), ceil_mode)
    return MaxPool(win, (c, h, w), (c, *win.out_hw))


def check_maxpool(pool: MaxPool, x0: np.ndarray, rng) -> None:
    values, select = maxpool_reference(x0[0], pool.window)
    assert_rel_close(pool.forward(x0), values[None], 0.0, "maxpool forward")
    check_jvp_vjp(pool, x0, select, rng)
    d = (rng.random(pool.in_shape) < 0.3).astype(float)
    expected_mask = maxpool_reference(d, pool.window)[0]
    np.testing.assert_array_equal(pool.mask(d[None])[0], expected_mask)


@pytest.mark.parametrize("geometry", MAXPOOL_GEOMETRIES.values(), ids=MAXPOOL_GEOMETRIES.keys())
def test_maxpool_jvp_vjp(geometry, rng):
    pool = maxpool_node(*geometry)
    check_maxpool(pool, rng.standard_normal((1, *pool.in_shape)), rng)


def test_maxpool_negative_inputs_ignore_padding(rng):
    """With all inputs negative the padding (−inf for MaxPool) must never win."""
    pool = maxpool_node(*MAXPOOL_GEOMETRIES["k3_s2_p1"])
    check_maxpool(pool, -1.0 - rng.random((1, *pool.in_shape)), rng)


@pytest.mark.parametrize("geometry", ["k2_s2", "k3_s2_p1", "k3_s2_ceil"])
def test_maxpool_ties_select_one_winner(geometry, rng):
    """At tied windows the JVP still selects exactly one input per output (a valid selection matrix)."""
    pool = maxpool_node(*MAXPOOL_GEOMETRIES[geometry])
    x0 = np.round(rng.random((1, *pool.in_shape)))  # many ties between 0s and between 1s
    jvp_mat = dense_matrix(lambda v: pool.jvp(x0, v), pool.in_shape)
    assert set(np.unique(jvp_mat)) <= {0.0, 1.0}
    np.testing.assert_array_equal(jvp_mat.sum(axis=1), 1.0)
    np.testing.assert_array_equal(jvp_mat @ x0.ravel(), pool.forward(x0).ravel())  # it picks a maximum
    assert_rel_close(dense_matrix(lambda u: pool.vjp(x0, u), pool.out_shape), jvp_mat.T, 0.0, "vjp at ties")


# --------------------------------------------------------------------------
# Hypothesis: Conv and MaxPool geometries
# --------------------------------------------------------------------------

pair = st.tuples


@st.composite
def conv_geometries(draw):
    groups = draw(st.integers(1, 3))
    c, m = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    kernel = draw(pair(st.integers(1, 3), st.integers(1, 3)))
    strides = draw(pair(st.integers(1, 3), st.integers(1, 3)))
    dilations = draw(pair(st.integers(1, 2), st.integers(1, 2)))
    pads = draw(st.tuples(*[st.integers(0, 2)] * 4))
    for a, size in enumerate((h, w)):
        assume(out_size(size, kernel[a], strides[a], dilations[a], pads[a], pads[a + 2]) >= 1)
    return c, h, w, m, kernel, strides, dilations, pads, groups


@HYPOTHESIS
@given(geometry=conv_geometries(), seed=st.integers(0, 2**16))
def test_conv_hypothesis(geometry, seed):
    """Random geometry: IR Conv = explicit matrix, adjoint identity, importer and onnxruntime agree."""
    rng = np.random.default_rng(seed)
    conv, mat = conv_node(rng, *geometry)
    assert_rel_close(node_matrix(conv), mat, EXACT_TOL, "conv matrix")
    assert adjoint_gap(conv.linear, conv.adjoint, conv.in_shape, conv.out_shape, rng) < ADJOINT_TOL
    c, h, w, m, kernel, strides, dilations, pads, groups = geometry
    inits = [const("W", conv.weight), const("B", conv.bias.ravel())]
    model = make_model([node("Conv", ["input", "W", "B"], "output", strides=list(strides), dilations=list(dilations),
                             pads=list(pads), group=groups)], (c, h, w), inits)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    assert_rel_close(conv.forward(x.astype(np.float64)), run_ort(model, x), 1e-5, "IR conv vs onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        net = load_model(save_model(model, tmp))
    (imported,) = net.nodes
    assert imported.window == conv.window and imported.groups == groups


@HYPOTHESIS
@given(geometry=conv_geometries(), seed=st.integers(0, 2**16), batch=st.integers(1, 3))
def test_conv_im2col_matches_offset_loop(geometry, seed, batch):
    """Both evaluations of conv2d / conv2d_adjoint (im2col and one GEMM per kernel offset) agree."""
    rng = np.random.default_rng(seed)
    conv, _ = conv_node(rng, *geometry)
    x = rng.standard_normal((batch, *conv.in_shape))
    u = rng.standard_normal((batch, *conv.out_shape))
    results = []
    for channels in (10**6, 0):  # every shape takes im2col, then none does
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(conv_module, "IM2COL_MAX_CHANNELS", channels)
            results.append((conv.linear(x), conv.adjoint(u)))
    assert_rel_close(results[0][0], results[1][0], EXACT_TOL, "conv2d paths")
    assert_rel_close(results[0][1], results[1][1], EXACT_TOL, "conv2d_adjoint paths")


@st.composite
def maxpool_geometries(draw):
    c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    kernel = draw(pair(st.integers(1, 3), st.integers(1, 3)))
    strides = draw(pair(st.integers(1, 3), st.integers(1, 3)))
    dilations = draw(pair(st.integers(1, 2), st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, kernel[a % 2] - 1)) for a in range(4))  # onnxruntime: pads < kernel
    ceil_mode = draw(st.booleans())
    for a, size in enumerate((h, w)):
        assume(out_size(size, kernel[a], strides[a], dilations[a], pads[a], pads[a + 2], ceil_mode) >= 1)
    return c, h, w, kernel, strides, dilations, pads, ceil_mode


def has_empty_window(pool: MaxPool) -> bool:
    """Whether some window lies entirely in the padding (onnxruntime's value there is -inf or undefined)."""
    win = pool.window
    for a in range(2):
        starts = np.arange(win.out_hw[a]) * win.strides[a] - win.pads[a]
        taps = starts[:, None] + np.arange(win.kernel[a])[None, :] * win.dilations[a]
        if not np.all(np.any((taps >= 0) & (taps < win.in_hw[a]), axis=1)):
            return True
    return False


@HYPOTHESIS
@given(geometry=maxpool_geometries(), seed=st.integers(0, 2**16))
def test_maxpool_hypothesis(geometry, seed):
    """Random geometry: forward = brute force = onnxruntime; JVP/VJP = selection matrix and its transpose."""
    rng = np.random.default_rng(seed)
    pool = maxpool_node(*geometry)
    assume(not has_empty_window(pool))
    x0 = rng.standard_normal((1, *pool.in_shape))
    check_maxpool(pool, x0, rng)
    c, h, w, kernel, strides, dilations, pads, ceil_mode = geometry
    model = make_model([node("MaxPool", ["input"], "output", kernel_shape=list(kernel), strides=list(strides),
                             dilations=list(dilations), pads=list(pads), ceil_mode=int(ceil_mode))], (c, h, w))
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    assert_rel_close(pool.forward(x.astype(np.float64)), run_ort(model, x), 1e-6, "IR maxpool vs onnxruntime")
    # The importer builds the same window (ceil_mode included).
    with tempfile.TemporaryDirectory() as tmp:
        net = load_model(save_model(model, tmp))
    (imported,) = net.nodes
    assert imported.window == pool.window


# --------------------------------------------------------------------------
# Whole networks: JVP/VJP of the shipped models
# --------------------------------------------------------------------------

MODEL_NAMES = sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))


@pytest.fixture(scope="module")
def networks():
    cache = {}

    def get(name):
        if name not in cache:
            net = load_model(MODELS_DIR / f"{name}.onnx")
            x0 = np.load(MODELS_DIR / f"{name}_x0.npy").astype(np.float64)
            cache[name] = (net, x0)
        return cache[name]

    return get


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_network_vjp_is_adjoint_of_jvp(name, networks, rng):
    net, x0 = networks(name)
    acts = net.activations(x0)
    assert len(acts) == len(net.nodes) + 1
    assert_rel_close(acts[-1], net.forward(net.batch(x0)), 0.0, "activations end with the output")
    gap = adjoint_gap(lambda v: net.jvp(acts, v), lambda u: net.vjp(acts, u), net.input_shape, net.output_shape, rng)
    assert gap < ADJOINT_TOL


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_network_jvp_matches_finite_differences(name, networks, rng):
    net, x0 = networks(name)
    # Some nominal inputs (flat image backgrounds) put ties into MaxPool windows, where the net is
    # not differentiable; a small random shift gives a generic point.
    x0 = net.batch(x0) + 1e-3 * rng.standard_normal((1, *net.input_shape))
    acts = net.activations(x0)
    v = rng.standard_normal((3, *net.input_shape))
    # A tiny step keeps every ReLU sign and MaxPool winner of x0 (the nets are piecewise linear);
    # float64 round-off over 2h stays far below the tolerance.
    h = 1e-8 * max(1.0, float(np.max(np.abs(x0))))
    fd = (net.forward(x0 + h * v) - net.forward(x0 - h * v)) / (2 * h)
    assert_rel_close(net.jvp(acts, v), fd, 1e-5, "jvp vs central differences")


@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_network_jacobian_rows_match_vjp(name, networks, rng):
    """The Jacobian from JVPs of the basis equals the transpose of the one from VJPs."""
    net, x0 = networks(name)
    acts = net.activations(x0)
    jac = dense_matrix(lambda v: net.jvp(acts, v), net.input_shape)
    jac_t = dense_matrix(lambda u: net.vjp(acts, u), net.output_shape)
    assert_rel_close(jac, jac_t.T, 1e-12, "J vs (J^T)^T")
    assert np.count_nonzero(jac) > 0


def test_flat_operators_keep_scipys_contract_on_numpy() -> None:
    """``linop.AnyBackend`` skips SciPy's wrapper only for CuPy: on NumPy, (n, 1) inputs, lists
    and matrix products behave as SciPy's LinearOperator."""
    import numpy as np

    from onnxlip.linalg.operators import FlatOperator, SinglePrecision

    m = np.arange(6.0).reshape(2, 3)
    op = FlatOperator(lambda v: v @ m.T, lambda u: u @ m, (3,), (2,), np.float64)
    assert op.matvec(np.ones((3, 1))).shape == (2, 1) and np.allclose(op.matvec([1, 2, 3]), m @ [1, 2, 3])
    assert np.allclose(SinglePrecision(op) @ np.ones((3, 2)), m @ np.ones((3, 2)))
    assert np.allclose(op.rmatvec(np.ones(2)), m.T @ np.ones(2))
