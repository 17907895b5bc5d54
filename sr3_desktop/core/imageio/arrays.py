"""Small array helpers shared by the loader, the encoder, the pipeline's callers and the app."""

from __future__ import annotations

import numpy as np

from sr3_desktop.core.imageio import resample


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Alpha is upscaled separately with the shared bicubic, then clipped to [0, 1]."""
    return np.clip(resample.upscale(np.asarray(alpha, dtype=np.float32), scale), 0.0, 1.0).astype(np.float32)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 (rounded, clipped)."""
    return np.round(np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint16(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint16 (rounded, clipped)."""
    return np.round(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)


def from_uint8(values: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]."""
    return np.asarray(values, dtype=np.float32) / 255.0
