"""Where an image of the output size lives: in memory while it is small, in a scratch file when large.

An output of at most ``IN_MEMORY_PIXELS`` is a float32 array, exactly as the pipeline always made
it. A larger one is written block by block into an ``OutputCanvas`` on disk (uint16, 16 bits per
sample, or float32 for the working images of an SR3 chain) and read back in bands, so memory is
bounded by the band, not the image. Scratch files are created already deleted (``TemporaryFile``)
in ``scratch_dir()``: the operating system frees them when they are closed or the process ends,
also on cancel, Ctrl+C or a crash.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from sr3_desktop.core.imageio import to_uint16
from sr3_desktop.core.model_files.folders import data_dir

IN_MEMORY_PIXELS = 2048 * 2048
"""Outputs up to 4.2 MP are float32 arrays in memory; larger ones go to a scratch file."""
BAND_PIXELS = 1 << 20
"""Pixels per band when a large image is streamed (about 12 MB as float32 RGB)."""
_DISK_DTYPES = (np.dtype(np.uint16), np.dtype(np.float32))


def fits_in_memory(height: int, width: int) -> bool:
    """Whether an image of this size is kept as a plain array (the pipeline's behaviour at normal sizes)."""
    return height * width <= IN_MEMORY_PIXELS


def band_rows(height: int, width: int) -> int:
    """Rows per band: the whole image when it fits in memory, else about ``BAND_PIXELS`` pixels."""
    return height if fits_in_memory(height, width) else max(1, min(height, BAND_PIXELS // max(1, width)))


def bands(height: int, width: int) -> Iterator[tuple[int, int]]:
    """(top, bottom) of each band of rows."""
    step = band_rows(height, width)
    for top in range(0, height, step):
        yield top, min(height, top + step)


def map_bands(canvas: OutputCanvas, halo: int, transform: Callable[[int, int], np.ndarray]) -> None:
    """Each band of ``canvas`` replaced in place by ``transform(lo, hi)[top - lo : bottom - lo]``, where
    ``transform`` reads rows ``lo``-``hi`` (the band with ``halo`` rows of context either side, within the image)
    and returns them transformed. A band is written only once no later band reads it."""
    height, width = canvas.height, canvas.width
    finished: list[tuple[int, np.ndarray]] = []
    for top, bottom in bands(height, width):
        lo, hi = max(0, top - halo), min(height, bottom + halo)
        finished.append((top, transform(lo, hi)[top - lo : bottom - lo]))
        # the next band reads from bottom - halo on
        while finished and finished[0][0] + finished[0][1].shape[0] <= bottom - halo:
            canvas.write(*finished.pop(0))
    for top, rows in finished:
        canvas.write(top, rows)


def resize_bands(source: tuple[int, int], target: tuple[int, int], source_on_disk: bool
                 ) -> Iterator[tuple[int, int]]:
    """(top, bottom) of the target rows, band by band, for a resize from a (height, width) ``source`` to a
    (height, width) ``target``: the whole image when the source is in memory and the target fits, else
    bands that read and write about ``BAND_PIXELS`` pixels each."""
    (source_h, source_w), (target_h, target_w) = source, target
    if not source_on_disk and fits_in_memory(target_h, target_w):
        yield 0, target_h
        return
    step = max(1, min(target_h, BAND_PIXELS // max(1, target_w), BAND_PIXELS * target_h // max(1, source_h * source_w)))
    for top in range(0, target_h, step):
        yield top, min(target_h, top + step)


def scratch_dir() -> Path:
    """The folder for scratch files: ``<data folder>/scratch`` (SR3_DESKTOP_DATA_DIR moves it)."""
    return data_dir() / "scratch"


def scratch_file() -> IO[bytes]:
    """A new, already deleted scratch file (the system temp folder if the data folder is not writable)."""
    folder = scratch_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile(dir=folder, prefix=".sr3scratch-")
    except OSError:
        return tempfile.TemporaryFile(prefix=".sr3scratch-")


def scratch_plane(shape: tuple[int, ...], on_disk: bool) -> np.ndarray:
    """A float32 array of ``shape``: plain memory, or an ``np.memmap`` over a scratch file."""
    if not on_disk:
        return np.empty(shape, dtype=np.float32)
    return np.memmap(scratch_file(), dtype=np.float32, mode="w+", shape=shape)


class OutputCanvas:
    """An (H, W) or (H, W, C) image in [0, 1], written and read in blocks.

    In memory it is float32 and keeps exactly what is written; on disk it is uint16 (rounded to 16
    bits) or float32. ``image`` is the whole image as float32 (for an image in memory: the array itself).
    """

    def __init__(self, shape: tuple[int, ...], *, dtype: np.dtype | type = np.uint16, on_disk: bool | None = None,
                 array: np.ndarray | None = None) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.height, self.width = self.shape[0], self.shape[1]
        self.on_disk = not fits_in_memory(self.height, self.width) if on_disk is None else on_disk
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._array: np.ndarray | None = None
        if not self.on_disk:
            self.dtype = np.dtype(np.float32)
            self._array = array if array is not None else np.zeros(self.shape, dtype=np.float32)
            return
        self.dtype = np.dtype(dtype)
        if self.dtype not in _DISK_DTYPES:
            raise ValueError(f"a canvas on disk holds uint16 or float32, not {self.dtype}")
        self._row_bytes = self.width * self.channels * self.dtype.itemsize
        self._file = scratch_file()
        self._file.truncate(self.height * self._row_bytes)

    @classmethod
    def of(cls, array: np.ndarray) -> OutputCanvas:
        """An image in memory, wrapping ``array`` (float32) without a copy."""
        values = np.asarray(array, dtype=np.float32)
        return cls(values.shape, on_disk=False, array=values)

    @property
    def channels(self) -> int:
        return self.shape[2] if len(self.shape) == 3 else 1

    @property
    def image(self) -> np.ndarray:
        """The whole image, float32 in [0, 1] (in memory: the array itself; on disk: read now)."""
        if self._array is not None:
            return self._array
        return self.read(0, self.height)

    # --- blocks ----------------------------------------------------------------------------------
    def write(self, top: int, block: np.ndarray, left: int = 0) -> None:
        """Store ``block`` (h, w[, C], floats in [0, 1]) with its top-left corner at (top, left)."""
        rows, cols = block.shape[0], block.shape[1]
        if self._array is not None:
            self._array[top : top + rows, left : left + cols] = block
            return
        stored = to_uint16(block) if self.dtype == np.uint16 else np.asarray(block, dtype=np.float32)
        data = np.ascontiguousarray(stored.reshape(rows, cols * self.channels))
        offset = (top * self.width + left) * self.channels * self.dtype.itemsize
        if cols == self.width:
            self._write_at(offset, data.tobytes())
            return
        for row in range(rows):
            self._write_at(offset + row * self._row_bytes, data[row].tobytes())

    def read(self, top: int, bottom: int, left: int = 0, right: int | None = None) -> np.ndarray:
        """Rows [top, bottom) and columns [left, right) as float32 in [0, 1]."""
        right = self.width if right is None else right
        if self._array is not None:
            return self._array[top:bottom, left:right]
        stored = self.read_stored(top, bottom, left, right)
        if self.dtype == np.uint16:
            return stored.astype(np.float32) * np.float32(1.0 / 65535.0)
        return stored

    def read_stored(self, top: int, bottom: int, left: int = 0, right: int | None = None) -> np.ndarray:
        """The block as stored: float32 in memory, uint16 or float32 on disk."""
        right = self.width if right is None else right
        if self._array is not None:
            return self._array[top:bottom, left:right]
        rows = bottom - top
        raw = np.frombuffer(self._read_at(top * self._row_bytes, rows * self._row_bytes), dtype=self.dtype)
        block = raw.reshape((rows, self.width, *self.shape[2:]))[:, left:right]
        return block if (left, right) == (0, self.width) else block.copy()

    def bands(self) -> Iterator[tuple[int, np.ndarray]]:
        """(top, float32 rows) band by band, top to bottom."""
        for top, bottom in bands(self.height, self.width):
            yield top, self.read(top, bottom)

    def close(self) -> None:
        """Free the scratch file now (it is freed anyway when the canvas is garbage collected)."""
        if self._file is not None:
            self._file.close()

    # --- the scratch file --------------------------------------------------------------------------
    def _write_at(self, offset: int, data: bytes) -> None:
        assert self._file is not None
        if hasattr(os, "pwrite"):
            os.pwrite(self._file.fileno(), data, offset)
            return
        with self._lock:
            self._file.seek(offset)
            self._file.write(data)

    def _read_at(self, offset: int, size: int) -> bytes:
        assert self._file is not None
        if hasattr(os, "pread"):
            chunks, done = [], 0
            while done < size:  # pread may return fewer bytes than asked
                chunk = os.pread(self._file.fileno(), size - done, offset + done)
                if not chunk:
                    raise OSError(f"scratch file ended {size - done} bytes early")
                chunks.append(chunk)
                done += len(chunk)
            return b"".join(chunks)
        with self._lock:
            self._file.seek(offset)
            return self._file.read(size)

    def __repr__(self) -> str:
        where = "disk" if self.on_disk else "memory"
        return f"OutputCanvas({self.shape}, {self.dtype}, {where})"
