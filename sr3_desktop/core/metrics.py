"""Image-quality metrics shared by the exporter's evaluation and the app (numpy only).

Inputs are (H, W, 3) float arrays in [0, 1]. PSNR and SSIM are measured on the luma Y of
ITU-R BT.601 as in the SR literature (SR3 reports them this way), with ``shave`` border pixels
removed first. The other three numbers are the paper's consistency and two sanity checks the
schedule search uses.
"""

from __future__ import annotations

import numpy as np

from sr3_desktop.core import resample

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
CONSISTENCY_UNIT = 1e-5
"""The paper's Table 2 reports consistency MSE in units of 1e-5."""


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma in [16/255, 235/255]: Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 (float64)."""
    rgb = np.asarray(image, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {rgb.shape}")
    return (16.0 + 65.481 * rgb[:, :, 0] + 128.553 * rgb[:, :, 1] + 24.966 * rgb[:, :, 2]) / 255.0


def _shaved_pair(out: np.ndarray, ref: np.ndarray, shave: int) -> tuple[np.ndarray, np.ndarray]:
    if np.shape(out) != np.shape(ref):
        raise ValueError(f"images differ in shape: {np.shape(out)} vs {np.shape(ref)}")
    if shave < 0:
        raise ValueError("shave must be >= 0")
    y_out, y_ref = rgb_to_y(out), rgb_to_y(ref)
    if shave:
        y_out, y_ref = y_out[shave:-shave, shave:-shave], y_ref[shave:-shave, shave:-shave]
    if y_out.size == 0:
        raise ValueError(f"nothing left after shaving {shave} pixels from {np.shape(out)[:2]}")
    return y_out, y_ref


def psnr_y(out: np.ndarray, ref: np.ndarray, shave: int = 0) -> float:
    """PSNR in dB on Y with peak 1 (the same as 255 on the 0-255 scale); inf for identical images."""
    y_out, y_ref = _shaved_pair(out, ref, shave)
    mse = float(np.mean((y_out - y_ref) ** 2))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(1.0 / mse))


def _gaussian_kernel() -> np.ndarray:
    radius = SSIM_WINDOW // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return kernel / kernel.sum()


def _filter_valid(plane: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable correlation keeping only windows fully inside the image."""
    rows = np.lib.stride_tricks.sliding_window_view(plane, kernel.size, axis=0) @ kernel
    return np.lib.stride_tricks.sliding_window_view(rows, kernel.size, axis=1) @ kernel


def ssim_y(out: np.ndarray, ref: np.ndarray, shave: int = 0) -> float:
    """Mean SSIM (Wang et al. 2004) on Y with an 11-tap Gaussian window, sigma 1.5, data range 1.

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``: skimage averages only windows inside the image.
    """
    y_out, y_ref = _shaved_pair(out, ref, shave)
    if min(y_out.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {y_out.shape}")
    kernel = _gaussian_kernel()
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # (K L)^2 with L = 1
    mu_x, mu_y = _filter_valid(y_out, kernel), _filter_valid(y_ref, kernel)
    var_x = _filter_valid(y_out * y_out, kernel) - mu_x**2
    var_y = _filter_valid(y_ref * y_ref, kernel) - mu_y**2
    cov = _filter_valid(y_out * y_ref, kernel) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def consistency(output: np.ndarray, lr: np.ndarray, scale: int) -> float:
    """The paper's consistency: MSE(bicubic-downsample(output), LR) on [0, 1], in units of 1e-5."""
    down = resample.downscale(np.asarray(output, dtype=np.float32), scale).astype(np.float64)
    low = np.asarray(lr, dtype=np.float64)
    if down.shape != low.shape:
        raise ValueError(f"downsampled output {down.shape} does not match LR {low.shape}")
    return float(np.mean((down - low) ** 2) / CONSISTENCY_UNIT)


def _sobel_magnitude(plane: np.ndarray) -> float:
    """Mean Sobel gradient magnitude over the interior (no padding)."""
    if min(plane.shape) < 3:
        raise ValueError(f"sharpness needs at least 3x3 pixels, got {plane.shape}")
    p = plane
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return float(np.mean(np.hypot(gx, gy)))


def sharpness(output: np.ndarray, hr: np.ndarray) -> float:
    """Mean Sobel magnitude of the output's Y divided by that of HR's Y (1 = as sharp as HR).

    Below 1 is blurrier than HR (regression, bicubic); above 1 is over-sharpened or noisy.
    A flat HR gives 1.0 for a flat output and inf otherwise.
    """
    num, den = _sobel_magnitude(rgb_to_y(output)), _sobel_magnitude(rgb_to_y(hr))
    if den == 0.0:
        return 1.0 if num == 0.0 else float("inf")
    return num / den


def colour_shift(output: np.ndarray, hr: np.ndarray) -> float:
    """Mean over R, G, B of |mean(output_c) - mean(hr_c)|, on the 0-255 scale.

    It catches the global colour drift short diffusion runs show at high noise; a per-pixel
    error that averages out does not count.
    """
    out_means = np.asarray(output, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    hr_means = np.asarray(hr, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return float(np.mean(np.abs(out_means - hr_means)) * 255.0)


def evaluate_pair(output: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: int) -> dict[str, float]:
    """All metrics for one output; PSNR and SSIM shave ``scale`` border pixels.

    Keys: psnr_y, ssim_y, consistency, sharpness, colour_shift.
    """
    return {
        "psnr_y": psnr_y(output, hr, shave=scale),
        "ssim_y": ssim_y(output, hr, shave=scale),
        "consistency": consistency(output, lr, scale),
        "sharpness": sharpness(output, hr),
        "colour_shift": colour_shift(output, hr),
    }
