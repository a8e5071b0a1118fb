"""A convolution as an explicit sparse matrix (CSR), built once per layer.

For small and medium layers a sparse matvec is far cheaper than a strided
convolution in NumPy, and rows/columns can be sliced for exact norms. Large
layers (ImageNet-size) stay matrix-free.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from ..graph.nodes import Conv

MAX_NNZ = 1e6


def conv_nnz(node: "Conv") -> int:
    """Stored entries of the layer's matrix (an upper bound: taps over padding count)."""
    return int(np.prod(node.out_shape)) * int(np.prod(node.weight.shape[1:]))


def conv_as_sparse(node: "Conv", max_nnz: float = MAX_NNZ) -> sp.csr_matrix | None:
    """The (out × in) matrix of ``node.linear`` in CSR form, or None when too large."""
    if conv_nnz(node) > max_nnz:
        return None
    m, cg, kh, kw = node.weight.shape
    c_in, h, w = node.in_shape
    ho, wo = node.window.out_hw
    (sh, sw), (dh, dw) = node.window.strides, node.window.dilations
    top, left = node.window.pads[0], node.window.pads[1]
    # Entries in CSR order directly (row = (out channel, y, x), then its taps): broadcasting
    # small index vectors instead of a 6-D meshgrid, and no COO sort.
    iy = (np.arange(ho) * sh - top)[:, None] + (np.arange(kh) * dh)[None, :]  # (ho, kh)
    ix = (np.arange(wo) * sw - left)[:, None] + (np.arange(kw) * dw)[None, :]  # (wo, kw)
    inside_y, inside_x = (iy >= 0) & (iy < h), (ix >= 0) & (ix < w)
    shape = (m, ho, wo, cg, kh, kw)
    inside = np.broadcast_to(inside_y[None, :, None, None, :, None] & inside_x[None, None, :, None, None, :], shape)
    channel = (np.arange(m) // (m // node.groups))[:, None] * cg + np.arange(cg)[None, :]  # (m, cg)
    cols = ((channel[:, None, None, :, None, None] * h + iy[None, :, None, None, :, None]) * w
            + ix[None, None, :, None, None, :])
    vals = np.broadcast_to(node.weight[:, None, None], shape)
    keep = inside.reshape(-1)
    counts = inside.reshape(m * ho * wo, -1).sum(axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return sp.csr_matrix((vals.reshape(-1)[keep], cols.reshape(-1)[keep].astype(np.int32), indptr),
                         shape=(m * ho * wo, c_in * h * w))
