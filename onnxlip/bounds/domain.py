"""The set of inputs a bound covers: the L2 ball around x0, optionally cut by a box of valid
inputs (``InputBox``, e.g. the normalised pixel range of an image model).

Linear relaxations end with min over that set of a linear function λ·x per row. On the ball
alone it is λ·x0 − ε‖λ‖₂. With the box it has no closed form, but Lagrange duality gives it
exactly (the ball has interior points, so strong duality holds) and soundly (every multiplier
gives a lower bound, weak duality):

    min_{‖x−x0‖≤ε, lo≤x≤hi} λ·x  ≥  g(μ) = min_{lo≤x≤hi} λ·x + μ/2·(‖x − x0‖² − ε²)   (μ ≥ 0),

whose inner minimum is separable: x_i(μ) = clip(x0_i − λ_i/μ, lo_i, hi_i). ‖x(μ) − x0‖ falls
as μ grows, and the best μ puts x(μ) on the sphere (or μ = 0 when the box's lowest corner is
inside the ball); ``concretize`` solves for it exactly after sorting the coordinates by when
they reach their face. At μ = ‖λ‖/ε, g(μ) ≥ the Lagrangian's minimum over all x, which is
λ·x0 − ε‖λ‖ (the ball's value); the larger of the two values is kept, so the box never loosens
a bound, whatever the rounding. x(μ) is also the minimiser, which ``slopes`` needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..linalg.rounding import UNIT_ROUNDOFF, gamma

# A nominal input may sit outside the stated box by rounding (float32 pixels normalised in
# float64); up to this share of the box's width it is taken in, beyond it is an error.
OUTSIDE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class InputBox:
    """Valid inputs lo ≤ x ≤ hi: arrays of the nominal input's size (users reshape them)."""

    lo: Any
    hi: Any


def checked_box(x0: Any, lo: Any, hi: Any) -> InputBox:
    """The box [lo, hi] (scalars or arrays broadcast to x0's shape) around nominal input x0,
    widened to contain x0 where it is outside by rounding only."""
    x0 = np.asarray(x0, dtype=np.float64)
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), x0.shape)
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), x0.shape)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise InputError("the input range must be finite")
    if np.any(lo >= hi):
        raise InputError(f"the input range needs lo < hi, got lo={float(lo.flat[np.argmax(lo >= hi)])}, "
                         f"hi={float(hi.flat[np.argmax(lo >= hi)])}")
    slack = OUTSIDE_TOLERANCE * (hi - lo)
    outside = (x0 < lo - slack) | (x0 > hi + slack)
    if np.any(outside):
        i = int(np.argmax(outside.reshape(-1)))
        raise InputError(f"the nominal input is outside the input range at element {i}: "
                         f"{x0.flat[i]:.6g} not in [{lo.flat[i]:.6g}, {hi.flat[i]:.6g}]")
    return InputBox(np.minimum(lo, x0), np.maximum(hi, x0))


@dataclass(frozen=True)
class InputRange:
    """Valid raw values [lo, hi] (e.g. pixels in [0, 1]) reaching the model as (x − mean)/std,
    per channel: one mean and std each, or one per channel on the first axis of the input
    (channels first) or else its last (channels last); when both fit, the first."""

    lo: float
    hi: float
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def bounds(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        """The model-input bounds, arrays of the per-sample ``shape``."""
        mean, std = np.asarray(self.mean, dtype=np.float64), np.asarray(self.std, dtype=np.float64)
        if mean.size != std.size and min(mean.size, std.size) != 1:
            raise InputError(f"--mean has {mean.size} values and --std {std.size}: give one each or one per channel")
        if np.any(std <= 0) or not np.all(np.isfinite(mean)) or not np.all(np.isfinite(std)):
            raise InputError("--std values must be positive and --mean values finite")
        channels = max(mean.size, std.size)
        axis_shape = (1,) * len(shape)
        if channels > 1 and shape and shape[0] == channels:
            axis_shape = (channels,) + axis_shape[1:]
        elif channels > 1 and shape and shape[-1] == channels:
            axis_shape = axis_shape[:-1] + (channels,)
        elif channels > 1:
            raise InputError(f"{channels} channel values for an input of shape {shape}: neither its first nor its "
                             f"last axis has {channels} entries")
        mean = np.broadcast_to(mean, (channels,)).reshape(axis_shape)
        std = np.broadcast_to(std, (channels,)).reshape(axis_shape)
        return np.broadcast_to((self.lo - mean) / std, shape), np.broadcast_to((self.hi - mean) / std, shape)

    def box(self, x0: Any) -> InputBox:
        """The valid inputs around the nominal input x0 (shaped as one sample)."""
        return checked_box(x0, *self.bounds(np.shape(x0)))

    def as_dict(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "mean": list(self.mean), "std": list(self.std)}


def box_reach(x0: Any, box: InputBox) -> float:
    """The distance from x0 to the box's farthest corner: past it, the ball holds the whole box."""
    x0 = np.asarray(x0).reshape(-1)
    far = np.maximum(np.abs(box.lo.reshape(-1) - x0), np.abs(box.hi.reshape(-1) - x0))
    return float(np.sqrt(np.sum(far**2))) * (1 + 1e-12)


def ball_box(x0: Any, eps: float, box: InputBox | None) -> tuple[Any, Any]:
    """The smallest box around the ball (cut by ``box``): the inputs' interval ranges."""
    if box is None:
        return x0 - eps, x0 + eps
    return np.maximum(x0 - eps, box.lo.reshape(x0.shape)), np.minimum(x0 + eps, box.hi.reshape(x0.shape))


def concretize(lam: Any, x0: Any, eps: float, lo: Any = None, hi: Any = None) -> tuple[Any, Any, Any]:
    """Per row of ``lam`` (q, n): a lower bound of min λ·x over the ball ∩ [lo, hi], its
    minimiser x (q, n), and the rounding error of the value's evaluation (add it as slack).
    ``x0``, ``lo``, ``hi``: (n,) or (q, n); without a box, the ball's closed form. Rows whose
    value or error overflow get −∞ (a bound, if a useless one)."""
    eps = np.float64(eps)  # eps² of a Python float raises on overflow
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing rows end as −∞ (or NaN: lower_bounds)
        norm = np.sqrt(np.sum(lam**2, axis=1))
        if lo is None:
            value = np.sum(lam * x0, axis=1) - eps * norm
            return value, x0 - eps * lam / np.maximum(norm, 1e-300)[:, None], np.zeros(len(lam))
        return _concretize_in_box(lam, norm, *(np.broadcast_to(a, lam.shape) for a in (x0, lo, hi)), eps)


def _concretize_in_box(lam: Any, norm: Any, x0: Any, lo: Any, hi: Any, eps: Any) -> tuple[Any, Any, Any]:
    """``concretize`` with a box, all arrays (q, n): the better of the exact and the ball's multiplier."""
    corner = np.where(lam > 0, lo, np.where(lam < 0, hi, x0))
    ball_mu = norm / max(eps, 1e-300)  # the ball's own multiplier: never worse than the ball
    candidates = [_best_multiplier(lam, x0, corner, eps), ball_mu]
    results = [_dual_value(lam, x0, lo, hi, corner, mu, eps) for mu in candidates]
    better = results[0][0] - results[0][2] >= results[1][0] - results[1][2]
    value, x, error = (np.where(better if a.ndim == 1 else better[:, None], a, b) for a, b in zip(*results))
    broken = ~(np.isfinite(value) & np.isfinite(error))
    return np.where(broken, -np.inf, value), x, np.where(broken, 0.0, error)


def _best_multiplier(lam: Any, x0: Any, corner: Any, eps: float) -> Any:
    """The μ that puts x(μ) on the sphere, exactly, per row: coordinate i stops at its face
    (x_i = corner_i) for μ ≤ t_i = |λ_i|/room_i, so with t sorted downwards and the first k
    coordinates stopped, ‖x(μ) − x0‖² = C_k + A_k/μ² (C_k: their rooms squared, A_k: the other
    λ_i²); the root lies in the piece of the largest k whose start t_(k) is still inside the
    ball. 0 when every coordinate stops inside it (the lowest corner is in the ball)."""
    a = np.abs(lam)
    room = np.abs(corner - x0)
    t = np.where(a > 0, np.divide(a, room, out=np.full_like(a, np.inf), where=room > 0), 0.0)
    order = np.argsort(-t, axis=1)
    ts = np.take_along_axis(t, order, axis=1)
    rooms = np.take_along_axis(np.where(a > 0, room, 0.0) ** 2, order, axis=1)
    squares = np.take_along_axis(a**2, order, axis=1)
    stopped = np.cumsum(rooms, axis=1)  # C_k, k = 1 … n
    moving = np.sum(squares, axis=1, keepdims=True) - np.cumsum(squares, axis=1)  # A_k
    moving = np.maximum(moving, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        at_start = stopped + np.where(np.isfinite(ts) & (ts > 0), moving / ts**2, 0.0)
    k = np.sum(at_start <= eps**2, axis=1)  # pieces whose start is inside the ball (monotone in k)
    rows = np.arange(len(lam))
    c_k = np.where(k > 0, stopped[rows, np.maximum(k - 1, 0)], 0.0)
    a_k = np.where(k > 0, moving[rows, np.maximum(k - 1, 0)], np.sum(squares, axis=1))
    gap = eps**2 - c_k
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.sqrt(a_k / gap)
    return np.where(a_k <= 0, 0.0, np.where(np.isfinite(mu) & (gap > 0), mu, np.sqrt(np.sum(squares, axis=1)) / eps))


def _dual_value(lam: Any, x0: Any, lo: Any, hi: Any, corner: Any, mu: Any, eps: float) -> tuple[Any, Any, Any]:
    """g(μ) per row (a lower bound for any μ ≥ 0), the minimiser x(μ), and g's rounding error."""
    stop = mu <= 0
    x = np.where(stop[:, None], corner, _minimiser(lam, x0, lo, hi, np.where(stop, 1.0, mu)))
    spread = np.sum((x - x0) ** 2, axis=1)
    value = np.sum(lam * x, axis=1) + mu / 2 * (spread - eps**2)
    return value, x, _dual_rounding(lam, x0, x, mu, spread, eps)


def _minimiser(lam: Any, x0: Any, lo: Any, hi: Any, mu: Any) -> Any:
    """argmin over the box of λ·x + μ/2·‖x − x0‖², per row (μ > 0)."""
    return np.clip(x0 - lam / np.asarray(mu)[:, None], lo, hi)


def _dual_rounding(lam: Any, x0: Any, x: Any, mu: Any, spread: Any, eps: float) -> Any:
    """Error bound of g(μ) as computed: its sums (γ_{n+8} times their absolute values), and x's
    own rounding. The unclipped x0_i − λ_i/μ errs by δ_i ≤ 2u(|x0_i| + |λ_i|/μ); where it lies
    beyond a face by more than that, x_i is the face exactly, as is the true minimiser. Elsewhere
    x_i is within δ_i of it, and by convexity the per-element Lagrangian exceeds its minimum by at
    most |λ_i + μ(x_i − x0_i)|·δ_i (that slope's own rounding added)."""
    n = lam.shape[1]
    sums = np.sum(np.abs(lam * x), axis=1) + mu / 2 * (spread + eps**2)
    moving = mu > 0
    safe_mu = np.where(moving, mu, 1.0)[:, None]
    delta = np.where(moving[:, None], 2 * UNIT_ROUNDOFF * (np.abs(x0) + np.abs(lam) / safe_mu), 0.0)
    settled = np.abs(x0 - lam / safe_mu - x) > 2 * delta  # clipped well inside the face's side
    size = np.abs(lam) + mu[:, None] * np.abs(x - x0)
    slope = np.abs(lam + mu[:, None] * (x - x0)) + 4 * UNIT_ROUNDOFF * size
    drift = np.sum(np.where(settled, 0.0, slope * delta), axis=1)
    return (gamma(n + 8) * sums + drift) * (1 + 1e-6)
