"""Padding to the network's size multiple, an overlapping tile grid, and blending weights.

At every diffusion step the pipeline runs all tiles through the network and blends their
*outputs* into one full-image output before the sampler step, so seams are never frozen in.
A tile's weight is 0 within ``margin`` px of each of its edges that lies inside the image, and
positive elsewhere. So for a network whose receptive-field radius is <= margin, the blended
output equals the untiled output (up to float error).

Arrays here are (C, H, W) model-space planes; tiles are stacked into (B, C, h, w) batches.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

DEFAULT_BUDGET_PIXELS = 512 * 512
"""Pixels fed to one session run by default (tiles x tile area)."""
MAX_MARGIN = 4
"""Largest automatic margin (px at output resolution) ignored at interior tile edges. It was 16; 4 cuts the
tile overlap from 26-28 % to 6-9 % of the pixels run (issue 11). Seam check: a model whose reach is within
the margin gives tiled == untiled to 1e-5 (tests/core/test_tiling.py), and a 4096² output of the bundled
models shows no seams at 100 %, nor with its contrast stretched 4x (benchmarks/README.md)."""


class TilingCancelled(Exception):
    """Raised between tile batches when the caller asked to stop."""


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def padded_size(size: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= size."""
    return _round_up(max(size, 1), multiple)


def pad_plane(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad the last two axes at the bottom/right to (height, width) by reflection.

    numpy's 'reflect' needs at least two pixels; a 1-pixel axis is padded by repeating it.
    """
    out = array
    for axis, target in ((array.ndim - 2, height), (array.ndim - 1, width)):
        extra = target - out.shape[axis]
        if extra < 0:
            raise ValueError(f"cannot pad axis of {out.shape[axis]} down to {target}")
        if extra == 0:
            continue
        widths = [(0, 0)] * out.ndim
        widths[axis] = (0, extra)
        # numpy reflects repeatedly when the pad exceeds the size; one pixel can only repeat
        out = np.pad(out, widths, mode="reflect") if out.shape[axis] > 1 else np.pad(out, widths, mode="edge")
    return out


def pad_to_multiple(array: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pad (…, H, W) at the bottom/right so H and W are multiples of ``multiple``."""
    h, w = array.shape[-2:]
    return pad_plane(array, padded_size(h, multiple), padded_size(w, multiple))


@dataclass(frozen=True)
class Tile:
    """One tile of the padded image."""

    top: int
    left: int
    height: int
    width: int

    @property
    def rows(self) -> slice:
        return slice(self.top, self.top + self.height)

    @property
    def cols(self) -> slice:
        return slice(self.left, self.left + self.width)


def auto_margin(tile: int) -> int:
    """Margin used when none is given: 1/32 of the tile, between 2 and MAX_MARGIN px."""
    return max(2, min(MAX_MARGIN, tile // 32))


def _axis_positions(length: int, tile_max: int, multiple: int, margin: int,
                    exact: bool = False) -> tuple[int, list[int]]:
    """Tile size and start positions along one axis; every start is a multiple of ``multiple``.
    ``exact``: tiles of tile_max itself (a model's fixed training size), not the smallest that covers."""
    if length <= tile_max:
        return length, [0]
    overlap = _round_up(max(4 * margin, 2 * margin + 1), multiple)  # room for two margins and a ramp
    if tile_max - overlap < multiple:
        raise ValueError(f"tile {tile_max} px is too small for a {margin} px margin")
    count = math.ceil((length - overlap) / (tile_max - overlap))
    size = tile_max
    while not exact:  # the smallest tile (a multiple) that covers the axis with `count` tiles
        size = _round_up(math.ceil((length + (count - 1) * overlap) / count), multiple)
        if size <= tile_max:
            break
        count += 1
    units = (length - size) // multiple
    starts = [multiple * round(k * units / (count - 1)) for k in range(count)]
    return size, starts


def _axis_weights(size: int, start: int, length: int, margin: int, ramp: int) -> np.ndarray:
    """0 within margin of an interior edge, then a linear ramp up to 1; 1 along image borders."""
    distance = np.arange(size, dtype=np.float64)
    weight = np.ones(size, dtype=np.float64)
    edges = []
    if start > 0:
        edges.append(distance)
    if start + size < length:
        edges.append(size - 1 - distance)
    for d in edges:
        weight = np.minimum(weight, np.clip((d - margin + 1) / (ramp + 1), 0.0, 1.0))
    return weight.astype(np.float32)


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles covering a (height, width) image, all of the same size."""

    height: int
    width: int
    tile_height: int
    tile_width: int
    margin: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    @property
    def tiles(self) -> list[Tile]:
        return [Tile(t, c, self.tile_height, self.tile_width) for t in self.row_starts for c in self.col_starts]

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    @property
    def ramp(self) -> int:
        return max(1, self.margin)

    @cached_property
    def _row_weights(self) -> dict[int, np.ndarray]:
        return {t: _axis_weights(self.tile_height, t, self.height, self.margin, self.ramp) for t in self.row_starts}

    @cached_property
    def _col_weights(self) -> dict[int, np.ndarray]:
        return {c: _axis_weights(self.tile_width, c, self.width, self.margin, self.ramp) for c in self.col_starts}

    def weight(self, tile: Tile) -> np.ndarray:
        """Blend weight of one tile, (tile_height, tile_width) float32."""
        return self._row_weights[tile.top][:, None] * self._col_weights[tile.left][None, :]

    @cached_property
    def inverse_weight_sum(self) -> np.ndarray:
        """1 / (sum of all tile weights) per pixel; every pixel has a positive total."""
        total = np.zeros((self.height, self.width), dtype=np.float32)
        for tile in self.tiles:
            total[tile.rows, tile.cols] += self.weight(tile)
        if np.any(total <= 0.0):
            raise ValueError("tile grid leaves pixels without weight")  # a bug in plan_tiles
        return (1.0 / total).astype(np.float32)

    @property
    def pixels_run(self) -> int:
        """Pixels sent through the network per full-image evaluation."""
        return len(self) * self.tile_height * self.tile_width


def plan_tiles(height: int, width: int, tile: int, multiple: int = 1, margin: int | None = None,
               exact: bool = False) -> TileGrid:
    """A grid of tiles at most ``tile`` px a side (``exact``: of ``tile`` itself along any axis longer than
    it); height, width and tile are multiples of ``multiple``."""
    if height % multiple or width % multiple:
        raise ValueError(f"image {width}x{height} is not padded to a multiple of {multiple}")
    tile = max(multiple, tile - tile % multiple)
    margin = auto_margin(tile) if margin is None else margin
    tile_h, rows = _axis_positions(height, tile, multiple, margin, exact)
    tile_w, cols = _axis_positions(width, tile, multiple, margin, exact)
    return TileGrid(height, width, tile_h, tile_w, margin, tuple(rows), tuple(cols))


def choose_tile_size(height: int, width: int, multiple: int, budget_pixels: int = DEFAULT_BUDGET_PIXELS) -> int:
    """The largest square tile (a multiple of ``multiple``) within the memory budget.

    Images within the budget run as one tile.
    """
    if height * width <= budget_pixels:
        return max(height, width)
    side = math.isqrt(budget_pixels)
    return max(4 * multiple, side - side % multiple)


def min_tile_size(multiple: int) -> int:
    """The smallest tile side that ``plan_tiles`` accepts with its automatic margin."""
    tile = multiple
    while True:
        overlap = _round_up(4 * auto_margin(tile), multiple)
        if tile - overlap >= multiple:
            return tile
        tile += multiple


def batch_size(grid: TileGrid, budget_pixels: int = DEFAULT_BUDGET_PIXELS) -> int:
    """How many tiles go into one session run."""
    return max(1, min(len(grid), budget_pixels // (grid.tile_height * grid.tile_width)))


def iter_batches(grid: TileGrid, batch: int) -> Iterator[list[Tile]]:
    tiles = grid.tiles
    for i in range(0, len(tiles), batch):
        yield tiles[i : i + batch]


class RegionSource(Protocol):
    """A (C, H, W) plane that is made on demand, one region at a time (e.g. the bicubic condition)."""

    def region(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """Rows [top, bottom) and columns [left, right): (C, bottom - top, right - left) float32."""
        ...


Plane = np.ndarray | RegionSource
Emit = Callable[[int, int, np.ndarray], None]
"""emit(top, left, block): a finished (C, h, w) block of the blended output (a view: copy it to keep it)."""


def _region(plane: Plane, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    if isinstance(plane, np.ndarray):
        return plane[:, top:bottom, left:right]
    return plane.region(top, bottom, left, right)


def _segments(starts: tuple[int, ...], size: int, length: int) -> tuple[list[int], list[list[int]]]:
    """The axis cut at every tile edge: the segment bounds, and for each segment the tiles (along this
    axis, in order) that cover it; the last of them is the one after which the segment is finished."""
    bounds = sorted({0, length, *starts, *(min(length, s + size) for s in starts)})
    covering = [[k for k, s in enumerate(starts) if s <= a and b <= s + size] for a, b in itertools.pairwise(bounds)]
    return bounds, covering


def _span(bounds: list[int], start: int, size: int) -> range:
    """The segments that a tile starting at ``start`` covers."""
    return range(bounds.index(start), bounds.index(min(bounds[-1], start + size)))


def blend_tiles(model: Callable[[list[np.ndarray]], np.ndarray], planes: Sequence[Plane], grid: TileGrid,
                batch: int, should_stop: Callable[[], bool] | None, emit: Emit) -> None:
    """Run ``model`` over all tiles of ``planes`` and ``emit`` the blended output block by block.

    The image is cut into cells at every tile edge; a cell is emitted (and forgotten) as soon as the
    last tile covering it has run, so only the cells still waiting for a tile are held: a strip of
    the tile overlap across the width, and the current tiles. Each pixel sums its tiles' weighted
    outputs in tile order and is divided by its weight total, exactly as one full-image blend would.
    ``should_stop`` is checked before each batch; if it returns True, TilingCancelled is raised.
    """
    if len(grid) == 1:  # untiled: no blending, no weights
        if should_stop is not None and should_stop():
            raise TilingCancelled
        whole = [_region(p, 0, grid.height, 0, grid.width)[None] for p in planes]
        emit(0, 0, np.asarray(model(whole)[0], dtype=np.float32))
        return
    rows, row_tiles = _segments(grid.row_starts, grid.tile_height, grid.height)
    cols, col_tiles = _segments(grid.col_starts, grid.tile_width, grid.width)
    row_of = {s: k for k, s in enumerate(grid.row_starts)}
    col_of = {s: k for k, s in enumerate(grid.col_starts)}
    cells: dict[tuple[int, int], np.ndarray] = {}
    for tiles in iter_batches(grid, batch):
        if should_stop is not None and should_stop():
            raise TilingCancelled
        stacked = [np.stack([_region(p, t.top, t.top + t.height, t.left, t.left + t.width) for t in tiles])
                   for p in planes]
        result = np.asarray(model(stacked), dtype=np.float32)
        for tile, tile_out in zip(tiles, result, strict=True):
            r, c = row_of[tile.top], col_of[tile.left]
            weighted = tile_out * grid.weight(tile)
            for i in _span(rows, tile.top, tile.height):
                for j in _span(cols, tile.left, tile.width):
                    part = weighted[:, rows[i] - tile.top : rows[i + 1] - tile.top,
                                    cols[j] - tile.left : cols[j + 1] - tile.left]
                    cell = cells.get((i, j))
                    if cell is None:
                        cell = cells[(i, j)] = np.zeros(part.shape, dtype=np.float32)
                    cell += part
                    if row_tiles[i][-1] == r and col_tiles[j][-1] == c:  # no later tile touches this cell
                        if len(row_tiles[i]) > 1 or len(col_tiles[j]) > 1:  # one tile alone has weight 1 here
                            cell *= _inverse_weight(grid, (rows[i], rows[i + 1]), (cols[j], cols[j + 1]),
                                                    row_tiles[i], col_tiles[j])
                        emit(rows[i], cols[j], cells.pop((i, j)))
    assert not cells  # every cell has a last tile


def _inverse_weight(grid: TileGrid, rows: tuple[int, int], cols: tuple[int, int], row_tiles: list[int],
                    col_tiles: list[int]) -> np.ndarray:
    """1 / (the weight total) over one cell: the covering tiles' weights added in tile order, each the
    product of its row and column weights (the very values ``grid.weight`` multiplies out)."""
    total = np.zeros((rows[1] - rows[0], cols[1] - cols[0]), dtype=np.float32)
    for r in row_tiles:
        top = grid.row_starts[r]
        row_weight = grid._row_weights[top][rows[0] - top : rows[1] - top]
        for c in col_tiles:
            left = grid.col_starts[c]
            total += row_weight[:, None] * grid._col_weights[left][None, cols[0] - left : cols[1] - left]
    if np.any(total <= 0.0):
        raise ValueError("tile grid leaves pixels without weight")  # a bug in plan_tiles
    return (1.0 / total).astype(np.float32)


def run_tiled(
    model: Callable[[list[np.ndarray]], np.ndarray],
    planes: Sequence[Plane],
    grid: TileGrid,
    batch: int = 1,
    should_stop: Callable[[], bool] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Run ``model`` over all tiles of the (C, H, W) ``planes`` and blend its outputs into one plane.

    ``model`` gets one stacked (B, C, h, w) array per plane and returns (B, C_out, h, w). The plane is
    ``out`` when given (e.g. a scratch file on disk), else a new array (untiled: the model's own output).
    ``should_stop`` is checked before each batch; if it returns True, TilingCancelled is raised.
    """
    target: list[np.ndarray] = [] if out is None else [out]

    def keep(top: int, left: int, block: np.ndarray) -> None:
        if not target:
            if block.shape[1:] == (grid.height, grid.width):
                target.append(block)  # one tile: the model's fresh output is the plane
                return
            target.append(np.empty((block.shape[0], grid.height, grid.width), dtype=np.float32))
        target[0][:, top : top + block.shape[1], left : left + block.shape[2]] = block

    blend_tiles(model, planes, grid, batch, should_stop, keep)
    return target[0]
