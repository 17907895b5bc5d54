"""Metrics pinned against closed forms and scikit-image (a test-only dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sr3_desktop.core import metrics
from sr3_desktop.core.imageio import resample

RNG = np.random.default_rng(5)


def pair(height: int = 40, width: int = 36, noise: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    ref = RNG.random((height, width, 3))
    out = np.clip(ref + RNG.normal(0.0, noise, ref.shape), 0.0, 1.0)
    return out.astype(np.float32), ref.astype(np.float32)


def skimage_ssim(out: np.ndarray, ref: np.ndarray, shave: int) -> float:
    y_out, y_ref = metrics.rgb_to_y(out), metrics.rgb_to_y(ref)
    if shave:
        y_out, y_ref = y_out[shave:-shave, shave:-shave], y_ref[shave:-shave, shave:-shave]
    return float(structural_similarity(y_out, y_ref, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=1.0))


def test_rgb_to_y_is_bt601_studio_swing() -> None:
    colours = np.array([[[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=np.float64)
    y = metrics.rgb_to_y(colours) * 255
    assert np.allclose(y, [[16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966]])
    with pytest.raises(ValueError):
        metrics.rgb_to_y(np.zeros((4, 4)))


def test_psnr_closed_form_and_identity() -> None:
    ref = RNG.uniform(0.2, 0.8, (12, 12, 3))
    delta = 0.01
    expected = -20 * math.log10(delta * 219 / 255)  # a grey shift moves Y by delta * 219/255
    assert metrics.psnr_y(ref + delta, ref) == pytest.approx(expected, abs=1e-9)
    assert metrics.psnr_y(ref, ref) == math.inf


@pytest.mark.parametrize("shave", [0, 2, 4])
def test_psnr_matches_skimage(shave: int) -> None:
    out, ref = pair()
    y_out, y_ref = metrics.rgb_to_y(out), metrics.rgb_to_y(ref)
    if shave:
        y_out, y_ref = y_out[shave:-shave, shave:-shave], y_ref[shave:-shave, shave:-shave]
    expected = peak_signal_noise_ratio(y_ref, y_out, data_range=1.0)
    assert metrics.psnr_y(out, ref, shave=shave) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("height", "width", "noise", "shave"), [
    (40, 36, 0.08, 0), (40, 36, 0.08, 4), (64, 23, 0.3, 2), (11, 11, 0.05, 0), (50, 50, 0.01, 3),
])
def test_ssim_matches_skimage(height: int, width: int, noise: float, shave: int) -> None:
    out, ref = pair(height, width, noise)
    assert metrics.ssim_y(out, ref, shave=shave) == pytest.approx(skimage_ssim(out, ref, shave), abs=1e-6)


def test_ssim_identity_and_size_limits() -> None:
    _, ref = pair()
    assert metrics.ssim_y(ref, ref) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim_y(ref[:10], ref[:10])
    with pytest.raises(ValueError, match="shape"):
        metrics.ssim_y(ref[:20], ref)


def test_consistency_is_the_papers_mse_in_units_of_1e5() -> None:
    hr = RNG.uniform(0.2, 0.8, (32, 24, 3)).astype(np.float32)
    lr = resample.downscale(hr, 4)
    assert metrics.consistency(hr, lr, 4) == pytest.approx(0.0, abs=1e-6)
    # bicubic weights sum to one, so a constant shift c survives downsampling: MSE = c² = 1e-4 -> 10.
    assert metrics.consistency(hr + 0.01, lr, 4) == pytest.approx(10.0, rel=1e-3)
    with pytest.raises(ValueError):
        metrics.consistency(hr, lr[:-1], 4)


def test_sharpness_ratio() -> None:
    hr = RNG.uniform(0.25, 0.75, (32, 32, 3))
    assert metrics.sharpness(hr, hr) == pytest.approx(1.0)
    doubled_contrast = 0.5 + 2 * (hr - 0.5)  # every Y gradient doubles; the offset cancels
    assert metrics.sharpness(doubled_contrast, hr) == pytest.approx(2.0)
    blurred = resample.upscale(resample.downscale(hr.astype(np.float32), 4), 4)
    assert metrics.sharpness(blurred, hr) < 0.6
    flat = np.full((8, 8, 3), 0.5)
    assert metrics.sharpness(flat, flat) == 1.0 and metrics.sharpness(hr[:8, :8], flat) == math.inf


def test_colour_shift_on_the_0_255_scale() -> None:
    hr = RNG.uniform(0.2, 0.8, (16, 16, 3))
    shifted = hr + np.array([0.1, 0.0, -0.05])
    assert metrics.colour_shift(shifted, hr) == pytest.approx((0.1 + 0.0 + 0.05) / 3 * 255)
    assert metrics.colour_shift(hr, hr) == 0.0
    # per-pixel noise that averages out is not a colour shift
    swapped = hr[::-1, ::-1]
    assert metrics.colour_shift(swapped, hr) == pytest.approx(0.0, abs=1e-9)


def test_the_grid_metric_sees_4px_cell_patterns_and_not_texture() -> None:
    """A photo-like texture with a grid of 4 px cells added (each cell at its own level, as a depth-to-space
    output can leave), or with the same small pattern inside every cell, scores far above 1; the texture
    itself scores 1, and cells of 3 px far less than the 4 px grid. Mutations caught: the phases taken over
    another cell size (the 4 px grid scores near 1), or the spread not relative to the photo's."""
    hr = np.clip(0.5 + 0.15 * metrics.gaussian_blur(RNG.standard_normal((96, 96)), 1.2), 0, 1)  # 4 px cells: 24
    hr = np.repeat(hr[..., None], 3, axis=2)
    cells = np.kron(RNG.normal(0, 0.02, (24, 24)), np.ones((4, 4)))[..., None]
    assert metrics.cell_grid(np.clip(hr + cells, 0, 1), hr, 4) > 2.0
    dots = np.tile(np.array([[0, 0, 0, 0], [0, 0.03, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]), (24, 24))[..., None]
    assert metrics.cell_grid(np.clip(hr + dots, 0, 1), hr, 4) > 2.0
    assert metrics.cell_grid(hr, hr, 4) == pytest.approx(1.0)
    grid = metrics.cell_grid(np.clip(hr + cells, 0, 1), hr, 4)
    cells_3 = np.kron(RNG.normal(0, 0.02, (32, 32)), np.ones((3, 3)))[..., None]
    assert metrics.cell_grid(np.clip(hr + cells_3, 0, 1), hr, 4) < 0.5 * grid


def test_evaluate_pair_collects_everything_with_scale_shaved() -> None:
    hr = RNG.random((48, 48, 3)).astype(np.float32)
    lr = resample.downscale(hr, 4)
    out = np.clip(resample.upscale(lr, 4), 0, 1)
    scores = metrics.evaluate_pair(out, hr, lr, 4)
    assert set(scores) == {"psnr_y", "ssim_y", "consistency", "sharpness", "colour_shift", "gmsd", "grain",
                           "spectral_gap", "detail_fidelity", "grid"}
    assert scores["grid"] == metrics.cell_grid(out, hr, 4)
    assert scores["psnr_y"] == metrics.psnr_y(out, hr, shave=4)
    assert scores["gmsd"] == metrics.gmsd(out, hr) and scores["grain"] == metrics.grain(out, hr)
    assert scores["spectral_gap"] == metrics.spectral_gap(out, hr)
    assert scores["detail_fidelity"] == metrics.detail_fidelity(out, hr)
    assert scores["ssim_y"] == metrics.ssim_y(out, hr, shave=4)
    assert scores["consistency"] == metrics.consistency(out, lr, 4)
    assert scores["sharpness"] == metrics.sharpness(out, hr)
    assert scores["colour_shift"] == metrics.colour_shift(out, hr)
    assert all(isinstance(value, float) for value in scores.values())


# --- what a person sees (issue 13) ---------------------------------------------------------------
def photo(name: str = "rocket", size: tuple[int, int] = (128, 96)) -> np.ndarray:
    """A scikit-image photo, downsized (rocket: mostly smooth sky), HWC float32 in [0, 1]."""
    from PIL import Image
    from skimage import data

    image = Image.fromarray(np.asarray(getattr(data, name)())).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.float32) / 255.0


def blur_rgb(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([metrics.gaussian_blur(image[..., c], sigma) for c in range(3)], axis=2)


def contrast(image: np.ndarray, k: float) -> np.ndarray:
    """mean + k (image - mean) per channel: every fine band and spectrum scales by exactly k."""
    mean = image.reshape(-1, 3).mean(axis=0)
    return mean + k * (image.astype(np.float64) - mean)


def test_gaussian_blur_is_scipys_mirrored_gaussian() -> None:
    from scipy.ndimage import gaussian_filter

    plane = RNG.random((30, 41))
    for sigma in (1.0, 4.0):
        expected = gaussian_filter(plane, sigma, mode="mirror", truncate=3.0)
        np.testing.assert_allclose(metrics.gaussian_blur(plane, sigma), expected, atol=1e-12)
    np.testing.assert_allclose(metrics.fine_band(np.full((20, 20), 0.4)), 0.0, atol=1e-12)
    band = plane - gaussian_filter(plane, 1.0, mode="mirror", truncate=3.0)
    np.testing.assert_allclose(metrics.fine_band(plane), band, atol=1e-12)


def test_grain_is_the_issues_definition() -> None:
    """Written out with scipy: fine band = Y - blur(Y, 1); flat = the 30 % lowest blur(band_HR^2, 4)."""
    from scipy.ndimage import gaussian_filter

    hr = photo("chelsea")
    out = np.clip(blur_rgb(hr, 0.7) + np.random.default_rng(2).normal(0.0, 0.02, hr.shape), 0.0, 1.0)

    def band(image: np.ndarray) -> np.ndarray:
        y = metrics.rgb_to_y(image)
        return y - gaussian_filter(y, 1.0, mode="mirror", truncate=3.0)

    local = gaussian_filter(band(hr) ** 2, 4.0, mode="mirror", truncate=3.0)
    flat = local <= np.quantile(local, 0.3)
    assert flat.mean() == pytest.approx(0.3, abs=0.01)
    expected = np.sqrt(np.mean(band(out)[flat] ** 2) / np.mean(band(hr)[flat] ** 2))
    assert metrics.grain(out, hr) == pytest.approx(expected, rel=1e-9)


def test_grain_is_one_for_the_photo_above_for_noise_below_for_blur() -> None:
    hr = photo()
    assert metrics.grain(hr, hr) == 1.0
    noisy = np.clip(hr + np.random.default_rng(0).normal(0.0, 0.01, hr.shape), 0.0, 1.0)
    assert metrics.grain(noisy, hr) > 3.0  # faint noise on the sky: far above the photo's own fine band
    assert metrics.grain(blur_rgb(hr, 1.0), hr) < 0.6
    # An amplitude ratio: halving the contrast halves every fine band (the flat pixels are the HR's).
    assert metrics.grain(contrast(hr, 0.5), hr) == pytest.approx(0.5, rel=1e-9)
    flat = np.full((16, 16, 3), 0.5)
    assert metrics.grain(flat, flat) == 1.0 and metrics.grain(flat + RNG.normal(0, 0.01, flat.shape), flat) > 1e6


def test_grain_looks_only_at_the_flattest_30_percent() -> None:
    """Noise on the textured part of the HR does not count as grain; on the flat part it does."""
    hr = np.full((64, 64, 3), 0.5)
    hr[:, 32:] += RNG.normal(0.0, 0.1, (64, 32, 3))  # right half textured, left half flat
    noise = RNG.normal(0.0, 0.05, hr.shape)
    on_texture, on_flat = hr.copy(), hr.copy()
    on_texture[:, 40:] += noise[:, 40:]
    on_flat[:, :24] += noise[:, :24]
    assert metrics.grain(on_texture, hr) == 1.0
    assert metrics.grain(on_flat, hr) > 1e6  # the HR's flat pixels have no fine band (but rounding)


def test_radial_power_puts_a_sinusoid_at_its_frequency() -> None:
    width = 64
    x = np.arange(width)
    plane = np.tile(np.cos(2 * np.pi * 0.25 * x), (width, 1))  # 0.25 cycles / pixel = 0.5 of Nyquist
    freqs, power = metrics.radial_power(plane)
    assert freqs[0] > 0.25 and freqs[-1] < 1.0  # bin centres inside the 0.25-1 band
    assert abs(freqs[int(np.nanargmax(power))] - 0.5) <= (freqs[1] - freqs[0])


def test_spectral_gap_is_zero_for_the_photo_and_counts_deficits_in_log10_power() -> None:
    hr = photo("astronaut")
    assert metrics.spectral_gap(hr, hr) == 0.0
    # Power scales with k^2 at every frequency, so the gap is |log10 k^2| exactly.
    assert metrics.spectral_gap(contrast(hr, 0.5), hr) == pytest.approx(2 * np.log10(2.0), rel=1e-9)
    assert metrics.spectral_gap(contrast(hr, 2.0), hr) == pytest.approx(2 * np.log10(2.0), rel=1e-9)
    bicubic = np.clip(resample.upscale(resample.downscale(hr, 4), 4), 0.0, 1.0)
    close = blur_rgb(hr, 0.4)
    assert metrics.spectral_gap(bicubic, hr) > 1.0 > 0.2 > metrics.spectral_gap(close, hr) > 0.0


def gmsd_reference(out: np.ndarray, ref: np.ndarray) -> float:
    """Xue et al. 2014, written out with loops: luma x 255, 2x2 mean then 2x decimation, 3x3 Prewitt
    (/3) over the valid region, GMS with T = 170, and the standard deviation of the GMS map."""
    def prepare(image: np.ndarray) -> np.ndarray:  # even sides: the authors' conv2 'same' + 1:2:end
        y = metrics.rgb_to_y(image) * 255.0
        small = np.zeros((y.shape[0] // 2, y.shape[1] // 2))
        for i in range(small.shape[0]):
            for j in range(small.shape[1]):
                small[i, j] = y[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].sum() / 4
        return small

    def magnitude(p: np.ndarray) -> np.ndarray:
        m = np.zeros((p.shape[0] - 2, p.shape[1] - 2))
        for i in range(1, p.shape[0] - 1):
            for j in range(1, p.shape[1] - 1):
                gx = sum(p[i + di, j + 1] - p[i + di, j - 1] for di in (-1, 0, 1)) / 3.0
                gy = sum(p[i + 1, j + dj] - p[i - 1, j + dj] for dj in (-1, 0, 1)) / 3.0
                m[i - 1, j - 1] = math.hypot(gx, gy)
        return m

    m_out, m_ref = magnitude(prepare(out)), magnitude(prepare(ref))
    gms = [(2 * a * b + 170.0) / (a * a + b * b + 170.0) for a, b in zip(m_out.ravel(), m_ref.ravel(), strict=True)]
    mean = sum(gms) / len(gms)
    return math.sqrt(sum((g - mean) ** 2 for g in gms) / len(gms))


def test_gmsd_matches_the_papers_definition() -> None:
    hr = photo("coffee", (48, 40))
    bicubic = np.clip(resample.upscale(resample.downscale(hr, 4), 4), 0.0, 1.0)
    noisy = np.clip(hr + RNG.normal(0.0, 0.05, hr.shape), 0.0, 1.0)
    for out in (bicubic, noisy):
        assert metrics.gmsd(out, hr) == pytest.approx(gmsd_reference(out, hr), rel=1e-9, abs=1e-12)
    assert metrics.gmsd(hr, hr) == 0.0
    assert metrics.gmsd(bicubic, hr) > 0.05
    # Gradients, not intensities: a uniform brightness offset leaves GMSD at 0.
    assert metrics.gmsd(np.clip(hr * 0.8 + 0.1, 0, 1) + 0.05, np.clip(hr * 0.8 + 0.1, 0, 1)) == pytest.approx(
        0.0, abs=1e-12)


def test_detail_fidelity_is_one_for_the_photo_and_near_zero_for_unrelated_noise() -> None:
    hr = photo("astronaut")
    assert metrics.detail_fidelity(hr, hr) == pytest.approx(1.0, abs=1e-12)
    assert metrics.detail_fidelity(contrast(hr, 0.3), hr) == pytest.approx(1.0, abs=1e-12)  # a correlation
    assert metrics.detail_fidelity(contrast(hr, -1.0), hr) == pytest.approx(-1.0, abs=1e-12)
    noise = np.random.default_rng(1).random(hr.shape)
    pixels = hr.shape[0] * hr.shape[1]
    assert abs(metrics.detail_fidelity(noise, hr)) < 4.0 / math.sqrt(pixels)
    blurred = blur_rgb(hr, 1.0)
    assert 0.0 < metrics.detail_fidelity(blurred, hr) < 0.9  # right place, too little of it
    flat = np.full((16, 16, 3), 0.5)
    assert metrics.detail_fidelity(flat, hr[:16, :16]) == 0.0
