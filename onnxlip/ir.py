"""Framework-neutral IR: small typed nodes of a network's graph, no ONNX import.

Shapes are per sample (no batch axis); every method takes and returns arrays
with a leading batch axis. Affine nodes split into ``linear`` (the matrix A,
applied matrix-free) and a bias, and expose ``adjoint`` (Aᵀ); ``with_weights``
gives the same map with a function applied to every weight (|A| for interval
bounds, A∘A for masked row norms).
Activation nodes expose ``jvp``/``vjp`` at a fixed nominal input, so a whole
network with its activation pattern fixed is one linear operator.
Merge nodes (``merge = True``: ``Add``, ``Concat``) read several tensors; they are linear,
with ``linear(*parts)`` and ``adjoint(u)`` giving one cotangent per input.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Union

import numpy as np

from .backend import array_module
from .conv import conv2d, conv2d_adjoint
from .conv_matrix import conv_as_sparse
from .pooling import maxpool2d, scatter_winners, select_winners
from .windows import Window2d

Shape = tuple[int, ...]
ROUNDING_PAD = 1e-12  # relative widening of a computed sum's enclosure (≫ the unit roundoff)


@dataclass(frozen=True, eq=False)
class Dense:
    """y = W x + b on flat vectors; W is (out, in)."""

    weight: Any
    bias: Any
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "dense"
    merge = False

    def linear(self, v: Any) -> Any:
        return v @ self.weight.T

    def adjoint(self, u: Any) -> Any:
        return u @ self.weight

    def forward(self, x: Any) -> Any:
        return self.linear(x) + self.bias


@dataclass(frozen=True, eq=False)
class Conv:
    """2-D convolution; ``bias`` broadcasts to out_shape ((M,1,1) or (M,Ho,Wo))."""

    weight: Any
    bias: Any
    window: Window2d
    groups: int
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "conv"
    merge = False

    @cached_property
    def matrix(self) -> Any:
        """The layer as a sparse matrix when that is cheaper than a strided convolution (SciPy:
        host weights only; a GPU copy of the layer convolves)."""
        return conv_as_sparse(self) if isinstance(self.weight, np.ndarray) else None

    def linear(self, v: Any) -> Any:
        if isinstance(v, np.ndarray) and self.matrix is not None:
            return (self.matrix @ v.reshape(len(v), -1).T).T.reshape(len(v), *self.out_shape)
        return conv2d(v, self.weight, self.window, self.groups)

    def adjoint(self, u: Any) -> Any:
        if isinstance(u, np.ndarray) and self.matrix is not None:
            return (self.matrix.T @ u.reshape(len(u), -1).T).T.reshape(len(u), *self.in_shape)
        return conv2d_adjoint(u, self.weight, self.window, self.groups)

    def forward(self, x: Any) -> Any:
        return self.linear(x) + self.bias


@dataclass(frozen=True, eq=False)
class Scale:
    """Elementwise affine y = scale·x + shift (normalization, unfolded BatchNorm)."""

    scale: Any
    shift: Any
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "scale"
    merge = False

    def linear(self, v: Any) -> Any:
        return v * self.scale

    def adjoint(self, u: Any) -> Any:
        return u * self.scale

    def forward(self, x: Any) -> Any:
        return x * self.scale + self.shift


@dataclass(frozen=True, eq=False)
class Reshape:
    """Row-major reshape (Flatten, Reshape, Squeeze, Unsqueeze)."""

    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "reshape"
    merge = False

    def linear(self, v: Any) -> Any:
        return v.reshape(v.shape[0], *self.out_shape)

    def adjoint(self, u: Any) -> Any:
        return u.reshape(u.shape[0], *self.in_shape)

    forward = linear


@dataclass(frozen=True, eq=False)
class Transpose:
    """Axis permutation of a sample (batch axis stays first)."""

    perm: tuple[int, ...]
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "transpose"
    merge = False

    def linear(self, v: Any) -> Any:
        return v.transpose(0, *(p + 1 for p in self.perm))

    def adjoint(self, u: Any) -> Any:
        inverse = np.argsort(self.perm)
        return u.transpose(0, *(int(p) + 1 for p in inverse))

    forward = linear


@dataclass(frozen=True, eq=False)
class Pad:
    """Zero padding; ``pads`` is ((begin, end), ...) per sample axis."""

    pads: tuple[tuple[int, int], ...]
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "pad"
    merge = False

    def linear(self, v: Any) -> Any:
        return array_module(v).pad(v, ((0, 0), *self.pads))

    def adjoint(self, u: Any) -> Any:
        index = tuple(slice(b, b + n) for (b, _), n in zip(self.pads, self.in_shape))
        return u[(slice(None), *index)]

    forward = linear


@dataclass(frozen=True, eq=False)
class Relu:
    """max(x, 0); its JVP at x0 keeps the units active at x0."""

    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "relu"
    merge = False

    def forward(self, x: Any) -> Any:
        return array_module(x).maximum(x, 0)

    def jvp(self, x0: Any, v: Any) -> Any:
        return v * (x0 > 0)

    vjp = jvp


@dataclass(frozen=True, eq=False)
class MaxPool:
    """2-D max-pooling; its JVP at x0 selects each window's winner at x0."""

    window: Window2d
    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "maxpool"
    merge = False

    def forward(self, x: Any) -> Any:
        return maxpool2d(x, self.window)[0]

    def mask(self, d: Any) -> Any:
        """Which outputs may change, given which inputs may (d ≥ 0)."""
        return maxpool2d(d, self.window)[0]

    def jvp(self, x0: Any, v: Any) -> Any:
        return select_winners(v, maxpool2d(x0, self.window)[1], self.window)

    def vjp(self, x0: Any, u: Any) -> Any:
        return scatter_winners(u, maxpool2d(x0, self.window)[1], self.window)


@dataclass(frozen=True, eq=False)
class Add:
    """The sum of two tensors of one shape: where the branches of a residual block meet."""

    in_shape: Shape
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "add"
    merge = True

    def forward(self, a: Any, b: Any) -> Any:
        return a + b

    linear = forward

    def adjoint(self, u: Any) -> tuple[Any, Any]:
        return u, u

    def interval(self, a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
        """Enclosure of the sum, widened for its rounding (a relative 1e-12 of the terms)."""
        xp = array_module(a[0])
        pad = ROUNDING_PAD * (xp.abs(a[0]) + xp.abs(a[1]) + xp.abs(b[0]) + xp.abs(b[1])) + 1e-300
        return a[0] + b[0] - pad, a[1] + b[1] + pad

    @staticmethod
    def spread(*changes: float) -> float:
        """Bound on how far the output moves from bounds on how far each input moves."""
        return sum(changes)


@dataclass(frozen=True, eq=False)
class Concat:
    """Tensors joined along a sample axis (DenseNet/Inception-style merges)."""

    axis: int  # per-sample axis
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    names: tuple[str, ...] = ()
    op = "concat"
    merge = True

    @property
    def in_shape(self) -> Shape:
        return self.in_shapes[0]

    def forward(self, *parts: Any) -> Any:
        return array_module(parts[0]).concatenate(parts, axis=self.axis + 1)

    linear = forward

    def adjoint(self, u: Any) -> tuple[Any, ...]:
        ends = np.cumsum([shape[self.axis] for shape in self.in_shapes])[:-1]
        return tuple(array_module(u).split(u, ends, axis=self.axis + 1))

    def interval(self, *parts: tuple[Any, Any]) -> tuple[Any, Any]:
        return self.forward(*(lo for lo, _ in parts)), self.forward(*(hi for _, hi in parts))

    @staticmethod
    def spread(*changes: float) -> float:
        """‖(Δa, Δb, …)‖₂ from bounds on each ‖Δ‖₂."""
        return math.sqrt(sum(c * c for c in changes))


Affine = Union[Dense, Conv, Scale]
ShapeOp = Union[Reshape, Transpose, Pad]
Merge = Union[Add, Concat]
Node = Union[Dense, Conv, Scale, Reshape, Transpose, Pad, Relu, MaxPool, Add, Concat]
AFFINE_TYPES = (Dense, Conv, Scale)
SHAPE_TYPES = (Reshape, Transpose, Pad)
NONLINEAR_TYPES = (Relu, MaxPool)  # nodes with jvp/vjp at x0 instead of linear/adjoint
ARRAY_FIELDS = ("weight", "bias", "scale", "shift")


def node_jvp(node: Node, a: Any, v: Any) -> Any:
    """J·v of a one-input node at its nominal input ``a`` (its linear part if it is linear)."""
    return node.jvp(a, v) if isinstance(node, NONLINEAR_TYPES) else node.linear(v)


def node_vjp(node: Node, a: Any, u: Any) -> Any:
    """Jᵀ·u of a one-input node at its nominal input ``a``."""
    return node.vjp(a, u) if isinstance(node, NONLINEAR_TYPES) else node.adjoint(u)


def node_flops(node: Node) -> int:
    """Rough multiply-adds of one pass through a node."""
    weight = getattr(node, "weight", None)
    per_output = int(np.prod(weight.shape[1:])) if weight is not None else 1
    return int(np.prod(node.out_shape)) * per_output


def chain_flops(nodes: tuple[Node, ...]) -> int:
    """Rough multiply-adds of one pass through nodes (a chain, or a graph's nodes)."""
    return sum(node_flops(n) for n in nodes)


def node_cached(node: Node, key: Any, build: Callable[[], Any]) -> Any:
    """``build()`` computed once per node and ``key`` and kept on the node (frozen dataclasses:
    a cache, not a field) — for what every bound of a sweep would otherwise recompute."""
    cache = node.__dict__.setdefault("_cache", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def with_weights(node: Affine, fn: Callable[[Any], Any]) -> Affine:
    """The linear part of ``node`` with ``fn`` applied to each weight, and no bias; kept on
    the node per ``fn`` (row norms and interval bounds map the same weights in every bound)."""
    return node_cached(node, ("with_weights", fn), lambda: _mapped_weights(node, fn))


def node_offset(node: Node) -> Any:
    """The node's output at a zero input (its bias, batch-1 shaped; zero for shape nodes)."""
    return node_cached(node, "offset", lambda: node.forward(np.zeros((1, *node.in_shape))))


def fan_in(node: Node) -> int:
    """Most products summed into one value when a linear node is applied either way
    (its matvec or its adjoint); 0 for nodes that only select, mask or move values."""
    if isinstance(node, Dense):
        return max(node.weight.shape)
    if isinstance(node, Conv):
        m, cg, kh, kw = node.weight.shape
        return max(cg, m // node.groups) * kh * kw
    return 1 if isinstance(node, Scale) else 0


def _mapped_weights(node: Affine, fn: Callable[[Any], Any]) -> Affine:
    if isinstance(node, Scale):
        return dataclasses.replace(node, scale=fn(node.scale), shift=node.shift * 0)
    mapped = dataclasses.replace(node, weight=fn(node.weight), bias=node.bias * 0)
    if isinstance(node, Conv) and node.matrix is not None:  # reuse the sparsity pattern
        matrix = node.matrix.copy()
        matrix.data = fn(matrix.data)
        mapped.__dict__["matrix"] = matrix
    return mapped


def parameter_count(node: Node) -> int:
    """Number of stored parameters (weights and biases) of a node."""
    return sum(int(np.size(getattr(node, f))) for f in ARRAY_FIELDS if hasattr(node, f))


def map_arrays(node: Node, fn: Callable[[Any], Any]) -> Node:
    """A copy of ``node`` with ``fn`` applied to each parameter array."""
    changes = {f: fn(getattr(node, f)) for f in ARRAY_FIELDS if hasattr(node, f)}
    return dataclasses.replace(node, **changes) if changes else node


def _short(value: Any) -> str:
    """(2, 2) -> '2', (1, 2) -> '1x2': compact attribute text."""
    if isinstance(value, int):
        return str(value)
    return str(value[0]) if len(set(value)) == 1 else "x".join(map(str, value))


def describe(node: Node) -> str:
    """Short human description of a node's op and key attributes."""
    if isinstance(node, Conv):
        w = node.window
        extras = "".join(f" {tag}{_short(v)}" for tag, v, plain in (
            ("s", w.strides, (1, 1)), ("p", w.pads, (0, 0, 0, 0)), ("d", w.dilations, (1, 1)), ("g", node.groups, 1))
            if v != plain)
        return f"conv {node.weight.shape[0]}x{node.weight.shape[1]}x{w.kernel[0]}x{w.kernel[1]}{extras}"
    if isinstance(node, MaxPool):
        return f"maxpool {_short(node.window.kernel)} s{_short(node.window.strides)}"
    if isinstance(node, Dense):
        return f"dense {node.weight.shape[1]}->{node.weight.shape[0]}"
    if isinstance(node, Transpose):
        return f"transpose {node.perm}"
    if isinstance(node, Concat):
        return f"concat axis {node.axis}"
    return node.op
