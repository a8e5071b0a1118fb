"""Norms of segments of the network linearized at its secant centres.

A segment C[a, b) applies nodes a … b−1, each as a linear map: affine and shape
nodes by their linear part, ReLU and MaxPool by their centre secant. We need
‖diag(row)·C[a,b)·diag(col)‖₂ and ‖Y·C[a,b)·diag(col)‖₂ for row vectors Y.
When one side has few non-zero entries the matrix is formed by one batched pass
and its norm is exact; otherwise Lanczos runs on the segment's JVP/VJP.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .linop import FlatOperator
from .ir import MaxPool, Relu
from .network import Network
from .secant import Secant
from .spectral import NormResult, matrix_norm, operator_norm

EXPLICIT_LIMIT = 64
NONLINEAR = (Relu, MaxPool)  # basis vectors pushed through a segment in one batch


@dataclass
class Segments:
    """The network with centre secants fixed at some nonlinear nodes."""

    net: Network
    acts: list[Any]  # nominal node inputs: nonlinear nodes without a secant use their Jacobian at x0
    secants: dict[int, Secant] = field(default_factory=dict)
    lanczos_calls: int = 0

    def shape_at(self, k: int) -> tuple[int, ...]:
        """Per-sample shape of the input of node k (k = len(nodes): the output)."""
        nodes = self.net.nodes
        return nodes[k].in_shape if k < len(nodes) else nodes[-1].out_shape

    def forward(self, a: int, b: int, v: Any) -> Any:
        for k in range(a, b):
            node = self.net.nodes[k]
            if k in self.secants:
                v = self.secants[k].jvp(v)
            else:
                v = node.jvp(self.acts[k], v) if isinstance(node, NONLINEAR) else node.linear(v)
        return v

    def backward(self, a: int, b: int, u: Any) -> Any:
        for k in reversed(range(a, b)):
            node = self.net.nodes[k]
            if k in self.secants:
                u = self.secants[k].vjp(u)
            else:
                u = node.vjp(self.acts[k], u) if isinstance(node, NONLINEAR) else node.adjoint(u)
        return u

    def norm(self, a: int, b: int, col: Any = None, row: Any = None, left: Any = None) -> NormResult:
        """‖L·C[a,b)·diag(col)‖₂ with L = ``left`` (k, *out) rows if given, else diag(row) (None: I)."""
        col = np.ones((1, *self.shape_at(a))) if col is None else col
        row = np.ones((1, *self.shape_at(b))) if row is None else row
        n_rows = len(left) if left is not None else int(np.count_nonzero(row))
        n_cols = int(np.count_nonzero(col))
        if left is None and min(n_rows, n_cols) > EXPLICIT_LIMIT:
            return self._lanczos(a, b, col, row)
        if left is not None or n_rows <= n_cols:  # one VJP per row
            rows = left if left is not None else basis(row)
            return matrix_norm((self.backward(a, b, rows) * col).reshape(len(rows), -1))
        cols = basis(col)  # one JVP per column
        return matrix_norm((self.forward(a, b, cols) * row).reshape(len(cols), -1))

    def _lanczos(self, a: int, b: int, col: Any, row: Any) -> NormResult:
        self.lanczos_calls += 1
        op = FlatOperator(lambda v: self.forward(a, b, v * col) * row, lambda u: self.backward(a, b, u * row) * col,
                          self.shape_at(a), self.shape_at(b), np.float64)
        return operator_norm(op)


def basis(weights: Any) -> Any:
    """Scaled basis vectors e_i·w_i for the non-zero entries of ``weights`` (batch-1 shaped)."""
    flat = weights.reshape(-1)
    idx = np.flatnonzero(flat)
    basis = np.zeros((max(len(idx), 1), flat.size))
    basis[np.arange(len(idx)), idx] = flat[idx]
    return basis.reshape(len(basis), *weights.shape[1:])
