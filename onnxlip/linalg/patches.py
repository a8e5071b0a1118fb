"""Batches of maps kept on per-row patches (for one-hot batches through window ops).

Tight mode forms segment matrices by pulling one-hot rows back (or pushing one-hot columns
forward) through a few layers, one per unstable unit. Through convolutions, ReLU and max-pool
a vector that starts at one pixel stays inside that pixel's receptive field (or its image),
so each is kept as a small (C, Ph, Pw) patch with its own origin in the layer's (H, W) grid
instead of a full (C, H, W) map: a window op maps a patch to the patch it touches
(``pull_through_window``, ``push_through_window``), and the diagonal or per-window weights of
ReLU and max-pool are gathered at each patch's positions. Entries that fall outside the map
(padding) are dropped, so the result holds the same sums as the dense pass (up to their
order). The node kinds that pass patches implement ``pull_patches``/``push_patches``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from .windows import Window2d

# Stay on patches while they cover at most this share of the map (then a dense pass is cheaper).
MAX_COVER = 0.25


@dataclass(frozen=True)
class Patches:
    """Row r of a (q, C, H, W) batch: ``data[r]`` placed at rows/cols origin[r] + [0, P), zero elsewhere."""

    data: Any  # (q, C, Ph, Pw)
    origin: Any  # (q, 2) int: top-left corner of each patch in the (H, W) grid (may lie outside)
    hw: tuple[int, int]

    def __len__(self) -> int:
        return len(self.data)

    @property
    def size(self) -> tuple[int, int]:
        return self.data.shape[2], self.data.shape[3]

    def inside(self) -> Any:
        """(q, 1, Ph, Pw) mask of the patch positions that lie in the map."""
        (h, w), (ph, pw) = self.hw, self.size
        ys = self.origin[:, :1] + np.arange(ph)
        xs = self.origin[:, 1:] + np.arange(pw)
        return (((ys >= 0) & (ys < h))[:, None, :, None] & ((xs >= 0) & (xs < w))[:, None, None, :])

    def gather(self, full: Any) -> Any:
        """Values of a batch-1 (1, C, H, W, …) array at each row's patch positions (0 outside):
        (q, C, Ph, Pw, …)."""
        (h, w), (ph, pw) = self.hw, self.size
        ys = np.clip(self.origin[:, :1] + np.arange(ph), 0, h - 1)
        xs = np.clip(self.origin[:, 1:] + np.arange(pw), 0, w - 1)
        values = np.moveaxis(full[0][:, ys[:, :, None], xs[:, None, :]], 1, 0)
        inside = self.inside()
        return values * inside.reshape(*inside.shape, *[1] * (values.ndim - 4))

    def like(self, data: Any) -> "Patches":
        """Other values on the same patches."""
        return Patches(data, self.origin, self.hw)

    def in_frame(self, data: Any, origin: Any, hw: tuple[int, int]) -> "Patches":
        """``data`` as patches at ``origin`` of an (H, W) map, entries outside the map dropped."""
        out = Patches(data, origin, hw)
        return out.like(data * out.inside())

    def dense(self) -> Any:
        """The (q, C, H, W) batch."""
        (h, w), (ph, pw) = self.hw, self.size
        q, c = self.data.shape[:2]
        ys = self.origin[:, :1] + np.arange(ph)
        xs = self.origin[:, 1:] + np.arange(pw)
        top, left = max(0, -int(ys.min())), max(0, -int(xs.min()))
        bottom, right = max(0, int(ys.max()) - h + 1), max(0, int(xs.max()) - w + 1)
        out = np.zeros((q, h + top + bottom, w + left + right, c), dtype=self.data.dtype)
        out[np.arange(q)[:, None, None], (ys + top)[:, :, None], (xs + left)[:, None, :]] = self.data.transpose(0, 2, 3, 1)
        return out[:, top : top + h, left : left + w].transpose(0, 3, 1, 2)

    def entries(self, flat: Any) -> Any:
        """(q, len(flat)) values at flat indices of the (C, H, W) map."""
        (h, w), (ph, pw) = self.hw, self.size
        c, y, x = np.unravel_index(flat, (self.data.shape[1], h, w))
        dy, dx = y[None, :] - self.origin[:, :1], x[None, :] - self.origin[:, 1:]
        inside = (dy >= 0) & (dy < ph) & (dx >= 0) & (dx < pw)
        rows = np.arange(len(self))[:, None]
        return self.data[rows, c[None, :], np.clip(dy, 0, ph - 1), np.clip(dx, 0, pw - 1)] * inside

    def covers_little(self) -> bool:
        return self.size[0] * self.size[1] <= MAX_COVER * self.hw[0] * self.hw[1]


def unit_patches(flat: Any, shape: tuple[int, ...], values: Any = None) -> Patches:
    """Rows values_i·e_i (default 1) for flat indices ``flat`` of a (C, H, W) map, in that
    order, as 1×1 patches (one zero row when ``flat`` is empty, like ``segments.basis``)."""
    c, h, w = shape
    channel, y, x = np.unravel_index(flat, shape)
    data = np.zeros((max(len(flat), 1), c, 1, 1))
    data[np.arange(len(flat)), channel, 0, 0] = 1.0 if values is None else values
    origin = np.zeros((len(data), 2), dtype=np.int64)
    origin[: len(flat)] = np.stack([y, x], axis=1)
    return Patches(data, origin, (h, w))


def basis_patches(weights: Any) -> Patches:
    """``segments.basis`` as 1×1 patches: one row e_i·w_i per non-zero entry of the batch-1
    (1, C, H, W) ``weights``, in flat order, without forming the dense batch."""
    flat = np.flatnonzero(weights.reshape(-1))
    return unit_patches(flat, weights.shape[1:], weights.reshape(-1)[flat])


def one_hot_patches(rows: Any) -> Optional[Patches]:
    """The batch as 1×1 patches when every row is zero outside one pixel (all channels)."""
    if rows.ndim != 4 or len(rows) == 0:
        return None
    q, c, h, w = rows.shape
    pixels = np.abs(rows).sum(axis=1).reshape(q, -1)
    where = pixels.argmax(axis=1)
    if np.count_nonzero(pixels, axis=1).max() > 1:
        return None
    ys, xs = where // w, where % w
    data = rows[np.arange(q), :, ys, xs][:, :, None, None]
    return Patches(data, np.stack([ys, xs], axis=1), (h, w))


def input_frame(p: Patches, win: Window2d) -> tuple[Any, Window2d]:
    """Origins in a window op's input grid, and the window (unpadded) that maps each output
    patch to its input patch."""
    (sh, sw), (dh, dw), (kh, kw) = win.strides, win.dilations, win.kernel
    ph, pw = p.size
    size = ((ph - 1) * sh + (kh - 1) * dh + 1, (pw - 1) * sw + (kw - 1) * dw + 1)
    origin = p.origin * np.array([sh, sw]) - np.array([win.pads[0], win.pads[1]])
    return origin, Window2d(win.kernel, win.strides, win.dilations, (0, 0, 0, 0), size, (ph, pw))


def grown(size: Any, win: Window2d) -> Any:
    """The (Ph, Pw) of the input patch a window op pulls an output patch of ``size`` back to."""
    return (size - 1) * np.array(win.strides) + (np.array(win.kernel) - 1) * np.array(win.dilations) + 1


def pull_through_window(p: Patches, win: Window2d, in_hw: tuple[int, int],
                        apply: Callable[[Any, Window2d], Any]) -> Patches:
    """A window op's transpose on patches: ``apply(data, window)`` on each output patch with the
    (unpadded) window that maps it to its input patch, framed in the (H, W) input grid."""
    origin, local = input_frame(p, win)
    return p.in_frame(apply(p.data, local), origin, in_hw)


def push_through_window(p: Patches, win: Window2d, out_hw: tuple[int, int],
                        apply: Callable[[Any, Window2d, Patches], Any]) -> Patches:
    """A window op on patches: ``apply(framed input, local window, output patches)`` on the part
    of the input each patch's outputs read, framed in the (H, W) output grid."""
    stride, span = np.array(win.strides), (np.array(win.kernel) - 1) * np.array(win.dilations)
    pads = np.array(win.pads[:2])
    # outputs whose window meets the patch: the first one per patch, and at most this many
    first = -((span - pads - p.origin) // stride)
    count = (np.array(p.size) - 1 + span) // stride + 1
    origin_in = first * stride - pads
    size_in = (count - 1) * stride + span + 1
    framed = Patches(p.data, p.origin - origin_in, (int(size_in[0]), int(size_in[1]))).dense()
    local = Window2d(win.kernel, win.strides, win.dilations, (0, 0, 0, 0), framed.shape[2:], (int(count[0]), int(count[1])))
    out = Patches(np.zeros((len(first), 1, *local.out_hw)), first, out_hw)
    return out.in_frame(apply(framed, local, out), first, out.hw)
