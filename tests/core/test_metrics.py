"""Metrics pinned against closed forms and scikit-image (a test-only dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sr3_desktop.core import metrics, resample

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


def test_evaluate_pair_collects_everything_with_scale_shaved() -> None:
    hr = RNG.random((48, 48, 3)).astype(np.float32)
    lr = resample.downscale(hr, 4)
    out = np.clip(resample.upscale(lr, 4), 0, 1)
    scores = metrics.evaluate_pair(out, hr, lr, 4)
    assert set(scores) == {"psnr_y", "ssim_y", "consistency", "sharpness", "colour_shift"}
    assert scores["psnr_y"] == metrics.psnr_y(out, hr, shave=4)
    assert scores["ssim_y"] == metrics.ssim_y(out, hr, shave=4)
    assert scores["consistency"] == metrics.consistency(out, lr, 4)
    assert scores["sharpness"] == metrics.sharpness(out, hr)
    assert scores["colour_shift"] == metrics.colour_shift(out, hr)
    assert all(isinstance(value, float) for value in scores.values())
