"""IR simplification: fold elementwise affine maps (normalization, BatchNorm,
bias Adds) and zero padding into the neighbouring Dense/Conv, where exact.

Folding matters for the bound: an affine map followed by ReLU is one layer of
the method, so a BatchNorm between Conv and Relu must disappear into the Conv.
On a graph, a rule rewrites a node and its only reader (never across a branch point).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..linalg.conv import conv2d
from ..graph.nodes import Conv, Dense, Node, Pad, Reshape, Scale, Transpose


def _names(a: Node, b: Node) -> tuple[str, ...]:
    return a.names + b.names


def _full(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(a, shape).astype(np.float64)


def _per_channel(a: np.ndarray, shape: tuple[int, ...]) -> Optional[np.ndarray]:
    """(C,) values when ``a`` is constant over the spatial axes of (C, H, W), else None."""
    full = _full(a, shape)
    first = full[:, :1, :1]
    return first[:, 0, 0] if np.array_equal(full, np.broadcast_to(first, shape)) else None


def _scale_after_dense(a: Dense, s: Scale) -> Optional[Node]:
    scale, shift = _full(s.scale, a.out_shape), _full(s.shift, a.out_shape)
    return dataclasses.replace(a, weight=scale[:, None] * a.weight, bias=scale * a.bias + shift, names=_names(a, s))


def _scale_before_dense(s: Scale, a: Dense) -> Optional[Node]:
    scale, shift = _full(s.scale, s.in_shape), _full(s.shift, s.in_shape)
    return dataclasses.replace(a, weight=a.weight * scale[None, :], bias=a.bias + a.weight @ shift,
                               in_shape=s.in_shape, names=_names(s, a))


def _scale_after_conv(a: Conv, s: Scale) -> Optional[Node]:
    scale = _per_channel(s.scale, a.out_shape)
    if scale is None:
        return None
    bias = scale[:, None, None] * a.bias + np.asarray(s.shift, dtype=np.float64)
    return dataclasses.replace(a, weight=a.weight * scale[:, None, None, None], bias=bias, names=_names(a, s))


def _scale_before_conv(s: Scale, a: Conv) -> Optional[Node]:
    scale = _per_channel(s.scale, s.in_shape)
    if scale is None:
        return None
    group_channels = a.weight.shape[1]
    per_out = scale.reshape(a.groups, 1, group_channels).repeat(a.weight.shape[0] // a.groups, axis=1)
    weight = a.weight * per_out.reshape(a.weight.shape[0], group_channels, 1, 1)
    # The shift is convolved exactly, zero padding included: the bias may vary per pixel, and
    # is kept per channel only where it is exactly constant.
    shift_image = _full(s.shift, s.in_shape)[None]
    bias = a.bias + conv2d(shift_image, a.weight, a.window, a.groups)[0]
    if np.array_equal(bias, np.broadcast_to(bias[:, :1, :1], bias.shape)):
        bias = bias[:, :1, :1].copy()
    return dataclasses.replace(a, weight=weight, bias=bias, in_shape=s.in_shape, names=_names(s, a))


def _merge_scales(s: Scale, t: Scale) -> Optional[Node]:
    return dataclasses.replace(s, scale=s.scale * t.scale, shift=s.shift * t.scale + t.shift, names=_names(s, t))


def _scale_past_shape_op(s: Scale, op: Node) -> Optional[list[Node]]:
    """Move a Scale after a Reshape/Transpose so it can reach the next affine map."""
    scale = op.forward(_full(s.scale, s.in_shape)[None])[0]
    shift = op.forward(_full(s.shift, s.in_shape)[None])[0]
    return [op, Scale(scale, shift, op.out_shape, op.out_shape, s.names)]


def _pad_into_conv(p: Pad, a: Conv) -> Optional[Node]:
    if len(p.pads) != 3 or p.pads[0] != (0, 0):
        return None
    (top, bottom), (left, right) = p.pads[1], p.pads[2]
    w = a.window
    pads = (w.pads[0] + top, w.pads[1] + left, w.pads[2] + bottom, w.pads[3] + right)
    window = dataclasses.replace(w, pads=pads, in_hw=p.in_shape[1:])
    return dataclasses.replace(a, window=window, in_shape=p.in_shape, names=_names(p, a))


Rule = Callable[[Node, Node], Optional[object]]
RULES: list[tuple[type, type, Rule]] = [
    (Dense, Scale, _scale_after_dense),
    (Scale, Dense, _scale_before_dense),
    (Conv, Scale, _scale_after_conv),
    (Scale, Conv, _scale_before_conv),
    (Scale, Scale, _merge_scales),
    (Scale, Reshape, _scale_past_shape_op),
    (Scale, Transpose, _scale_past_shape_op),
    (Pad, Conv, _pad_into_conv),
]


@dataclass(eq=False)
class _Entry:
    """A node and the entries it reads (None: the network input), while the graph is rewritten."""

    node: Node
    reads: list["_Entry | None"]


def _entries(nodes: list[Node], wiring: list[tuple[int, ...]]) -> list[_Entry]:
    entries: list[_Entry] = []
    for node, ins in zip(nodes, wiring):
        entries.append(_Entry(node, [entries[t - 1] if t else None for t in ins]))
    return entries


def _rewrite_once(entries: list[_Entry]) -> bool:
    """Apply the first rule that fires to a node and its only reader (the output, the last entry,
    reads nothing after it, so it stays last); whether one fired."""
    for b in entries:
        a = b.reads[0] if len(b.reads) == 1 else None
        if a is None or sum(r is a for e in entries for r in e.reads) != 1:
            continue
        for first, second, rule in RULES:
            if isinstance(a.node, first) and isinstance(b.node, second):
                result = rule(a.node, b.node)
                if result is not None:
                    _replace(entries, a, b, result if isinstance(result, list) else [result])
                    return True
    return False


def _replace(entries: list[_Entry], a: _Entry, b: _Entry, nodes: list[Node]) -> None:
    """Put ``nodes`` (a chain) where b was, reading what a read; b's readers read the last one."""
    new, reads = [], a.reads
    for node in nodes:
        new.append(_Entry(node, reads))
        reads = [new[-1]]
    for e in entries:
        e.reads = [new[-1] if r is b else r for r in e.reads]
    j = entries.index(b)
    entries[j : j + 1] = new
    entries.remove(a)


def fold(nodes: list[Node], wiring: list[tuple[int, ...]]) -> tuple[list[Node], list[tuple[int, ...]]]:
    """Apply the folding rules until none fires, to each node and its only reader (a tensor that
    two branches read, or the output, is never folded away)."""
    entries = _entries(nodes, wiring)
    while _rewrite_once(entries):
        pass
    position = {id(e): k + 1 for k, e in enumerate(entries)}
    return [e.node for e in entries], [tuple(position[id(r)] if r else 0 for r in e.reads) for e in entries]
