"""Certified tight mode's new certificates: the Cholesky proof of a Gram matrix's top eigenvalue
(``gram_top_bound``), provable norms of formed segments (``proven_norm``), the stacked bound on
either Gram side (``stacked.certified_combination``), chunked segment formation, and the proof
of a radius found with estimates (``search.proven``). Adversarial matrices: clustered top
eigenvalues, ill-conditioned products, float32 inputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxlip.bounds.tight import segments as segments_module
from onnxlip.bounds.tight.certified import proven_norm
from onnxlip.bounds.tight.segments import Segments
from onnxlip.bounds.tight.stacked import certified_combination
from onnxlip.importer import load_model
from onnxlip.linalg.cholesky import gram_top_bound
from onnxlip.robustness.search import proven

from helpers import MODELS

HYPOTHESIS = settings(max_examples=40, deadline=None)


def _adversarial(kind: str, rows: int, cols: int, seed: int) -> np.ndarray:
    """A matrix whose top singular values are clustered (Lanczos may stop on the wrong one),
    spread over 12 orders of magnitude, or rounded to float32."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((rows, rows)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, cols)))
    k = min(rows, cols)
    if kind == "clustered":
        top = min(5, k)
        s = np.concatenate([1 - 1e-9 * np.arange(top), rng.uniform(0, 0.9, k - top)])
    elif kind == "ill-conditioned":
        s = np.logspace(0, -12, k)
    else:
        s = rng.uniform(0, 1, k)
    m = u[:, :k] * s @ v[:, :k].T
    return m.astype(np.float32).astype(np.float64) if kind == "float32" else m


def _exact_norm(m: np.ndarray) -> float:
    return float(np.linalg.svd(m, compute_uv=False)[0])


@pytest.mark.parametrize("kind", ["clustered", "ill-conditioned", "float32"])
@pytest.mark.parametrize("shape", [(600, 700), (900, 520)])
def test_proven_norm_is_above_the_exact_norm(kind: str, shape: tuple[int, int]) -> None:
    m = _adversarial(kind, *shape, seed=3)
    exact = _exact_norm(m)
    assert exact <= proven_norm(m) <= exact * (1 + 1e-5)


@HYPOTHESIS
@given(st.integers(0, 10_000), st.floats(0.5, 1.0))
def test_gram_top_bound_never_below_the_top_eigenvalue(seed: int, fraction: float) -> None:
    """Whatever θ it is given (a Lanczos value on a lower eigenvalue too), the bound it proves
    is above λ_max, or it proves nothing."""
    m = _adversarial("clustered", 80, 60, seed)
    gram = m.T @ m
    top = float(np.linalg.eigvalsh(gram)[-1])
    proven_top = gram_top_bound(gram, top * fraction, 1e-14, 80)
    assert proven_top is None or proven_top >= top
    assert gram_top_bound(gram, top, 1e-14, 80) is not None


@dataclass
class _State:
    """The parts of ``SecantState`` the stacked bound reads: formed terms and their Gram blocks."""

    mats: dict[tuple, Any]
    errors: dict[tuple, float]
    warm: dict = field(default_factory=dict)

    def matrix(self, t: Any) -> Any:
        return self.mats[t.key]

    def gram(self, t: Any) -> Any:
        return self.mats[t.key].T @ self.mats[t.key]

    def frobenius(self, t: Any) -> float:
        return float(np.sum(self.mats[t.key] ** 2))

    def cross(self, t: Any, u: Any) -> Any:
        return self.mats[t.key] @ self.mats[u.key].T


@dataclass(frozen=True)
class _Term:
    key: tuple
    weight: float


@pytest.mark.parametrize("rows", [[1, 30, 12], [1, 300, 250]])  # the row side, then the column side
@pytest.mark.parametrize("kind", ["clustered", "ill-conditioned", "float32"])
def test_stacked_bound_is_above_the_exact_stacked_norm(rows: list[int], kind: str) -> None:
    """sqrt(λ_max(Σ w_i²·T_iᵀT_i/p_i)) ≥ ‖[w_i·T_i]‖ (the stacked terms) for any p on the simplex, and
    the rounds start from a p whose value is at most the triangle sum Σ w_i‖T_i‖."""
    terms = [_Term(("T", 0, i + 1, None, i), float(w)) for i, w in enumerate([1.0, 0.7, 2.5])]
    mats = {t.key: _adversarial(kind, r, 200, seed=i) for i, (t, r) in enumerate(zip(terms, rows))}
    state = _State(mats, {t.key: 0.0 for t in terms})
    norms = np.array([t.weight * _exact_norm(mats[t.key]) for t in terms])
    value = certified_combination(state, terms, norms / norms.sum(), 3)
    stacked = np.vstack([t.weight * mats[t.key] for t in terms])
    assert value >= _exact_norm(stacked) * (1 - 1e-12)
    assert value >= max(norms) and value <= norms.sum() * (1 + 1e-6)


def test_stacked_bound_is_above_every_sampled_coupling() -> None:
    """‖Σ U_i·w_i·T_i‖ for random contractions U_i (and the aligned ones) never exceeds it."""
    rng = np.random.default_rng(0)
    terms = [_Term(("T", 0, i + 1, None, i), w) for i, w in enumerate([1.0, 0.4])]
    mats = {terms[0].key: _adversarial("clustered", 40, 50, 1), terms[1].key: _adversarial("clustered", 40, 50, 2)}
    state = _State(mats, {t.key: 0.0 for t in terms})
    value = certified_combination(state, terms, np.array([0.5, 0.5]), 3)
    for _ in range(200):
        us = [np.linalg.qr(rng.standard_normal((40, 40)))[0] for _ in terms]
        total = sum(u @ (t.weight * mats[t.key]) for u, t in zip(us, terms))
        assert _exact_norm(total) <= value


def test_chunked_formation_equals_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A segment formed from several batches of basis vectors is the one formed in one batch."""
    net = load_model(MODELS / "convnet.onnx")
    x0 = np.load(MODELS / "convnet_x0.npy")
    acts = net.activations(x0)
    rng = np.random.default_rng(0)
    col = np.ones((1, *net.nodes[0].in_shape))
    row = (rng.uniform(size=(1, *net.nodes[3].in_shape)) < 0.5).astype(float)
    whole = Segments(net, acts, provable=True).explicit(0, 3, col, row)
    monkeypatch.setattr(segments_module, "EXPLICIT_PATCH_LIMIT", 37)
    chunked = Segments(net, acts, provable=True).explicit(0, 3, col, row, tags=("cols", "rows"))
    assert whole is not None and chunked is not None
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-14)


def test_proven_returns_only_confirmed_radii() -> None:
    """The proof of a radius found with estimates: the guess when it holds, a hair below it when
    only that holds, else a bisection; never a radius the test refused."""
    asked: list[float] = []

    def holds_below(limit: float):
        def holds(e: float) -> bool:
            asked.append(e)
            return e <= limit
        return holds

    assert proven(holds_below(1.0), 0.5, 0.1, 1e-3) == 0.5
    assert proven(holds_below(0.4999), 0.5, 0.1, 1e-3) == pytest.approx(0.5 * (1 - 1e-3))
    asked.clear()
    found = proven(holds_below(0.3), 0.5, 0.1, 1e-3)
    assert found <= 0.3 and found >= 0.3 / (1 + 2e-3) and found in asked
    assert proven(holds_below(0.01), 0.5, 0.1, 1e-3) == 0.0
    assert proven(holds_below(1.0), 0.0, 0.1, 1e-3) == 0.0
