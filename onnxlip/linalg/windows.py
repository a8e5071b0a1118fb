"""Geometry of 2-D sliding windows, shared by convolution and pooling.

Both are computed as a short loop over *kernel offsets* (kh·kw iterations), each
a strided slice of the padded input: no im2col buffer, no loop over pixels.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Window2d:
    """Kernel, strides, dilations and padding of a 2-D window op.

    ``pads`` is ONNX order (top, left, bottom, right); ``out_hw`` is the output
    size, which also fixes any extra end padding that ceil_mode needs.
    """

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def padded_hw(self) -> tuple[int, int]:
        """Size of the padded input, large enough for every window."""
        sizes = []
        for ax in range(2):
            span = (self.out_hw[ax] - 1) * self.strides[ax] + self.dilations[ax] * (self.kernel[ax] - 1) + 1
            declared = self.in_hw[ax] + self.pads[ax] + self.pads[ax + 2]
            sizes.append(max(span, declared))
        return sizes[0], sizes[1]

    def pad_width(self) -> tuple[tuple[int, int], ...]:
        """``xp.pad`` widths for an (N, C, H, W) array."""
        ph, pw = self.padded_hw
        top, left = self.pads[0], self.pads[1]
        return ((0, 0), (0, 0), (top, ph - self.in_hw[0] - top), (left, pw - self.in_hw[1] - left))

    def offsets(self) -> Iterator[tuple[int, int, tuple[slice, slice]]]:
        """Yield (i, j, spatial slice of the padded input seen by kernel tap (i, j))."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.strides, self.dilations
        ho, wo = self.out_hw
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                yield i, j, (rows, cols)

    def pad(self, x: Any, xp: Any, value: float = 0.0) -> Any:
        """Pad an (N, C, H, W) array to ``padded_hw``."""
        return xp.pad(x, self.pad_width(), mode="constant", constant_values=value)

    def crop(self, xpad: Any) -> Any:
        """Inverse of ``pad``: the (N, C, H, W) interior of a padded array."""
        top, left = self.pads[0], self.pads[1]
        return xpad[:, :, top : top + self.in_hw[0], left : left + self.in_hw[1]]

    def max_windows_per_element(self) -> int:
        """Most windows one input element can fall into: Π ceil(k·d / s) bounds it."""
        count = 1
        for ax in range(2):
            span = self.dilations[ax] * (self.kernel[ax] - 1) + 1
            count *= min(self.kernel[ax], -(-span // self.strides[ax]))
        return count
