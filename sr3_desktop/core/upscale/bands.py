"""Blocks of a resize: the shared bicubic (``resample``) computed for one block of the output only.

A large image is resized block by block (a band of rows, or one tile), so memory is bounded by the
block. The whole output is ``resample.resize_bicubic`` itself. A block reads only the source pixels
its filter reaches and runs Pillow's two passes over them (horizontal, then vertical, each with a
``box``): the same coefficients and the same sums, so for upscales by 2 and 4 (the model's
condition) a block is bit-identical to the whole-image resize. For other factors, Pillow runs the
whole-image passes in the order it finds cheaper, and blocks agree with it to about 1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from sr3_desktop.core.imageio import resample

BICUBIC_SUPPORT = 2.0
"""The bicubic filter reaches 2 source pixels either side (scaled by the factor when shrinking)."""
Reader = Callable[[int, int, int, int], np.ndarray]
"""read(top, bottom, left, right) -> the source block (h, w) or (h, w, C), float32."""
Writer = Callable[[int, np.ndarray], None]
"""write(top, rows): a finished band of output rows."""


def array_reader(array: np.ndarray) -> Reader:
    """A Reader over an (H, W[, C]) array in memory."""
    return lambda top, bottom, left, right: array[top:bottom, left:right]


def source_span(in_size: int, out_size: int, start: int, stop: int) -> tuple[int, int, float, float]:
    """(first, end) of the source pixels that output pixels [start, stop) of one axis read, and the edges
    of those output pixels in source coordinates (Pillow's ``box``)."""
    support = BICUBIC_SUPPORT * max(in_size / out_size, 1.0)
    low, high = start * in_size / out_size, min(float(in_size), stop * in_size / out_size)  # exact at the edges
    return max(0, math.floor(low - support) - 1), min(in_size, math.ceil(high + support) + 1), low, high


def resize_region(read: Reader, in_size: tuple[int, int], out_size: tuple[int, int], rows: tuple[int, int],
                  cols: tuple[int, int] | None = None) -> np.ndarray:
    """Output rows [rows) and columns [cols) (default: all) of resizing the (in_h, in_w) source to
    (out_w, out_h) = ``out_size`` with the shared bicubic; float32 (h, w) or (h, w, C)."""
    in_h, in_w = in_size
    width, height = out_size
    top, bottom = rows
    left, right = cols if cols is not None else (0, width)
    if (top, bottom, left, right) == (0, height, 0, width):
        return resample.resize_bicubic(read(0, in_h, 0, in_w), width, height)
    row_lo, row_hi, y0, y1 = source_span(in_h, height, top, bottom)
    col_lo, col_hi, x0, x1 = source_span(in_w, width, left, right)
    source = np.asarray(read(row_lo, row_hi, col_lo, col_hi), dtype=np.float32)
    planes = [source] if source.ndim == 2 else [source[:, :, c] for c in range(source.shape[2])]
    out = [_two_passes(p, (x0 - col_lo, x1 - col_lo), (y0 - row_lo, y1 - row_lo), right - left, bottom - top)
           for p in planes]
    return out[0] if source.ndim == 2 else np.stack(out, axis=2)


def _two_passes(plane: np.ndarray, xbox: tuple[float, float], ybox: tuple[float, float], width: int,
                height: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(plane))
    across = image.resize((width, image.height), Image.Resampling.BICUBIC, box=(xbox[0], 0, xbox[1], image.height))
    down = across.resize((width, height), Image.Resampling.BICUBIC, box=(0, ybox[0], width, ybox[1]))
    return np.asarray(down, dtype=np.float32)


def resize_bands(read: Reader, in_size: tuple[int, int], out_size: tuple[int, int], write: Writer,
                 band: int) -> None:
    """The whole resize, ``band`` output rows at a time, each handed to ``write(top, rows)``."""
    height = out_size[1]
    for top in range(0, height, band):
        write(top, resize_region(read, in_size, out_size, (top, min(height, top + band))))
