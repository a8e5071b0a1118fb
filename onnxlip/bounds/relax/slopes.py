"""Optimised lower lines for the linear relaxation (α-CROWN's idea, gradients by hand).

An unstable ReLU's lower line α·z is below ReLU on its range for every α in [0, 1], and a
max-pool window's max is above every convex combination of its elements, so
back-substitution (``graph.relax``) gives a sound bound for any such choice per row and unit; this
module picks them by projected gradient ascent (Adam) on the bound. No autograd is needed:
for fixed choices of lines, the bound of row r is L = min over the input set of Λ_in·x + c
(Λ_in·x0 + c − ε‖Λ_in‖ on the ball), whose gradient in Λ_in is its minimiser x* (envelope
theorem; ``domain.concretize`` gives it with an input box too). L is linear in each node's Λ
through Λ_in, so ∂L/∂Λ_k is the *forward* value at node k of x* through the network with every
nonlinear unit replaced by row r's chosen line (``relaxed_forward``). A lower line's parameter
then has gradient Λ·z: z the unit's input (ReLU slope) or the tap's value (max-pool weight).
Every iterate gives a valid bound: the best one per row is kept.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import crown
from ..domain import InputBox
from ...graph.dag import Graph
from .backsub import back_substitute, relaxed_forward

STEPS = 20
LEARNING_RATE = 0.25
# Rows started from lines optimised before (``optimise``'s ``start``) take smaller steps: Adam's
# first step moves every line by the full rate, which threw most of a warm start away
# (docs/tight_mode.md).
WARM_RATE = 0.1
# With a target (``stop_above``), give up once the worst row gained less than this share of its
# remaining gap over the last PATIENCE steps: the runs plateau after ~5 steps (mnist_lenet at
# r = 0.23: −24.4 → −3.6 then flat; cifar10_net at r = 0.0134: −22.7 → −14.9 then flat), and
# the flat steps were a third of cifar10_net's radius search.
PATIENCE, MIN_GAIN = 3, 0.02
BETAS = (0.9, 0.999)


def free_lines(relaxed: dict[int, Any]) -> dict[int, Any]:
    """Per nonlinear node with a choice of lower line: its unstable ReLU units, or the allowed
    taps of each max-pool window (stable windows: the winner alone)."""
    return {k: lines.free for k, lines in relaxed.items() if np.any(lines.unstable)}


def initial_lines(relaxed: dict[int, Any], free: dict[int, Any], rows: int) -> dict[int, Any]:
    """The default lines (see ``crown``), one copy per row."""
    return {k: np.repeat(relaxed[k].default, rows, axis=0) for k in free}


def relaxed_pass(g: Graph, relaxed: dict[int, Any], rows: Any, x0: Any, eps: float,
                 lines_in: dict[int, Any], free: dict[int, Any], box: InputBox | None = None,
                 shifts: dict[int, Any] | None = None) -> tuple[Any, dict[int, Any], dict[int, Any], dict[int, Any]]:
    """Each row's bound (without the rounding slack), its gradient in the lower lines, the lines
    chosen per nonlinear node (``back_substitute``'s ``chosen``: Λ there first) and each
    nonlinear node's input at the minimiser x* (``relaxed_forward``); ``shifts`` as in
    ``back_substitute`` (``branching``'s split multipliers)."""
    chosen: dict[int, Any] = {}
    lam, const, _, _ = back_substitute(g, relaxed, rows, lines_in, chosen, magnitudes=False, shifts=shifts)
    value, worst, _ = crown.concretize_rows(lam, x0.reshape(1, *g.input_shape), eps, box)
    inputs = relaxed_forward(g, chosen, worst.reshape(len(lam), *g.input_shape))
    grads = {}
    for k, mask in free.items():
        grads[k] = relaxed[k].gradient(chosen[k][0], inputs[k], mask)
    return value + const, grads, chosen, inputs


def _value_and_gradient(g: Graph, relaxed: dict[int, Any], rows: Any, x0: Any, eps: float,
                        lines_in: dict[int, Any], free: dict[int, Any],
                        box: InputBox | None = None) -> tuple[Any, dict[int, Any]]:
    """Each row's bound (without the rounding slack) and its gradient in the lower lines."""
    return relaxed_pass(g, relaxed, rows, x0, eps, lines_in, free, box)[:2]


def adam_ascent(params: dict[Any, Any], grads: dict[Any, Any], moments: dict[Any, Any], step: int,
                rate: Any = LEARNING_RATE) -> None:
    """One ascent step of Adam on every array of ``params``, in place (no projection); ``rate``:
    the step size, or one per row (first axis)."""
    rate = np.asarray(rate)
    for key, a in params.items():
        m, v = moments.setdefault(key, (np.zeros_like(a), np.zeros_like(a)))
        m *= BETAS[0]
        m += (1 - BETAS[0]) * grads[key]
        v *= BETAS[1]
        v += (1 - BETAS[1]) * grads[key] ** 2
        m_hat, v_hat = m / (1 - BETAS[0] ** step), v / (1 - BETAS[1] ** step)
        a += rate.reshape(rate.shape + (1,) * (a.ndim - rate.ndim)) * m_hat / (np.sqrt(v_hat) + 1e-12)


def _done(worst: list[float], target: float) -> bool:
    """Whether the worst row's bound (its history ``worst``) has passed ``target`` or stalled."""
    if worst[-1] > target:
        return True
    return len(worst) > PATIENCE and worst[-1] - worst[-1 - PATIENCE] < MIN_GAIN * (target - worst[-1])


def optimise(g: Graph, ranges: dict[int, tuple[Any, Any]], rows: Any, x0: Any, eps: float,
             steps: int = STEPS, stop_above: float | None = None, box: InputBox | None = None,
             start: dict[int, Any] | None = None) -> dict[int, Any]:
    """Lower lines per row that raise every row's bound (Adam, projected on the valid lines),
    from the default ones or, where ``start`` has them (per node, rows × units, NaN for none),
    from those at ``WARM_RATE``; stops early when every row's bound exceeds ``stop_above``, or
    when the worst row stops getting closer to it (``PATIENCE``). Returns the best lines met per
    row."""
    relaxed = crown.relaxations(g.nodes, ranges)
    free = free_lines(relaxed)
    lines = initial_lines(relaxed, free, len(rows))
    if not lines:
        return lines
    rate = np.full(len(rows), LEARNING_RATE)
    for k in set(lines) & set(start or ()):
        known = ~np.isnan(start[k])
        lines[k] = relaxed[k].project(np.where(known, start[k], lines[k]), free[k])
        rate[known.reshape(len(rows), -1).any(axis=1)] = WARM_RATE
    best = {k: a.copy() for k, a in lines.items()}
    best_value = np.full(len(rows), -np.inf)
    moments: dict[Any, Any] = {}
    worst: list[float] = []
    for step in range(1, steps + 1):
        value, grads = _value_and_gradient(g, relaxed, rows, x0, eps, lines, free, box)
        better = value > best_value
        best_value = np.maximum(best_value, value)
        for k, a in lines.items():
            best[k][better] = a[better]
        worst.append(float(best_value.min()))
        if step == steps or (stop_above is not None and _done(worst, stop_above)):
            break
        adam_ascent(lines, grads, moments, step, rate)
        for k in lines:
            lines[k] = relaxed[k].project(lines[k], free[k])
    return best
