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
    from .ir import Conv

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
    out_c, oy, ox, ci, ky, kx = np.meshgrid(np.arange(m), np.arange(ho), np.arange(wo), np.arange(cg),
                                            np.arange(kh), np.arange(kw), indexing="ij")
    iy, ix = oy * sh + ky * dh - top, ox * sw + kx * dw - left
    channel = (out_c // (m // node.groups)) * cg + ci
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    rows = ((out_c * ho + oy) * wo + ox)[inside]
    cols = ((channel * h + iy) * w + ix)[inside]
    vals = node.weight[out_c, ci, ky, kx][inside]
    return sp.csr_matrix((vals, (rows, cols)), shape=(m * ho * wo, c_in * h * w))
