"""What every IR node shares: the flags engines read instead of asking for its type, the
contract's defaults, a per-node cache, and a short ``repr`` (the generated one would print
every weight array).

The contract (one class per kind implements it; engines call only these):
- ``forward``, ``jvp(a, v)`` / ``vjp(a, u)`` at the nominal input ``a``, ``flops()``;
- ``interval(lo, hi)``: an enclosure of the output over an input box;
- ``back_step(lines, Λ, |Λ|, choice)``: the node's step of linear-relaxation back-substitution,
  with ``relax(lo, hi)`` giving the lines of the nonlinear nodes;
- ``secant(z0, lo, hi)`` (nonlinear nodes): tight mode's secant set;
- ``local_constant`` / ``lipschitz_constant`` (nodes without weights): the per-layer method's
  closed-form step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Shape = tuple[int, ...]
# (Λ per input, constant per row, |Λ| per input, |constant| per row) of one backward step
Step = tuple[list[Any], Any, list[Any], Any]


class NodeBase:
    merge = False  # reads several tensors (Add, Concat)
    weighted = False  # has weights: a layer of the per-layer method, its range cut by the ball
    nonlinear = False  # its relaxation and secant depend on an input range (ReLU, max-pool)
    fuses_with_affine = False  # the paper bounds affine + this node as one layer (ReLU)
    on_patches = False  # passes coefficients kept on per-row patches (``linalg.patches``)

    def __repr__(self) -> str:
        from .summary import node_summary  # summary names the op with ``describe``
        return node_summary(self)

    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        """``build()`` computed once per ``key`` and kept on the node (frozen dataclasses: a
        cache, not a field) — for what every bound of a sweep would otherwise recompute."""
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache[key] = build()
        return cache[key]

    def flops(self) -> int:
        """Rough multiply-adds of one pass: one per output unless the node has weights."""
        return int(np.prod(self.out_shape))

    def describe(self) -> str:
        """Short description of the op and its key attributes."""
        return self.op

    def with_weights(self, fn: Callable[[Any], Any]) -> "NodeBase":
        """The node with ``fn`` applied to every stored weight; a node without weights (moves,
        masks, winner selection, sums) is its own |A|: its matrices' entries are 0 or 1."""
        return self

    def fan_in(self) -> int:
        """Most products summed into one value when the node is applied either way (its map or
        its transpose); 0 for nodes that only select, mask or move values."""
        return 0

    def keeps_patches(self, lam: Any) -> bool:
        """Whether back-substitution keeps coefficients ``lam`` (patches) on patches through this
        node: while they are small (beyond, a dense pass is cheaper)."""
        return self.on_patches and lam.covers_little()

    def relax_terms(self) -> int:
        """Most products its back-substitution step sums into one coefficient."""
        return self.fan_in()


class Monotone:
    """Nodes non-decreasing in every input (ReLU, max-pool, moving values): a box's ends map
    to the ends of the output's range, with no rounding."""

    def interval(self, lo: Any, hi: Any) -> tuple[Any, Any]:
        return self.forward(lo), self.forward(hi)

    def ball_interval(self, y0: Any, lo: Any, hi: Any, rho: float) -> tuple[Any, Any]:
        """``interval``: the ball adds nothing the box does not give here."""
        return self.interval(lo, hi)


class OnPatches:
    """Kinds that pass coefficients on patches of a feature map (conv, ReLU, max-pool) with
    ``pull_patches``/``push_patches`` (in their factor form) and ``patch_back_step``."""

    @property
    def on_patches(self) -> bool:
        return len(self.in_shape) == 3


@dataclass(frozen=True)
class LocalConstant:
    """A closed-form per-layer step: the constant on the ball, the outputs that may change, and
    unit counts for reporting."""

    lipschitz: float
    mask: Any
    inactive: int = 0
    active: int = 0
    unstable: int = 0


def row_sums(a: Any) -> Any:
    return a.reshape(len(a), -1).sum(axis=1)


def row_dot(a: Any, b: Any) -> Any:
    """Per row of ``a``, Σ a·b, ``b`` batch-1 or one per row (no product array is formed)."""
    flat = a.reshape(len(a), -1)
    if len(b) == 1:
        return flat @ b.reshape(-1)
    return np.einsum("ij,ij->i", flat, b.reshape(len(b), -1))


def short_text(value: Any) -> str:
    """(2, 2) -> '2', (1, 2) -> '1x2', 3 -> '3': compact attribute text."""
    if isinstance(value, int):
        return str(value)
    return str(value[0]) if len(set(value)) == 1 else "x".join(map(str, value))


def lines_step(lines: Any, lam: Any, mag: Any, choice: Any) -> tuple[Step, Any]:
    """A nonlinear node's ``back_step`` through its ``lines`` (whose ``back`` gives Λ, the constant,
    the magnitude pass and the chosen lines as a function of the input; ``choice``: its lower
    lines per row, None for the default), with |Λ| and its constants' reach unless ``mag`` is None."""
    new, const, magnitude, apply = lines.back(lam, choice)
    mag_in = None if mag is None else magnitude(mag)
    mag_const = None if mag is None else row_sums(mag * lines.reach)
    return ([new], const, [mag_in], mag_const), apply


def patch_step(new: Any, const: Any, magnitude: Callable[[Any], Any], reach: Callable[[], Any],
               mag: Any) -> tuple[Step, Any]:
    """A one-input back-substitution step on patches as ``back_step`` returns it: Λ, its constant
    per row, and (unless ``mag`` is None) |Λ| through ``magnitude`` with the constant's magnitude
    from ``reach()``, the largest value per entry the lines' constants can reach (only formed
    when ``mag`` is given)."""
    if mag is None:
        return ([new], const, [None], None), None
    return ([new], const, [magnitude(mag)], row_sums(mag.data * reach())), None
