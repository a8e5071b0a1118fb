"""IR simplification: fold elementwise affine maps (normalization, BatchNorm,
bias Adds) and zero padding into the neighbouring Dense/Conv, where exact.

Folding matters for the bound: an affine map followed by ReLU is one layer of
the method, so a BatchNorm between Conv and Relu must disappear into the Conv.
The rules run inside the branches of residual blocks too (never across them).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from ..conv import conv2d
from ..ir import Conv, Dense, Node, Pad, Reshape, Residual, Scale, Transpose


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


def _rewrite_once(nodes: list[Node]) -> bool:
    for i in range(len(nodes) - 1):
        a, b = nodes[i], nodes[i + 1]
        for first, second, rule in RULES:
            if isinstance(a, first) and isinstance(b, second):
                result = rule(a, b)
                if result is not None:
                    nodes[i : i + 2] = result if isinstance(result, list) else [result]
                    return True
    return False


def fold(nodes: list[Node]) -> list[Node]:
    """Apply the folding rules until none fires, inside residual branches first."""
    nodes = [_fold_branches(n) for n in nodes]
    while _rewrite_once(nodes):
        pass
    return nodes


def _fold_branches(node: Node) -> Node:
    if not isinstance(node, Residual):
        return node
    return dataclasses.replace(node, main=tuple(fold(list(node.main))), skip=tuple(fold(list(node.skip))))
