"""ReLU: its JVP at x0 keeps the units active at x0; its interval is monotone; its linear
relaxation on an input range (CROWN's lines); its secant set (tight mode); the paper's
closed-form step when it follows no affine layer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..linalg.backend import array_module
from ..linalg.patches import Patches
from .base import LocalConstant, Monotone, NodeBase, OnPatches, Shape, Step, lines_step, patch_step, row_dot
from .secant import Secant


@dataclass(frozen=True, eq=False, repr=False)
class Relu(OnPatches, Monotone, NodeBase):
    """max(x, 0)."""

    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "relu"
    nonlinear = True
    fuses_with_affine = True

    def forward(self, x: Any) -> Any:
        return array_module(x).maximum(x, 0)

    def jvp(self, x0: Any, v: Any) -> Any:
        return v * (x0 > 0)

    vjp = jvp

    # Factor form: one slope per unit (the Jacobian at x0, or a secant's centre).
    def factors_at(self, a: Any) -> Any:
        return (a > 0) * 1.0

    def factored_jvp(self, slopes: Any, v: Any) -> Any:
        return v * slopes

    factored_vjp = factored_jvp

    def pull_patches(self, p: Patches, slopes: Any) -> Patches:
        return p.like(p.data * p.gather(slopes))

    push_patches = pull_patches

    def patch_pull_cost(self, size: Any, out_area: float) -> tuple[float, Any]:
        """(multiply-adds, patch size) of pulling a patch of ``size`` back: free, same size."""
        return 0.0, size

    def factor_terms(self) -> int:
        return 1

    def factor_norm(self, slopes: Any) -> float:
        return float(np.max(np.abs(slopes), initial=0.0))

    def fixed_units(self, sec: Secant) -> tuple[int, int]:
        fixed = sec.center if sec.left is None else sec.center * (sec.left == 0)
        active = int(np.count_nonzero(fixed == 1))
        return int(sec.center.size) - sec.unstable - active, active

    def lipschitz_constant(self) -> float:
        return 1.0

    norm_bound = lipschitz_constant  # exact

    def unstable_inputs(self, lo: Any, hi: Any) -> Any:
        """Flat indices of the units whose range straddles 0: the only ones whose lines a
        tighter range changes."""
        return np.flatnonzero(((lo < 0) & (hi > 0)).reshape(-1))

    def relax(self, lo: Any, hi: Any) -> "ReluLines":
        unstable = (lo < 0) & (hi > 0)
        chord = np.where(unstable, hi / np.where(unstable, hi - lo, 1.0), (lo >= 0) * 1.0)
        offset = np.where(unstable, -chord * lo, 0.0)  # upper line: chord·z + offset
        return ReluLines(unstable, chord, offset, (hi > -lo) * 1.0, np.where(unstable, offset + hi, 0.0))

    def back_step(self, lines: "ReluLines", lam: Any, mag: Any, choice: Any) -> tuple[Step, Any]:
        return lines_step(lines, lam, mag, choice)

    def patch_back_step(self, lines: "ReluLines", lam: Patches, mag: Patches | None) -> tuple[Step, Any]:
        # only the three arrays the default lines need, gathered at the patches' positions (the reach: with magnitudes)
        below, chord, offset = (lam.gather(a) for a in (lines.below(None), lines.chord, lines.offset))
        new, const, _ = lines_back(lam.data, below, chord, offset)
        return patch_step(lam.like(new), const, lambda m: m.like(m.data * np.maximum(chord, below)),
                          lambda: lam.gather(lines.reach), mag)

    def secant(self, z0: Any, lo: Any, hi: Any) -> Secant:
        """Slopes s_i ∈ [s_lo, s_hi] from the input range; S̄ = diag(mid), L = R = √half-width."""
        xp = array_module(z0)
        s_lo, s_hi = slope_interval(z0, lo, hi)
        half = (s_hi - s_lo) / 2
        count = int(xp.count_nonzero(half > 0))
        if count == 0:
            return Secant(self, s_lo)
        root = xp.sqrt(half)
        return Secant(self, (s_lo + s_hi) / 2, root, root, count)

    def local_constant(self, x0: Any, d: Any, ball: float, box: tuple[Any, Any] | None) -> LocalConstant:
        """A ReLU after a node other than an affine one (e.g. after a residual Add): input i moves
        by at most ``ball``, so units with x0_i + ball ≤ 0 cannot change; L = max secant slope
        of the rest."""
        xp = array_module(x0)
        upper, lower = x0 + ball, x0 - ball
        if box is not None:
            lower, upper = xp.maximum(lower, box[0]), xp.minimum(upper, box[1])
        mask = (d * (upper > 0)).astype(x0.dtype)
        slopes = secant_slopes(x0, upper) * mask
        inactive = int(xp.count_nonzero(upper <= 0))
        active = int(xp.count_nonzero(lower > 0))
        return LocalConstant(float(xp.max(slopes)), mask, inactive, active, int(x0.size) - inactive - active)


@dataclass(frozen=True)
class ReluLines:
    """A ReLU's lines for inputs in [lo, hi]: the chord above (slope, offset) and CROWN's lower
    slope (1 when the range is mostly positive, else 0); stable units are exact (slope 1 or 0).
    Any lower slope in [0, 1] is valid (``project``)."""

    unstable: Any
    chord: Any
    offset: Any
    default: Any
    reach: Any  # magnitude the upper line's constant and the unit can reach

    @property
    def free(self) -> Any:
        """Where a lower line can be chosen: the unstable units."""
        return self.unstable

    def below(self, alpha: Any = None) -> Any:
        """The slope of the line below each unit: ``alpha`` on unstable units (any values in
        [0, 1], clipped there; per row or shared; None: the default), the exact slope elsewhere."""
        lower = self.default if alpha is None else np.clip(alpha, 0.0, 1.0)
        return np.where(self.unstable, lower, self.chord)

    def back(self, lam: Any, alpha: Any = None) -> tuple[Any, Any, Any, Any]:
        """(new Λ, constant added per row, the magnitude pass for |Λ| (the largest slope per
        unit), the chosen lines as a function of the node's input); ``alpha`` as in ``below``."""
        below = self.below(alpha)
        new, const, negative = lines_back(lam, below, self.chord, self.offset)

        def apply(z: Any) -> Any:  # only the optimisation's gradient uses it: no exact selection needed
            return below * z + (negative < 0) * ((self.chord - below) * z + self.offset)

        return new, const, lambda mag: mag * np.maximum(self.chord, below), apply

    def gradient(self, lam: Any, z: Any, free: Any) -> Any:
        """∂bound/∂(lower slope) per row and unit: Λ·z where the lower line is used (Λ ≥ 0)."""
        return np.maximum(lam, 0.0) * z * free

    @staticmethod
    def project(line: Any, free: Any) -> Any:
        return np.clip(line, 0.0, 1.0)

    def scores(self, lam: Any, signs: Any) -> Any:
        """|Λ_i|·u·(−l)/(u − l) on unstable units not split yet (the relaxation triangle's
        height weighted by the row's coefficient), 0 elsewhere: what branching splits by."""
        free = self.unstable & (signs == 0 if signs is not None else True)
        return np.where(free, np.abs(lam) * self.offset, 0.0)  # offset = u·(−l)/(u − l)


def lines_back(lam: Any, below: Any, chord: Any, offset: Any) -> tuple[Any, Any, Any]:
    """Λ through a ReLU's lines: (new Λ, constant added per row, Λ's negative part). A negative
    coefficient takes the chord above (slope ``chord``, constant ``offset``, 0 on stable units),
    any other the line below (slope ``below``, through 0). Λ = Λ⁺ + Λ⁻ with one of the two 0 in
    every entry, so Λ⁺·below + Λ⁻·chord is one exact product per entry, as a selection of the
    slope would give, in passes without branches (a selection by the sign of Λ is several
    times slower)."""
    negative = np.minimum(lam, 0.0)
    new = np.maximum(lam, 0.0) * below
    new += negative * chord
    return new, row_dot(negative, offset), negative


def slope_interval(z0: Any, lo: Any, hi: Any) -> tuple[Any, Any]:
    """Range [s_lo, s_hi] of (ReLU(z) − ReLU(z0)) / (z − z0) over z ∈ [lo, hi]."""
    xp = array_module(z0)
    crossing = (lo < 0) & (hi > 0)
    above = xp.where(z0 > 0, z0 / xp.where(z0 - lo > 0, z0 - lo, 1), 0.0)
    below = xp.where(z0 < 0, hi / xp.where(hi - z0 > 0, hi - z0, 1), 1.0)
    s_lo = xp.where(crossing, above, (lo >= 0) * 1.0)
    s_hi = xp.where(crossing, xp.where(z0 < 0, below, 1.0), (lo >= 0) * 1.0)
    s_lo = xp.where(hi <= lo, (z0 > 0) * 1.0, s_lo)  # a unit that cannot move
    s_hi = xp.where(hi <= lo, (z0 > 0) * 1.0, s_hi)
    return s_lo, s_hi


def secant_slopes(y0: Any, y_upper: Any) -> Any:
    """r_i = (ReLU(ȳ_i) − ReLU(y0_i)) / (ȳ_i − y0_i), 0 where ȳ_i = y0_i."""
    xp = array_module(y0)
    gap = y_upper - y0
    rise = xp.maximum(y_upper, 0) - xp.maximum(y0, 0)
    safe = xp.where(gap > 0, gap, 1)
    return xp.where(gap > 0, rise / safe, 0.0)
