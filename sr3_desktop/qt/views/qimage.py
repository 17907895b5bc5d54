"""numpy -> QImage, done in the view and only for what is shown."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

# A perceptual dark-to-bright ramp (close to "magma") for the uncertainty image.
_RAMP = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39],
     [252, 255, 164]],
    dtype=np.float32,
)


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """HWC float [0, 1] (or uint8) RGB -> an RGB888 QImage that owns its pixels."""
    array = np.asarray(rgb)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.dtype != np.uint8:
        array = (np.clip(array[:, :, :3], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    array = np.ascontiguousarray(array[:, :, :3])
    height, width = array.shape[:2]
    image = QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return image.copy()  # detach from the numpy buffer


def heatmap_rgb(values: np.ndarray) -> np.ndarray:
    """An HW array (e.g. per-pixel std over K samples) as uint8 RGB on a colour ramp, normalised to its max."""
    plane = np.asarray(values, dtype=np.float32)
    top = float(np.max(plane)) if plane.size else 0.0
    unit = plane / top if top > 0 else np.zeros_like(plane)
    position = unit * (len(_RAMP) - 1)
    low = np.clip(np.floor(position).astype(np.int64), 0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    colours = _RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac
    return colours.astype(np.uint8)


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """A QImage (e.g. from the clipboard) -> HWC uint8 RGB."""
    converted = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height = converted.width(), converted.height()
    buffer = np.frombuffer(converted.constBits(), dtype=np.uint8, count=converted.sizeInBytes())
    rows = buffer.reshape(height, converted.bytesPerLine())
    return rows[:, : 3 * width].reshape(height, width, 3).copy()
