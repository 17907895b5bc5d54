"""Runs a one-pass upscaler (``core.model_files.onepass_probe``) over an image, tile by tile and seam-free.

The LR image, padded to the card's size multiple and put in its value range, is cut into
overlapping tiles in output space (``tiling.plan_tiles`` on multiples of the scale, so each tile is
a whole block of input pixels); each tile's input pixels go through the network at their own size,
and the outputs are blended by ``tiling.blend_tiles`` with a margin of ``MARGIN_INPUT_PX`` input
pixels: the same blend as the U-Nets', so a network that sees no further than the margin gives the
untiled image exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.model_files.onepass_probe import decode, encode
from sr3_desktop.core.upscale.output_canvas import OutputCanvas
from sr3_desktop.core.upscale.self_ensemble import ensembled
from sr3_desktop.core.upscale.tiling import (
    batch_size,
    blend_tiles,
    choose_tile_size,
    pad_plane,
    padded_size,
    plan_tiles,
)

MARGIN_INPUT_PX = 16
"""Tile margin in input pixels (times the scale at the output). These networks see far (RRDBNet: hundreds of
pixels), so no margin makes tiles exact; on Real-ESRGAN x4plus, 512 px tiles differ from the untiled image
by 0.77 / 0.65 / 0.39 8-bit levels on average with margins of 8 / 12 / 16 (its own tiling pads by 10)."""
TILE_BUDGET_PIXELS = 1024 * 1024
"""Output pixels of an automatic tile: fewer, larger tiles than the U-Nets' (their 16 px overlap costs more
than the memory, about 1 GB for a 1024² tile of RRDBNet)."""


class _InputRegions:
    """The padded LR plane seen from output space: output rows [top, bottom) are input rows [top/s, bottom/s)."""

    def __init__(self, plane: np.ndarray, scale: int) -> None:
        self.plane, self.scale = plane, scale

    def region(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        s = self.scale
        return self.plane[:, top // s : bottom // s, left // s : right // s]


def run_onepass(lr: np.ndarray, model: OnnxDenoiser, tile: int | None, should_stop: Callable[[], bool] | None,
                canvas: OutputCanvas, ensemble: int = 1) -> None:
    """Upscale ``lr`` (HWC [0, 1]) with a one-pass ``model`` into ``canvas`` (its size: scale x the input's);
    ``ensemble`` > 1: each tile is the mean over that many flips and transposes (``self_ensemble``)."""
    card = model.card
    scale, multiple = card.scale, card.size_multiple * card.scale
    height, width = lr.shape[0], lr.shape[1]
    padded = pad_plane(encode(lr, card.value_range)[0], padded_size(height, card.size_multiple),
                       padded_size(width, card.size_multiple))
    out_h, out_w = padded.shape[1] * scale, padded.shape[2] * scale
    side = tile or choose_tile_size(out_h, out_w, multiple, max(model.budget_pixels, TILE_BUDGET_PIXELS))
    try:
        grid = plan_tiles(out_h, out_w, side, multiple, MARGIN_INPUT_PX * scale)
    except ValueError:
        raise SR3Error(f"tile size {side} px is too small for {card.name}: its tiles overlap by "
                       f"{4 * MARGIN_INPUT_PX * scale} px, so use at least {4 * MARGIN_INPUT_PX * scale + multiple}"
                       ) from None

    def store(top: int, left: int, block: np.ndarray) -> None:
        rows, cols = min(block.shape[1], canvas.height - top), min(block.shape[2], canvas.width - left)
        if rows <= 0 or cols <= 0:
            return  # padding only
        if not np.all(np.isfinite(block[:, :rows, :cols])):
            raise ModelError(f"{card.name} produced invalid values (NaN); the model file may be damaged")
        canvas.write(top, decode(block[:, :rows, :cols], card.value_range), left)

    batch = batch_size(grid, max(model.budget_pixels, grid.tile_height * grid.tile_width))
    upscale = ensembled(model.upscale, ensemble)
    blend_tiles(lambda planes: upscale(planes[0]), [_InputRegions(padded, scale)], grid, batch, should_stop, store)
