"""A strength that follows local structure: SR3's texture capped where its anchor is flat.

SR3 adds fine detail over its anchor (the regression estimate, or the bicubic it is conditioned on).
Where the anchor is flat (sky, petals, bokeh), a one-step chain's invented band shows as a mottle. The
cap scales the added detail, pixel by pixel, so that its local fine-band amplitude is at most ``cap``
times the anchor's own, and fades as the square below the knee ``flat`` (the preset's ``flat_amplitude``): a
gain of min(1, cap * sqrt(E_anchor / E_added) * min(1, sqrt(E_anchor) / flat)^2) on luma, applied to RGB.
Textured areas keep all of SR3's detail, flat ones keep their flatness. ``cap`` 0 turns it off.

A one-step chain predicts E[x0 | y_t] (Eq. 6's x0 estimate), which is smoother than a sample of the photo's
texture. ``gain`` > 1 amplifies the added detail up to that factor where the cap leaves room, so the
strength follows local structure both ways: min(gain, the cap's limit) per pixel (1: the detail as sampled).

A U-Net at the low resolution writes its output in cells of ``cell`` x ``cell`` pixels (depth-to-space), and
its detail can step at the cells' borders: a grid of blocks at 100 %. ``cell`` > 1 first smooths the added
detail across those borders ([1, 2, 1] / 4 on the pixel either side, both axes), so the cap and gain judge
and scale texture, not the grid.

Energies are the metrics' fine band (image minus its Gaussian blur at sigma 1), squared and blurred
at ``ENERGY_SIGMA``; a band of rows needs ``HALO`` rows of context either side to match the whole image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sr3_desktop.core import metrics
from sr3_desktop.core.model_files.card import FLAT_AMPLITUDE
from sr3_desktop.core.upscale.output_canvas import OutputCanvas, map_bands

ENERGY_SIGMA = 2.0
"""Reach of the local energy in output pixels (about 2x the 4x scale's LR pixel)."""
HALO = math.ceil(3.0 * metrics.FINE_BAND_SIGMA) + math.ceil(3.0 * ENERGY_SIGMA) + 3
"""Rows either side of a band that the energies read (the two Gaussians' radii, rounded up, and the border
smoothing's one row)."""
# The knee's default (FLAT_AMPLITUDE, 5e-4): without it, a 4x cap over a near-zero anchor adds a mottle of 12x the
# photo's on exactly flat areas (the worst validation crop, whose photo has a fine band of 2e-4); a linear knee
# still left 1.66x at a mean grain of 0.81, the square 1.47x at 0.80 (cap 6). Presets search their own knee.
_EPS = 1e-12
AnchorReader = Callable[[int, int], np.ndarray]
"""read(top, bottom) -> the anchor's rows as HWC float32 in [0, 1]."""


def local_energy(image: np.ndarray) -> np.ndarray:
    """The luma's fine band, squared and blurred at ``ENERGY_SIGMA``: the local fine-band energy (float64)."""
    band = metrics.fine_band(metrics.rgb_to_y(image).astype(np.float64))
    return metrics.gaussian_blur(band**2, ENERGY_SIGMA)


def smooth_cell_borders(added: np.ndarray, cell: int, row0: int = 0) -> np.ndarray:
    """[1, 2, 1] / 4 across the borders of ``cell`` px cells, on the pixel either side of each (columns, then
    rows; HWC); ``row0``: the image row of ``added``'s first row (a band's cells keep the image's phase)."""
    out = added.astype(np.float64)
    for axis, first in ((1, 0), (0, row0)):
        n = out.shape[axis]
        index = np.arange(n) + first
        near = ((index + 1) % cell == 0) | (index % cell == 0)
        near[[0, -1]] = False  # no neighbour on one side (an image's or a band's edge; bands overlap by HALO)
        before = np.take(out, np.r_[0, np.arange(n - 1)], axis=axis)
        after = np.take(out, np.r_[np.arange(1, n), n - 1], axis=axis)
        shape = [1, 1, 1]
        shape[axis] = n
        out = np.where(near.reshape(shape), (before + 2.0 * out + after) / 4.0, out)
    return out


def cap_texture(image: np.ndarray, anchor: np.ndarray, cap: float, gain: float = 1.0, cell: int = 1,
                row0: int = 0, flat: float = FLAT_AMPLITUDE) -> np.ndarray:
    """``anchor + g * (image - anchor)``, g = min(``gain``, the cap's limit) per pixel (module docstring; without
    a cap, ``gain`` everywhere), the added detail first smoothed across ``cell`` px cell borders when
    ``cell`` > 1 (``row0``: see ``smooth_cell_borders``); ``flat``: the cap's knee; HWC [0, 1] arrays."""
    if cap <= 0.0 and gain == 1.0 and cell <= 1:
        return image
    if image.shape != anchor.shape or image.ndim != 3 or min(image.shape[:2]) < 2:
        raise ValueError(f"cap_texture needs two HWC images of one size, got {image.shape} and {anchor.shape}")
    added = image.astype(np.float64) - anchor
    if cell > 1:
        added = smooth_cell_borders(added, cell, row0)
    if cap <= 0.0:
        return np.clip(anchor + gain * added, 0.0, 1.0).astype(np.float32)
    energy_anchor = local_energy(anchor)
    energy_added = local_energy(added)  # luma and the fine band are linear: the difference's own energy
    amplitude_anchor = np.sqrt(energy_anchor)
    allowed = cap * amplitude_anchor * np.minimum(1.0, amplitude_anchor / flat) ** 2
    limited = np.minimum(gain, allowed / np.sqrt(np.maximum(energy_added, _EPS)))
    return np.clip(anchor + limited[..., None] * added, 0.0, 1.0).astype(np.float32)


def cap_texture_canvas(canvas: OutputCanvas, read_anchor: AnchorReader, cap: float, gain: float = 1.0,
                       cell: int = 1, flat: float = FLAT_AMPLITUDE) -> None:
    """``cap_texture`` in place on a canvas, band by band with ``HALO`` rows of context (identical to the
    whole image away from the halo's reflected edge, which is the image's own edge)."""
    if cap <= 0.0 and gain == 1.0 and cell <= 1:
        return
    map_bands(canvas, HALO, lambda lo, hi: cap_texture(canvas.read(lo, hi), read_anchor(lo, hi), cap, gain, cell,
                                                       row0=lo, flat=flat))
