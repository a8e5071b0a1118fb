"""Patch passes (``linalg.patches``, the nodes' ``pull_patches``/``push_patches``) equal the dense
passes through every window geometry."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxlip.graph.nodes import Conv, MaxPool, Relu
from onnxlip.linalg.patches import Patches, basis_patches, one_hot_patches
from onnxlip.linalg.pooling import mix_windows, spread_windows
from onnxlip.bounds.tight.segments import basis

from helpers import make_window

GEOMETRY = st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([1, 2]), st.sampled_from([1, 2]), st.integers(0, 2))


def _layers(rng: np.random.Generator, geometry: tuple[int, int, int, int], pool: bool):
    """A conv (kernel, stride, dilation, padding from ``geometry``) then ReLU then an optional
    overlapping max-pool, on a 3-channel 11×9 map, with random slopes and window weights."""
    k, s, d, p = geometry
    win = make_window((k, k), (s, s), (d, d), (p, p, p, p), (11, 9))
    groups = 1 if k == 2 else 3
    conv = Conv(rng.normal(size=(6, 3 // groups, k, k)), np.zeros((6, 1, 1)), win, groups, (3, 11, 9), (6, *win.out_hw))
    relu = Relu(conv.out_shape, conv.out_shape)
    slopes = rng.random((1, *relu.in_shape)) * (rng.random((1, *relu.in_shape)) < 0.7)
    layers = [(conv, None, None), (relu, slopes, None)]
    if pool and min(win.out_hw) >= 3:
        pwin = make_window((3, 2), (2, 1), pads=(1, 0, 1, 0), in_hw=win.out_hw)
        mp = MaxPool(pwin, relu.out_shape, (6, *pwin.out_hw))
        weights = [rng.random((1, 6, *pwin.out_hw)) for _ in range(6)]
        layers.append((mp, None, weights))
    return layers


def _dense(node, u, diag, weights, forward: bool):
    if isinstance(node, Conv):
        return node.linear(u) if forward else node.adjoint(u)
    if isinstance(node, Relu):
        return u * diag
    return (mix_windows if forward else spread_windows)(u, weights, node.window)


def _one_hot(rng: np.random.Generator, shape: tuple[int, ...], count: int) -> np.ndarray:
    batch = np.zeros((count, *shape))
    for r in range(count):
        batch[r, :, rng.integers(shape[1]), rng.integers(shape[2])] = rng.normal(size=shape[0])
    return batch


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), geometry=GEOMETRY, pool=st.booleans())
def test_pulls_and_pushes_on_patches_equal_dense_passes(seed: int, geometry: tuple, pool: bool) -> None:
    rng = np.random.default_rng(seed)
    layers = _layers(rng, geometry, pool)
    rows = _one_hot(rng, layers[-1][0].out_shape, 7)
    patches, dense = one_hot_patches(rows), rows
    for node, diag, weights in reversed(layers):
        patches, dense = node.pull_patches(patches, diag if weights is None else weights), _dense(node, dense, diag, weights, False)
        assert np.allclose(patches.dense(), dense, atol=1e-12)
    cols = _one_hot(rng, layers[0][0].in_shape, 7)
    patches, dense = one_hot_patches(cols), cols
    for node, diag, weights in layers:
        patches, dense = node.push_patches(patches, diag if weights is None else weights), _dense(node, dense, diag, weights, True)
        assert np.allclose(patches.dense(), dense, atol=1e-12)


def test_batches_that_are_not_one_hot_in_space_stay_dense() -> None:
    rows = np.zeros((2, 3, 8, 8))
    rows[0, 0, 1, 1] = rows[0, 0, 2, 2] = 1.0
    assert one_hot_patches(rows) is None
    rows[0, 0, 2, 2] = 0.0
    patches = one_hot_patches(rows)  # a zero row is one-hot too
    assert patches is not None and np.array_equal(patches.dense(), rows)


def test_basis_patches_and_entries_match_the_dense_batch() -> None:
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(1, 3, 6, 5)) * (rng.random((1, 3, 6, 5)) < 0.2)
    patches = basis_patches(weights)
    assert np.array_equal(patches.dense(), basis(weights))
    grown = _layers(rng, (3, 1, 1, 1), False)[0][0].pull_patches(Patches(patches.data[:, :1].repeat(6, 1),
                                                                           patches.origin, (11, 9)))
    flat = rng.choice(3 * 11 * 9, size=40, replace=False)
    assert np.array_equal(grown.entries(flat), grown.dense().reshape(len(grown), -1)[:, flat])
    assert len(basis_patches(np.zeros((1, 3, 6, 5)))) == 1  # like ``basis``: one zero row
