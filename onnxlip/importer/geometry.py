"""Window geometry (pads, strides, output size) from ONNX Conv/Pool attributes."""
from __future__ import annotations

from ..linalg.windows import Window2d
from .registry import ConversionError, NodeContext


def _out_size(size: int, k_eff: int, stride: int, pad: int, begin: int, ceil_mode: bool) -> int:
    span = size + pad - k_eff
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    # A last window that starts in the end padding is dropped (ONNX/PyTorch rule).
    if ceil_mode and (out - 1) * stride >= size + begin:
        out -= 1
    return out


def window_from_attrs(ctx: NodeContext, kernel: tuple[int, int], in_hw: tuple[int, int]) -> Window2d:
    """Window2d of a 2-D Conv/MaxPool/AveragePool node, auto_pad and ceil_mode resolved."""
    strides = tuple(ctx.attr("strides", [1, 1]))
    dilations = tuple(ctx.attr("dilations", [1, 1]))
    pads = list(ctx.attr("pads", [0, 0, 0, 0]))
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if len(strides) != 2 or len(dilations) != 2 or len(pads) != 4:
        raise ConversionError("only 2-D windows are supported")
    k_eff = [dilations[a] * (kernel[a] - 1) + 1 for a in range(2)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for a in range(2):
            out = -(-in_hw[a] // strides[a])
            total = max(0, (out - 1) * strides[a] + k_eff[a] - in_hw[a])
            small = total // 2
            pads[a], pads[a + 2] = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad != "NOTSET":
        raise ConversionError(f"auto_pad={auto_pad!r} is not supported")
    if min(pads) < 0:
        raise ConversionError("negative pads are not supported")
    out_hw = tuple(
        _out_size(in_hw[a], k_eff[a], strides[a], pads[a] + pads[a + 2], pads[a], ceil_mode) for a in range(2)
    )
    if min(out_hw) < 1:
        raise ConversionError(f"window larger than its input {in_hw}")
    return Window2d(kernel, strides, dilations, tuple(pads), in_hw, out_hw)  # type: ignore[arg-type]
