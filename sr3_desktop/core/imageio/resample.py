"""Bicubic resampling shared by training data, inference conditioning, back-projection and metrics.

One implementation on both sides keeps the condition the app feeds the network identical to
the one it was trained on. Pillow's bicubic (a = -0.5) antialiases when it downsamples, as the
paper's LR images are made.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_bicubic(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (H, W, C) or (H, W) float array to (height, width), channel by channel, float32."""
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        return _resize_plane(array, width, height)
    planes = [_resize_plane(array[:, :, c], width, height) for c in range(array.shape[2])]
    return np.stack(planes, axis=2)


def _resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    if plane.shape == (height, width):
        return plane.astype(np.float32, copy=True)
    resized = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    return np.asarray(resized, dtype=np.float32)


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upsample by an integer factor."""
    h, w = image.shape[:2]
    return resize_bicubic(image, w * scale, h * scale)


def downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Antialiased bicubic downsample by an integer factor (sides must divide)."""
    h, w = image.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"image {w}x{h} is not divisible by scale {scale}")
    return resize_bicubic(image, w // scale, h // scale)
