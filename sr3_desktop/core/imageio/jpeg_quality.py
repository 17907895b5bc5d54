"""The quality a JPEG file was saved at, read back from its luminance quantization table.

Nearly every encoder (libjpeg and its descendants: Pillow, browsers, most cameras' software) scales the
example table of the JPEG standard (ITU-T T.81, Annex K, Table K.1) by the IJG rule; the quality whose
scaled table is nearest the file's is the quality it was saved at. A file with its own tables gets the
nearest IJG quality, which is what matters here: how coarsely its fine band was quantised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np
from PIL import Image

STANDARD_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
"""T.81 Table K.1, in natural (row-major) order, as Pillow reports tables."""

JPEG_FORMATS = ("JPEG", "MPO")


@cache
def _ijg_tables() -> np.ndarray:
    """(100, 64): the luminance table libjpeg writes at quality 1 to 100 (baseline: values clipped to 1..255)."""
    quality = np.arange(1, 101, dtype=np.int64)[:, None]
    scale = np.where(quality < 50, 5000 // quality, 200 - 2 * quality)
    table = (np.asarray(STANDARD_LUMINANCE, dtype=np.int64)[None, :] * scale + 50) // 100
    return np.clip(table, 1, 255)


def estimate_quality(tables: Mapping[int, Sequence[int]]) -> int | None:
    """The IJG quality (1 to 100) whose luminance table is nearest table 0 of ``tables``; None without one."""
    luminance = tables.get(0)
    if luminance is None or len(luminance) != 64:
        return None
    distance = np.abs(_ijg_tables() - np.asarray(luminance, dtype=np.int64)[None, :]).sum(axis=1)
    return int(np.argmin(distance)) + 1


def file_quality(im: Image.Image) -> int | None:
    """The quality an opened JPEG (or MPO) file was saved at; None for any other format."""
    if im.format not in JPEG_FORMATS:
        return None
    tables = getattr(im, "quantization", None)
    return estimate_quality(tables) if isinstance(tables, Mapping) else None
