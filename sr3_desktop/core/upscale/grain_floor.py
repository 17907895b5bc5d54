"""A grain floor: the photo's grain where the output is smoother than the input's noise allows.

A short SR3 chain predicts E[x0 | y_t] (Eq. 6's x0 estimate). On flat areas (sky, skin, bokeh) that mean is
smoother than any photo: there, the photo's fine band is the camera's noise, which the downsampler averaged
away and no upscaler can predict. The floor draws that unpredictable part instead of leaving it out: where
the output's local fine-band amplitude (``texture_cap.local_energy``) is below ``floor``, white luma grain
lifts it to ``floor``; where the output has texture of its own, nothing is added. A preset's ``grain`` sets
the floor as a multiple of the input's own noise (``noise_amplitude``), so a clean photo gets a little grain
and a noisy one more. The chain adds it before back-projection, which takes out what the LR would see: the
grain stays in the band the LR cannot tell (consistency holds).

The grain is drawn in blocks of rows from (seed, block), so an image gets the same grain whole or band by band.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from sr3_desktop.core import metrics
from sr3_desktop.core.upscale.output_canvas import OutputCanvas, map_bands
from sr3_desktop.core.upscale.texture_cap import HALO, local_energy

FLAT_SHARE = 0.2
"""``noise_amplitude`` reads the LR's fifth of pixels where the structure filter answers least."""
GRAIN_BLOCK = 64
"""Image rows drawn from one generator (a generator per row cost 17 ms a 512 px image; per block, 2 ms)."""
_GRAIN_STREAM = 0x6772_6169  # "grai": keeps the grain's draws apart from the chain's own noise
_LUMA_GAIN = 219.0 / 255.0
"""What a grey step of 1 moves the metrics' luma (``metrics.rgb_to_y``, BT.601 studio range) by."""
WHITE_NOISE_READING = 0.5946
"""What ``flat_immerkaer`` reads on unit white noise (512 x 512, seed 0; the flattest share of pure noise is its
quieter part). A constant, so that no process pays 50 ms to measure it; tests/core/test_grain_floor.py measures
it again."""
QUANTIZATION_NOISE = float(np.sqrt(65.481**2 + 128.553**2 + 24.966**2) / 219.0 / np.sqrt(12.0) / 255.0)
"""8-bit rounding's own noise as ``noise_amplitude`` reads it (0.193 of a step): each channel's rounding error is
uniform over one step (sigma 1 / sqrt(12)), independent across R, G, B, and carried into luma by BT.601's
weights. An 8-bit file of a photo cleaner than that would otherwise read as noisy (issue 19's worst crop)."""
_IMMERKAER = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def noise_amplitude(lr: np.ndarray) -> float:
    """The LR's noise standard deviation as a grey level on the [0, 1] scale, read on its luma. Immerkaer's
    estimator (1996, "Fast noise variance estimation": sigma = sqrt(pi / 2) / 6 x mean |I * N|, N the difference
    of two Laplacians, blind to any f(x) + g(y)) over the ``FLAT_SHARE`` of pixels where N's locally averaged
    answer is lowest, so that edges and texture do not read as noise; divided by what that choice reads on
    white noise, so that it reads white noise exactly. An input on the 8-bit grid (a decoded PNG or JPEG) has
    ``QUANTIZATION_NOISE`` taken out in quadrature: rounding is not the photo's grain. 0 for an input under 8 x 8
    pixels."""
    y = metrics.rgb_to_y(lr)  # float64
    if min(y.shape) < 8:
        return 0.0
    reading = flat_immerkaer(y) / WHITE_NOISE_READING / _LUMA_GAIN
    if not on_8bit_grid(lr):
        return reading
    return float(np.sqrt(max(reading * reading - QUANTIZATION_NOISE * QUANTIZATION_NOISE, 0.0)))


def on_8bit_grid(image: np.ndarray) -> bool:
    """Whether every value of ``image`` ([0, 1]) is a multiple of 1/255 (to float32's precision): a decoded
    8-bit file, not a 16-bit one or a computed image."""
    for start in range(0, image.shape[0], GRAIN_BLOCK):  # by bands of rows: no full-size float64 copies
        steps = np.asarray(image[start : start + GRAIN_BLOCK], dtype=np.float32) * np.float32(255.0)
        if np.max(np.abs(steps - np.rint(steps)), initial=0.0) >= 1e-3:
            return False
    return True


def flat_immerkaer(y: np.ndarray) -> float:
    """Immerkaer's sigma over the ``FLAT_SHARE`` of ``y`` (a float64 plane) where its locally averaged answer is
    lowest, before the white-noise correction."""
    height, width = y.shape[0] - 2, y.shape[1] - 2
    response = np.abs(sum(_IMMERKAER[i, j] * y[i : i + height, j : j + width] for i in range(3) for j in range(3)))
    local = metrics.gaussian_blur(response, 2.0)
    flat = response[local <= np.quantile(local, FLAT_SHARE)]
    return float(np.sqrt(np.pi / 2.0) / 6.0 * flat.mean())


@cache
def _white_fine_band() -> float:
    """The fine-band amplitude of unit white noise: the root sum of squares of the fine band's kernel."""
    impulse = np.zeros((17, 17))
    impulse[8, 8] = 1.0
    return float(np.sqrt(np.sum(metrics.fine_band(impulse) ** 2)))


def grain_rows(seed: int, row0: int, height: int, width: int) -> np.ndarray:
    """Unit Gaussian grain (float32) for image rows ``row0``..``row0 + height``: blocks of ``GRAIN_BLOCK`` image rows,
    each drawn from (seed, block), so any band of rows gets the whole image's grain."""
    if height <= 0:
        return np.zeros((0, width), dtype=np.float32)
    first, last = row0 // GRAIN_BLOCK, (row0 + height - 1) // GRAIN_BLOCK
    blocks = [np.random.default_rng([seed, _GRAIN_STREAM, block]).standard_normal((GRAIN_BLOCK, width),
                                                                                  dtype=np.float32)
              for block in range(first, last + 1)]
    offset = row0 - first * GRAIN_BLOCK
    return np.concatenate(blocks)[offset : offset + height]


def add_grain(image: np.ndarray, floor: float, seed: int, row0: int = 0) -> np.ndarray:
    """``image`` (HWC, [0, 1]) with white luma grain wherever its local fine-band amplitude is below ``floor`` (as a
    grey level): amplitude sqrt(floor^2 - E) there, so the fine band reaches ``floor`` and no more; ``row0``: the row
    of ``image``'s first row (a band draws the whole image's grain). ``floor`` 0 returns ``image``."""
    if floor <= 0.0:
        return image
    if image.ndim != 3 or min(image.shape[:2]) < 2:
        raise ValueError(f"add_grain needs an HWC image of at least 2 x 2 pixels, got {image.shape}")
    target = floor * _LUMA_GAIN  # local_energy is the luma's
    shortfall = np.sqrt(np.maximum(target * target - local_energy(image), 0.0)) / (_white_fine_band() * _LUMA_GAIN)
    grain = shortfall.astype(np.float32) * grain_rows(seed, row0, image.shape[0], image.shape[1])
    out = np.asarray(image, dtype=np.float32) + grain[..., None]  # equal on R, G, B: luma only
    return np.clip(out, 0.0, 1.0, out=out)


def add_grain_canvas(canvas: OutputCanvas, floor: float, seed: int) -> None:
    """``add_grain`` in place on a canvas, band by band with ``HALO`` rows of context (identical to the whole
    image)."""
    if floor > 0.0:
        map_bands(canvas, HALO, lambda lo, hi: add_grain(canvas.read(lo, hi), floor, seed, row0=lo))
