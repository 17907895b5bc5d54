"""One image in the network's space: padded (C, H, W) planes in [-1, 1], the bicubic condition, the tile
grids, and the regression model run tile by tile.

The condition lr_up is the bicubic upsample of the input, exactly as in training, reflect-padded to
the model's size multiple. It is made region by region on demand (``ModelSpace.bicubic``): a tile's
condition is computed from the input pixels it needs (``bands.resize_region``, bit-identical to the
whole-image upsample at 2x and 4x), so a large image never holds its full condition unless an SR3
chain needs it at every step (then it is a plane, on disk when large). Conversions: ``to_model`` /
``from_model`` (HWC [0, 1] <-> NCHW [-1, 1]).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.bands import array_reader, resize_region
from sr3_desktop.core.upscale.output_canvas import OutputCanvas, bands, fits_in_memory, scratch_plane
from sr3_desktop.core.upscale.self_ensemble import ensembled
from sr3_desktop.core.upscale.tiling import (
    Emit,
    TileGrid,
    batch_size,
    blend_tiles,
    choose_tile_size,
    min_tile_size,
    pad_plane,
    padded_size,
    plan_tiles,
)

ATTENTION_TILE_TOKENS = 64
"""Automatic tiles keep self-attention to at most 64 x 64 positions (a 64 MiB score matrix per head)."""


def to_model(image: np.ndarray) -> np.ndarray:
    """HWC [0, 1] -> NCHW [-1, 1] float32 (N = 1): one copy, then x * 2 - 1 in place."""
    chw = np.array(np.asarray(image, dtype=np.float32).transpose(2, 0, 1), dtype=np.float32, order="C")
    chw *= 2.0
    chw -= 1.0
    return chw[None]


def from_model(array: np.ndarray) -> np.ndarray:
    """NCHW (N = 1) or CHW [-1, 1] -> HWC [0, 1] float32, clipped: one copy, then (x + 1) / 2 in place."""
    chw = array[0] if array.ndim == 4 else array
    hwc = np.array(np.asarray(chw).transpose(1, 2, 0), dtype=np.float32, order="C")
    hwc += 1.0
    hwc *= 0.5
    return np.clip(hwc, 0.0, 1.0, out=hwc)


def output_cell(card: ModelCard) -> int:
    """The side of the cells a depth-to-space output is written in: the U-Net's ``unshuffle`` (its card's
    architecture), else 1."""
    unshuffle = card.architecture.get("unshuffle", 1)
    return unshuffle if isinstance(unshuffle, int) and not isinstance(unshuffle, bool) and unshuffle > 1 else 1


def attention_downsample(card: ModelCard) -> int:
    """The finest downsampling factor at which the network runs self-attention.

    Attention cost grows with the square of the positions it sees, so it bounds the automatic
    tile size. The card's ``attention_downsample`` says it when present (converted models); else SR3
    U-Nets attend at least in the middle block (factor = size_multiple), and the card's
    ``architecture`` (channel_mults, attention_levels) can name finer levels.
    """
    if card.attention_downsample is not None:
        return card.attention_downsample
    factor = card.size_multiple
    mults, levels = card.architecture.get("channel_mults"), card.architecture.get("attention_levels")
    if isinstance(mults, list) and mults and isinstance(levels, list):
        for level in levels:
            if isinstance(level, int):
                factor = min(factor, 2 ** (level % len(mults)))
    return max(1, factor)


def max_auto_tile(card: ModelCard) -> int:
    """The largest automatic tile side for this model."""
    return ATTENTION_TILE_TOKENS * attention_downsample(card)


def plan_grid(card: ModelCard, padded_height: int, padded_width: int, tile: int | None,
              budget: int) -> tuple[TileGrid, int]:
    """The tile grid and batch size the pipeline uses for ``card`` on a padded image (the estimate's too).

    A card with ``fixed_tile_size`` (self-attention over the whole training image) runs untiled when the
    image fits the budget and the attention bound, else in tiles of exactly that size; no other tile size.
    """
    automatic = choose_tile_size(padded_height, padded_width, card.size_multiple, budget)
    side = tile or min(automatic, max_auto_tile(card))
    fixed = card.fixed_tile_size
    if fixed is not None:
        if tile is not None and tile != fixed:
            raise SR3Error(f"{card.name} attends over its whole {fixed} px training image, so it runs in tiles of "
                           f"exactly {fixed} px or untiled; use --tile {fixed} or leave the tile size automatic")
        whole = max(padded_height, padded_width)
        side = whole if tile is None and automatic >= whole and whole <= max_auto_tile(card) else fixed
    try:
        grid = plan_tiles(padded_height, padded_width, side, card.size_multiple, exact=fixed is not None)
    except ValueError:
        raise SR3Error(f"tile size {side} px is too small for this model; use at least "
                       f"{min_tile_size(card.size_multiple)}") from None
    return grid, batch_size(grid, max(budget, grid.tile_height * grid.tile_width))


def _gather(array: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    """``array`` taken at ``index`` along ``axis``: a view when the index is a plain run."""
    if index.size and int(index[-1]) - int(index[0]) == index.size - 1 and np.all(np.diff(index) == 1):
        return array[(slice(None),) * axis + (slice(int(index[0]), int(index[-1]) + 1),)]
    return np.take(array, index, axis=axis)


def reflect_index(length: int, padded: int) -> np.ndarray:
    """Source index of each of ``padded`` positions of an axis of ``length``, as ``pad_plane`` pads it."""
    return pad_plane(np.arange(length, dtype=np.int64).reshape(1, length), 1, padded)[0]


class _Bicubic:
    """The padded bicubic condition in model space, as a RegionSource; kept whole for a small image."""

    def __init__(self, space: ModelSpace) -> None:
        self.space = space
        self._whole: np.ndarray | None = None

    def region(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        space = self.space
        if self._whole is None and not space.on_disk:
            self._whole = self._make(0, space.padded_height, 0, space.padded_width)
        if self._whole is not None:
            return self._whole[:, top:bottom, left:right]
        return self._make(top, bottom, left, right)

    def _make(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        space = self.space
        rows, cols = space.row_index[top:bottom], space.col_index[left:right]
        first_row, first_col = int(rows.min()), int(cols.min())
        upsampled = resize_region(array_reader(space.lr), space.lr.shape[:2], (space.width, space.height),
                                  (first_row, int(rows.max()) + 1), (first_col, int(cols.max()) + 1))
        model = to_model(upsampled)[0]  # unclipped, exactly as in training
        if (top, bottom, left, right) == (0, space.padded_height, 0, space.padded_width):
            return pad_plane(model, space.padded_height, space.padded_width)  # the same reflection, faster
        return np.ascontiguousarray(_gather(_gather(model, rows - first_row, 1), cols - first_col, 2))


class ModelSpace:
    """An image of ``scale`` x the input in padded model space (C, H, W); on disk when it is large."""

    def __init__(self, lr: np.ndarray, scale: int, multiple: int, tile: int | None, budget: int) -> None:
        self.lr = lr
        self.scale = scale
        self.height, self.width = lr.shape[0] * scale, lr.shape[1] * scale
        self.padded_height = padded_size(self.height, multiple)
        self.padded_width = padded_size(self.width, multiple)
        self.on_disk = not fits_in_memory(self.padded_height, self.padded_width)
        """Planes and the output go to scratch files, and the chain steps band by band."""
        self.row_index = reflect_index(self.height, self.padded_height)
        self.col_index = reflect_index(self.width, self.padded_width)
        self.tile, self.budget = tile, budget
        self.bicubic = _Bicubic(self)
        """The condition: the bicubic upsample, padded; ``bicubic.region(top, bottom, left, right)``."""

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.padded_height, self.padded_width)

    def grid(self, card: ModelCard) -> tuple[TileGrid, int]:
        return plan_grid(card, self.padded_height, self.padded_width, self.tile, self.budget)

    def bands(self) -> Iterator[tuple[int, int]]:
        """(top, bottom) of the padded rows, band by band (one band when the image is in memory)."""
        return bands(self.padded_height, self.padded_width)

    def plane(self) -> np.ndarray:
        """An empty (C, H, W) float32 plane: in memory, or a memmap over a scratch file."""
        return scratch_plane(self.shape, self.on_disk)

    def bicubic_plane(self) -> np.ndarray:
        """The whole padded condition as a plane (for the SR3 chain, which reads it at every step)."""
        if not self.on_disk:
            return self.bicubic.region(0, self.padded_height, 0, self.padded_width)
        plane = self.plane()
        for top, bottom in self.bands():
            plane[:, top:bottom] = self.bicubic.region(top, bottom, 0, self.padded_width)
        return plane

    def canvas(self, dtype: np.dtype | type = np.uint16) -> OutputCanvas:
        """An empty output-size (H, W, 3) image, on disk exactly when the planes are."""
        return OutputCanvas((self.height, self.width, 3), dtype=dtype, on_disk=self.on_disk)

    def to_image(self, plane: np.ndarray, residual: bool, condition: np.ndarray, top: int = 0,
                 bottom: int | None = None) -> np.ndarray:
        """Output rows [top, bottom) (default: all) of a padded diffused plane as an HWC [0, 1] image."""
        bottom = self.height if bottom is None else min(bottom, self.height)
        block = plane[:, top:bottom, : self.width]
        hr = block + condition[:, top:bottom, : self.width] if residual else block
        return from_model(hr)


def run_regression(space: ModelSpace, model: OnnxDenoiser, should_stop: Callable[[], bool] | None,
                   emit: Emit, ensemble: int = 1) -> None:
    """The regression model's HR estimate in padded model space, emitted block by block (tiling's order);
    ``ensemble`` > 1: each tile's estimate is the mean over that many flips and transposes (``self_ensemble``)."""
    grid, batch = space.grid(model.card)
    residual = model.card.target == "residual"

    def estimate(top: int, left: int, block: np.ndarray) -> None:
        if residual:  # the model predicts HR - lr_up
            block = block + space.bicubic.region(top, top + block.shape[1], left, left + block.shape[2])
        emit(top, left, block)

    predict = ensembled(model.predict_image, ensemble)
    blend_tiles(lambda planes: predict(planes[0]), [space.bicubic], grid, batch, should_stop, estimate)


def into_plane(plane: np.ndarray) -> Emit:
    """An Emit that stores each block in ``plane``."""
    def store(top: int, left: int, block: np.ndarray) -> None:
        plane[:, top : top + block.shape[1], left : left + block.shape[2]] = block
    return store


def into_image(canvas: OutputCanvas, model: OnnxDenoiser) -> Emit:
    """An Emit that crops each model-space block to the image and writes it to ``canvas`` (HWC [0, 1])."""
    def store(top: int, left: int, block: np.ndarray) -> None:
        rows, cols = min(block.shape[1], canvas.height - top), min(block.shape[2], canvas.width - left)
        if rows <= 0 or cols <= 0:
            return  # padding only
        image = from_model(block[:, :rows, :cols])
        check_finite(image, model)
        canvas.write(top, image, left)
    return store


def check_finite(image: np.ndarray, model: OnnxDenoiser) -> None:
    if not np.all(np.isfinite(image)):
        raise ModelError(f"{model.card.name} produced invalid values (NaN); the model file may be damaged")
