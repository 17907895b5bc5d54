"""Real-photo degradations of the LR input: a light version of Real-ESRGAN's pipeline (Wang et al. 2021).

People drop JPEGs from phones and the web into an upscaler, not clean bicubic downsamples. A
degraded training pair keeps the clean HR as its target and gives the network an LR made by a
random chain of: Gaussian blur of the HR, a random resize kernel for the 4x downsample, mild
Gaussian noise, and JPEG at a random quality. A share of the chains are second order, as in
Real-ESRGAN (Sec. 3.2): the chain runs twice, to an intermediate size and then to the LR, so that
the LR carries blurred JPEG artefacts and noise of noise, as photos passed around the web do.
Arrays are HWC float32 in [0, 1].
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sr3_desktop.core.imageio.resample import downscale
from sr3_desktop.core.metrics import gaussian_blur

RESIZE_KERNELS = ("bicubic", "bilinear", "box", "lanczos")
_PIL_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Degradation:
    """One random draw of the chain; every field at its neutral value is the clean bicubic protocol."""

    blur_sigma: float = 0.0
    """Gaussian blur of the HR before the downsample, in HR pixels (0: none)."""
    kernel: str = "bicubic"
    """Downsampling kernel: the app's antialiased bicubic, or PIL's bilinear / box / lanczos."""
    noise_sigma: float = 0.0
    """Gaussian noise std added to the LR, on the [0, 1] scale (0: none)."""
    noise_gray: bool = False
    """The same noise on all three channels (luminance noise) instead of per channel."""
    jpeg_quality: int = 0
    """JPEG quality of the LR, with the common 4:2:0 chroma subsampling (0: not compressed)."""
    second: Degradation | None = None
    """Second order (Real-ESRGAN): this chain runs to an intermediate size, then ``second`` to the LR."""


def draw(rng: np.random.Generator, jpeg_range: tuple[int, int], second_order: float = 0.0) -> Degradation:
    """A random degradation: each stage is applied with its own probability (JPEG most often); with
    probability ``second_order`` a second, milder chain follows the first (Real-ESRGAN's order 2)."""
    blur = float(rng.uniform(0.3, 1.5)) if rng.random() < 0.4 else 0.0
    kernel = str(rng.choice(RESIZE_KERNELS))
    noise = float(rng.uniform(1.0, 6.0) / 255.0) if rng.random() < 0.4 else 0.0
    low, high = jpeg_range
    quality = int(rng.integers(low, high + 1)) if rng.random() < 0.8 else 0
    second = None
    if second_order > 0.0 and rng.random() < second_order:
        second = Degradation(
            blur_sigma=float(rng.uniform(0.2, 0.8)) if rng.random() < 0.5 else 0.0,
            kernel=str(rng.choice(RESIZE_KERNELS)),
            noise_sigma=float(rng.uniform(0.5, 3.0) / 255.0) if rng.random() < 0.3 else 0.0,
            noise_gray=bool(rng.random() < 0.5),
            jpeg_quality=int(rng.integers(max(low, 40), high + 1)) if rng.random() < 0.8 else 0,
        )
    return Degradation(blur, kernel, noise, bool(rng.random() < 0.5), quality, second)


def blur_hr(image: np.ndarray, sigma: float) -> np.ndarray:
    """The metrics' separable Gaussian blur (reflected borders, 3 sigma), channel by channel."""
    planes = [gaussian_blur(image[..., c], sigma) for c in range(image.shape[2])]
    return np.stack(planes, axis=2).astype(np.float32)


def quantise(image: np.ndarray) -> np.ndarray:
    """Round to 8-bit levels, as a decoded photo is."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode with Pillow's libjpeg at ``quality`` (4:2:0, as cameras and browsers save)."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)).save(
        buffer, format="JPEG", quality=quality, subsampling="4:2:0"
    )
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255.0


def first_factor(scale: int) -> int:
    """The downsampling factor of a second-order chain's first stage: the largest d with d * d <= scale
    that divides it (2 at 4x and 8x, 1 at 2x and 3x), so that both stages land on whole pixels."""
    return max(d for d in range(1, scale + 1) if scale % d == 0 and d * d <= scale)


def degrade(hr: np.ndarray, scale: int, degradation: Degradation, rng: np.random.Generator) -> np.ndarray:
    """The LR (HWC [0, 1], 8-bit levels) that ``degradation`` makes of the HR crop ``hr``."""
    if degradation.second is None:
        return _stage(hr, scale, degradation, rng)
    first = first_factor(scale)
    return _stage(_stage(hr, first, degradation, rng), scale // first, degradation.second, rng)


def _stage(hr: np.ndarray, scale: int, degradation: Degradation, rng: np.random.Generator) -> np.ndarray:
    """One order of the chain: blur, downsample by ``scale``, noise, 8-bit levels, JPEG."""
    image = blur_hr(hr, degradation.blur_sigma) if degradation.blur_sigma > 0 else hr
    if scale == 1:
        lr = image
    elif degradation.kernel == "bicubic":
        lr = downscale(image, scale)
    else:
        h, w = image.shape[0] // scale, image.shape[1] // scale
        pil = Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))
        lr = np.asarray(pil.resize((w, h), _PIL_FILTERS[degradation.kernel]), dtype=np.float32) / 255.0
    if degradation.noise_sigma > 0:
        shape = (*lr.shape[:2], 1) if degradation.noise_gray else lr.shape
        lr = lr + rng.normal(0.0, degradation.noise_sigma, size=shape).astype(np.float32)
    lr = quantise(lr)
    if degradation.jpeg_quality > 0:
        lr = jpeg(lr, degradation.jpeg_quality)
    return lr
