"""Spectral norms: the Lanczos solver against LAPACK, and the float32 path of large layers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import onnxlip.bounds.perlayer.layers as layer_bounds
import onnxlip.linalg.spectral as spectral
from onnxlip.linalg.backend import all_blas_threads, single_blas_thread
from onnxlip.graph.nodes import Conv, Dense
from onnxlip.bounds.perlayer.masked import masked_operator, masked_submatrix
from onnxlip.linalg.windows import Window2d


def _gram(m: np.ndarray) -> LinearOperator:
    return aslinearoperator(m.T @ m)


def _with_spectrum(values: np.ndarray, seed: int) -> np.ndarray:
    """A symmetric matrix with the given eigenvalues and random eigenvectors."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(values), len(values))))
    return (q * values) @ q.T


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 60), st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_lanczos_matches_lapack(rows: int, cols: int, seed: int) -> None:
    m = np.random.default_rng(seed).standard_normal((rows, cols))
    exact = np.linalg.norm(m, 2)
    norm = spectral.operator_norm(aslinearoperator(m))
    assert norm.value == pytest.approx(exact, rel=1e-6)
    assert norm.value >= exact * (1 - 1e-12)  # the reported Ritz value carries its tolerance


def test_lanczos_finds_the_top_of_a_tight_cluster() -> None:
    values = np.concatenate([1.0 - 1e-4 * np.arange(8), np.linspace(0, 0.9, 392)])
    theta, vector = spectral.top_eigen(aslinearoperator(_with_spectrum(values, 1)))
    assert theta == pytest.approx(1.0, rel=1e-7)
    assert np.linalg.norm(vector) == pytest.approx(1.0)


def test_lanczos_restarts_when_its_basis_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.linspace(0, 1, 300) ** 3
    op = aslinearoperator(_with_spectrum(values, 2))
    free, _ = spectral.top_eigen(op)
    monkeypatch.setattr(spectral, "LANCZOS_BASIS_BYTES", 4 * 300 * 20)  # room for 20 vectors
    restarted, vector = spectral.top_eigen(op)
    assert free == pytest.approx(1.0, rel=1e-7) and restarted == pytest.approx(1.0, rel=1e-7)
    assert np.linalg.norm(op.matvec(vector) - restarted * vector) <= 1e-3


def test_lanczos_invariant_subspace_and_zero_operator() -> None:
    assert spectral.top_eigen(aslinearoperator(np.eye(50) * 3.0))[0] == pytest.approx(3.0)
    assert spectral.top_eigen(aslinearoperator(np.zeros((40, 40))))[0] == 0.0
    low_rank = np.outer(np.arange(30.0), np.arange(30.0))
    assert spectral.top_eigen(aslinearoperator(low_rank))[0] == pytest.approx(np.sum(np.arange(30.0) ** 2))


def test_lanczos_keeps_the_best_pair_when_out_of_products(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spectral, "LANCZOS_MAX_PRODUCTS", 5)
    values = np.linspace(0, 1, 200)
    theta, _ = spectral.top_eigen(aslinearoperator(_with_spectrum(values, 3)))
    assert 0 < theta <= 1.0 + 1e-12


def test_checked_norm_brackets_an_eigenvalue() -> None:
    m = np.random.default_rng(4).standard_normal((30, 20))
    exact = np.linalg.norm(m, 2)
    top = np.linalg.svd(m)[2][0]
    assert spectral.checked_norm(aslinearoperator(m), top) == pytest.approx(exact, rel=1e-12)
    rough = top + 1e-3 * np.random.default_rng(5).standard_normal(20)
    assert spectral.checked_norm(aslinearoperator(m), rough) >= exact * (1 - 1e-12)


def _conv_node(rng: np.random.Generator) -> Conv:
    window = Window2d((3, 3), (1, 1), (1, 1), (1, 1, 1, 1), (9, 9), (9, 9))
    return Conv(rng.standard_normal((5, 4, 3, 3)), np.zeros((5, 1, 1)), window, 1, (4, 9, 9), (5, 9, 9))


def _dense_node(rng: np.random.Generator) -> Dense:
    return Dense(rng.standard_normal((40, 70)), np.zeros(40), (70,), (40,))


@pytest.mark.parametrize("make", [_conv_node, _dense_node])
def test_float32_path_of_large_layers(make, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large layers iterate in float32; the reported norm stays within 1e-6 of LAPACK's, above it."""
    rng = np.random.default_rng(6)
    node = make(rng)
    r = (rng.random(node.out_shape) < 0.7) * rng.random(node.out_shape)
    d = (rng.random(node.in_shape) < 0.8).astype(float)
    exact = np.linalg.norm(masked_submatrix(node, r, d), 2)
    monkeypatch.setattr(spectral, "EXACT_FLOPS", 0)  # force the iterative path
    monkeypatch.setattr(layer_bounds, "SINGLE_MIN_FLOPS", 0)
    norm = single_blas_thread(layer_bounds.masked_norm)(node, r, d)
    assert norm.method == "lanczos"
    assert exact * (1 - 1e-12) <= norm.value <= exact * (1 + 1e-6)


def test_single_precision_operator_is_float32_inside() -> None:
    rng = np.random.default_rng(7)
    node = _dense_node(rng)
    ones_out, ones_in = np.ones(node.out_shape), np.ones(node.in_shape)
    op, fast, _ = masked_operator(node, ones_out, ones_in, single=True)
    v = rng.standard_normal(op.shape[1])
    assert fast.dtype == np.float64 and fast.matvec(v).dtype == np.float64
    gap = np.linalg.norm(fast.matvec(v) - op.matvec(v)) / np.linalg.norm(op.matvec(v))
    assert 0 < gap < 1e-5  # float32 rounding, not float64


def test_all_blas_threads_inside_single_thread_section(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_info

    import onnxlip.linalg.backend as backend

    monkeypatch.setattr(backend, "idle_cores", lambda own: 64)  # a quiet machine

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    @single_blas_thread
    def inside() -> tuple[list[int], list[int]]:
        one = blas_threads()
        with all_blas_threads():
            return one, blas_threads()

    before = blas_threads()
    one, restored = inside()
    assert all(t == 1 for t in one)
    assert restored == before and blas_threads() == before


@pytest.mark.parametrize("load, own, cores, expected", [
    (0.2, 1, 2, 2), (1.0, 1, 2, 2), (2.0, 1, 2, 1), (5.0, 1, 2, 1), (3.0, 1, 8, 6),
    (2.0, 2, 2, 2),  # its own two threads, nothing else
    (2.9, 2, 2, 1),  # its own two threads beside one busy process
])
def test_idle_cores_follow_the_load_average(load: float, own: int, cores: int, expected: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxlip.linalg.backend as backend

    monkeypatch.setattr(backend.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(backend.os, "cpu_count", lambda: cores)
    assert backend.idle_cores(own) == expected
