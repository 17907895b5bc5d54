"""Image-quality metrics shared by the exporter's evaluation and the app (numpy only).

Inputs are (H, W, 3) float arrays in [0, 1]. PSNR and SSIM are measured on the luma Y of
ITU-R BT.601 as in the SR literature (SR3 reports them this way), with ``shave`` border pixels
removed first; consistency is the paper's. grain, spectral gap, GMSD and detail fidelity judge an
upscale the way a person looks at it (noise on smooth areas, the missing or invented fine band,
structure); sharpness alone rewards noise.
"""

from __future__ import annotations

import numpy as np

from sr3_desktop.core.imageio import resample

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


# --- what a person sees: grain, the missing fine band, structure ---------------------------------
FINE_BAND_SIGMA = 1.0
"""The fine band is the image minus its Gaussian blur at this sigma (pixels)."""
LOCAL_ENERGY_SIGMA = 4.0
"""Local fine-band energy: a Gaussian of this sigma over the squared band."""
FLAT_FRACTION = 0.3
"""grain looks at the 30 % of pixels where the HR's local fine-band energy is lowest."""
SPECTRAL_BAND = (0.25, 1.0)
"""spectral_gap averages radial frequencies in this range, as fractions of Nyquist."""
GMSD_C = 170.0
"""Xue et al. 2014's stability constant for images on the 0-255 scale."""


def gaussian_blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float64 plane, reflected borders, truncated at 3 sigma."""
    radius = max(1, int(np.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(np.asarray(plane, dtype=np.float64), radius, mode="reflect")
    return _filter_valid(padded, kernel)


def fine_band(plane: np.ndarray) -> np.ndarray:
    """The image minus its Gaussian blur at sigma = 1: the band a 4x upscale must invent."""
    return plane - gaussian_blur(plane, FINE_BAND_SIGMA)


def _check_pair(output: np.ndarray, hr: np.ndarray, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    y_out, y_ref = _shaved_pair(output, hr, 0)
    if min(y_ref.shape) < minimum:
        raise ValueError(f"this metric needs at least {minimum}x{minimum} pixels, got {y_ref.shape}")
    return y_out, y_ref


def grain(output: np.ndarray, hr: np.ndarray) -> float:
    """Fine-band energy on the HR's flattest 30 % of pixels, output over HR, as an amplitude ratio.

    1 means "as in the photo"; noise and film grain sit far above 1, blur below. The flat pixels are
    where the HR's local fine-band energy (Gaussian sigma 4 of the squared band) is lowest.
    """
    y_out, y_ref = _check_pair(output, hr, 13)
    band_out, band_ref = fine_band(y_out), fine_band(y_ref)
    local = gaussian_blur(band_ref**2, LOCAL_ENERGY_SIGMA)
    flat = local <= np.quantile(local, FLAT_FRACTION)
    ref_energy = float(np.mean(band_ref[flat] ** 2))
    out_energy = float(np.mean(band_out[flat] ** 2))
    if ref_energy == 0.0:
        return 1.0 if out_energy == 0.0 else float("inf")
    return float(np.sqrt(out_energy / ref_energy))


def radial_power(plane: np.ndarray, bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a Hann-windowed plane (mean removed).

    Returns (frequency as a fraction of Nyquist at each bin centre, mean power per bin) over
    SPECTRAL_BAND; bins with no frequency sample get NaN.
    """
    h, w = plane.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    centred = (plane - plane.mean()) * window
    power = np.abs(np.fft.fft2(centred)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.hypot(fy, fx) / 0.5  # 1.0 = Nyquist
    low, high = SPECTRAL_BAND
    edges = np.linspace(low, high, bins + 1)
    index = np.digitize(radius.ravel(), edges) - 1
    inside = (index >= 0) & (index < bins)
    sums = np.bincount(index[inside], weights=power.ravel()[inside], minlength=bins)
    counts = np.bincount(index[inside], minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return 0.5 * (edges[:-1] + edges[1:]), mean


def spectral_gap(output: np.ndarray, hr: np.ndarray) -> float:
    """Mean |log10 radial power of output - that of HR| over 0.25-1 of Nyquist (Hann window).

    0 means the fine band has the photo's energy at every frequency; blur shows as a deficit
    and noise as an excess, and both count. 1.0 is a factor of 10 in power on average.
    """
    y_out, y_ref = _check_pair(output, hr, 16)
    _, p_out = radial_power(y_out)
    _, p_ref = radial_power(y_ref)
    tiny = 1e-20
    valid = np.isfinite(p_out) & np.isfinite(p_ref)
    diff = np.abs(np.log10(p_out[valid] + tiny) - np.log10(p_ref[valid] + tiny))
    return float(diff.mean())


def _prewitt(plane: np.ndarray) -> np.ndarray:
    """Gradient magnitude with 3x3 Prewitt filters (each divided by 3), valid region only."""
    p = plane
    gx = ((p[:-2, 2:] + p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + p[1:-1, :-2] + p[2:, :-2])) / 3.0
    gy = ((p[2:, :-2] + p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + p[:-2, 1:-1] + p[:-2, 2:])) / 3.0
    return np.hypot(gx, gy)


def gmsd(output: np.ndarray, hr: np.ndarray) -> float:
    """Gradient magnitude similarity deviation (Xue et al. 2014); lower is better, 0 is identical.

    As the authors' code: luma on the 0-255 scale, a 2x2 average and 2x downsample, Prewitt
    gradients, GMS = (2 m_out m_ref + c) / (m_out^2 + m_ref^2 + c) with c = 170, GMSD = std(GMS).
    """
    y_out, y_ref = _check_pair(output, hr, 8)

    def prepare(plane: np.ndarray) -> np.ndarray:
        p = plane * 255.0
        p = 0.25 * (p[:-1, :-1] + p[1:, :-1] + p[:-1, 1:] + p[1:, 1:])
        return p[::2, ::2]

    m_out, m_ref = _prewitt(prepare(y_out)), _prewitt(prepare(y_ref))
    gms = (2.0 * m_out * m_ref + GMSD_C) / (m_out**2 + m_ref**2 + GMSD_C)
    return float(np.std(gms))


def _cell_phase_spread(plane: np.ndarray, cell: int) -> float:
    """Spread (std over mean) of the fine band's energy over the cell x cell pixel phases: 0 when every phase
    of the LR pixels' cells carries as much detail as any other."""
    band = fine_band(plane) ** 2
    height, width = (band.shape[0] // cell) * cell, (band.shape[1] // cell) * cell
    phases = band[:height, :width].reshape(height // cell, cell, width // cell, cell).mean(axis=(0, 2))
    mean = float(phases.mean())
    return float(phases.std()) / mean if mean > 0.0 else 0.0


def cell_grid(output: np.ndarray, hr: np.ndarray, cell: int) -> float:
    """How unevenly the output's fine band falls over the phases of the LR pixels' ``cell`` px cells, relative
    to the photo: 1 = as the photo. A U-Net whose output is depth-to-space'd can write its detail in a pattern
    that repeats every cell (steps at the borders, or a texture laid out the same way inside every cell): a
    grid at 100 %, which grain and the spectral gap would count as texture."""
    y_out, y_ref = _check_pair(output, hr, 2 * cell + 1)
    ref = _cell_phase_spread(y_ref, cell)
    return _cell_phase_spread(y_out, cell) / ref if ref > 0.0 else 1.0


def detail_fidelity(output: np.ndarray, hr: np.ndarray) -> float:
    """Pearson correlation of the output's fine band with the HR's: 1 = the photo's own detail.

    Invented texture that looks right but sits in the wrong place scores near 0; a blurred
    output scores positive but low; it is NaN-free (0 for a flat band).
    """
    y_out, y_ref = _check_pair(output, hr, 8)
    a, b = fine_band(y_out).ravel(), fine_band(y_ref).ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / denom) if denom > 0.0 else 0.0


def evaluate_pair(output: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: int) -> dict[str, float]:
    """All metrics for one output; PSNR and SSIM shave ``scale`` border pixels.

    Keys: psnr_y, ssim_y, gmsd, grain, spectral_gap, detail_fidelity, consistency, sharpness,
    colour_shift, grid (``cell_grid`` over ``scale`` px cells). Presets are chosen by the first six, never by
    sharpness (noise raises it too); grid is reported beside them.
    """
    return {
        "psnr_y": psnr_y(output, hr, shave=scale),
        "ssim_y": ssim_y(output, hr, shave=scale),
        "gmsd": gmsd(output, hr),
        "grain": grain(output, hr),
        "spectral_gap": spectral_gap(output, hr),
        "detail_fidelity": detail_fidelity(output, hr),
        "consistency": consistency(output, lr, scale),
        "sharpness": sharpness(output, hr),
        "colour_shift": colour_shift(output, hr),
        "grid": cell_grid(output, hr, scale),
    }
