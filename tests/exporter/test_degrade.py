"""The real-photo degradations of the LR (exporter/training/degrade.py) and the crop stream that mixes them in."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from exporter.training import degrade
from exporter.training.data import CropStream, make_pair, to_model
from sr3_desktop.core.imageio.resample import downscale, upscale

SCALE = 4


def photo(size: int = 64, seed: int = 0) -> np.ndarray:
    """An HR crop of a real photo (scikit-image's coffee), HWC float32 on 8-bit levels."""
    from skimage import data

    rng = np.random.default_rng(seed)
    image = np.asarray(data.coffee())
    top, left = int(rng.integers(image.shape[0] - size)), int(rng.integers(image.shape[1] - size))
    return image[top : top + size, left : left + size].astype(np.float32) / 255.0


def pillow_round_trip(image: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255.0).astype(np.uint8)).save(buffer, format="JPEG", quality=quality,
                                                                   subsampling=subsampling)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255.0


def test_neutral_degradation_is_the_clean_protocol_on_8_bit_levels() -> None:
    hr = photo()
    clean = downscale(hr, SCALE)
    lr = degrade.degrade(hr, SCALE, degrade.Degradation(), np.random.default_rng(0))
    assert lr.shape == clean.shape and lr.dtype == np.float32
    np.testing.assert_array_equal(lr, degrade.quantise(clean))
    assert np.abs(lr - np.clip(clean, 0.0, 1.0)).max() <= 0.5 / 255.0 + 1e-6
    np.testing.assert_array_equal(np.round(lr * 255.0) / 255.0, lr)  # 8-bit levels, as a decoded photo


@pytest.mark.parametrize("quality", [30, 75, 95])
def test_jpeg_is_pillows_own_4_2_0_encode_and_decode_at_that_quality(quality: int) -> None:
    lr = degrade.quantise(downscale(photo(128), SCALE))
    out = degrade.jpeg(lr, quality)
    np.testing.assert_array_equal(out, pillow_round_trip(lr, quality, "4:2:0"))
    assert not np.array_equal(out, pillow_round_trip(lr, quality, "4:4:4"))  # the chroma really is subsampled
    assert not np.array_equal(out, pillow_round_trip(lr, min(quality + 10, 100), "4:2:0"))
    assert np.abs(out - lr).mean() > 1.0 / 255.0  # lossy: it really compressed


def test_lower_jpeg_quality_loses_more() -> None:
    lr = degrade.quantise(downscale(photo(128), SCALE))
    errors = [float(np.abs(degrade.jpeg(lr, q) - lr).mean()) for q in (30, 60, 95)]
    assert errors[0] > errors[1] > errors[2] > 0.0


def test_draw_stays_within_its_ranges_and_uses_every_stage() -> None:
    rng = np.random.default_rng(7)
    draws = [degrade.draw(rng, (30, 95)) for _ in range(3000)]
    blurs = np.array([d.blur_sigma for d in draws])
    noises = np.array([d.noise_sigma for d in draws])
    qualities = np.array([d.jpeg_quality for d in draws])
    assert np.all((blurs == 0.0) | ((blurs >= 0.3) & (blurs <= 1.5)))
    assert np.all((noises == 0.0) | ((noises >= 1.0 / 255.0) & (noises <= 6.0 / 255.0)))
    assert np.all((qualities == 0) | ((qualities >= 30) & (qualities <= 95)))
    assert {d.kernel for d in draws} == set(degrade.RESIZE_KERNELS)
    assert {d.noise_gray for d in draws} == {True, False}
    assert qualities[qualities > 0].min() == 30 and qualities.max() == 95  # both ends, inclusive (~36 draws each)
    # Each stage fires with its own probability: 0.4 blur, 0.4 noise, 0.8 JPEG (4 binomial sd at n = 3000).
    for share, p in (((blurs > 0).mean(), 0.4), ((noises > 0).mean(), 0.4), ((qualities > 0).mean(), 0.8)):
        assert abs(share - p) < 4.0 * np.sqrt(p * (1 - p) / len(draws))


def test_each_stage_changes_the_lr_as_named() -> None:
    hr = photo(128)
    rng = np.random.default_rng(1)
    clean = degrade.degrade(hr, SCALE, degrade.Degradation(), rng)
    blurred = degrade.degrade(hr, SCALE, degrade.Degradation(blur_sigma=1.5), rng)
    assert np.std(np.diff(blurred, axis=1)) < np.std(np.diff(clean, axis=1))  # blur removes fine detail
    for kernel in ("bilinear", "box", "lanczos"):
        other = degrade.degrade(hr, SCALE, degrade.Degradation(kernel=kernel), rng)
        assert other.shape == clean.shape and not np.array_equal(other, clean)
        assert np.abs(other - clean).mean() < 0.03  # a different kernel, not a different picture
    sigma = 4.0 / 255.0
    gray = degrade.degrade(hr, SCALE, degrade.Degradation(noise_sigma=sigma, noise_gray=True), rng) - clean
    colour = degrade.degrade(hr, SCALE, degrade.Degradation(noise_sigma=sigma), rng) - clean
    for noise in (gray, colour):
        assert 0.7 * sigma < noise.std() < 1.3 * sigma
    # Luminance noise is the same on R, G and B up to the 8-bit rounding (away from clipped black and
    # white); colour noise is not.
    inside = np.all((clean > 0.06) & (clean < 0.94), axis=2)  # 3.8 sigma from the ends
    assert inside.sum() > 200
    assert np.abs(gray[..., 0] - gray[..., 1])[inside].max() <= 1.0 / 255.0 + 1e-6
    assert np.abs(colour[..., 0] - colour[..., 1])[inside].mean() > sigma


def test_a_degraded_pair_keeps_the_clean_hr_target_and_conditions_on_the_degraded_lr() -> None:
    crop = np.round(photo(64) * 255.0).astype(np.uint8)
    chain = degrade.Degradation(blur_sigma=1.0, kernel="lanczos", noise_sigma=3 / 255, jpeg_quality=40)
    lr, lr_up, hr = make_pair(crop, SCALE, chain, np.random.default_rng(3))
    np.testing.assert_array_equal(hr, to_model(crop.astype(np.float32) / 255.0))
    lr_01 = (lr.transpose(1, 2, 0) + 1.0) / 2.0
    np.testing.assert_allclose(lr_01, degrade.degrade(crop / np.float32(255), SCALE, chain,
                                                      np.random.default_rng(3)), atol=1e-6)
    np.testing.assert_allclose(lr_up, to_model(upscale(lr_01, SCALE)), atol=1e-5)


def _images() -> list[np.ndarray]:
    from skimage import data

    return [np.asarray(data.astronaut())[::4, ::4].copy(), np.asarray(data.chelsea())[::2, ::2].copy()]


def _crops_of(hr_batch: torch.Tensor) -> list[np.ndarray]:
    """The uint8 HR crops a batch was made of ([-1, 1] CHW back to HWC 8-bit levels: exact)."""
    return [np.round((h.numpy().transpose(1, 2, 0) + 1.0) * 127.5).astype(np.uint8) for h in hr_batch]


def test_crop_stream_without_degradation_is_bit_identical_to_the_clean_pairs() -> None:
    stream = CropStream(_images(), crop=32, scale=SCALE, batch_size=12, seed=5, degradation=0.0)
    lr_up, hr = stream.batch(np.random.default_rng(0))
    for crop, got_lr_up, got_hr in zip(_crops_of(hr), lr_up, hr, strict=True):
        _, want_lr_up, want_hr = make_pair(np.ascontiguousarray(crop), SCALE)
        assert np.array_equal(got_hr.numpy(), want_hr)
        assert np.array_equal(got_lr_up.numpy(), want_lr_up)


def test_crop_stream_degrades_about_the_asked_fraction_of_crops() -> None:
    stream = CropStream(_images(), crop=32, scale=SCALE, batch_size=200, seed=5, degradation=0.5)
    lr_up, hr = stream.batch(np.random.default_rng(1))
    degraded = [not np.array_equal(got.numpy(), make_pair(np.ascontiguousarray(crop), SCALE)[1])
                for crop, got in zip(_crops_of(hr), lr_up, strict=True)]
    assert abs(np.mean(degraded) - 0.5) < 4.0 * np.sqrt(0.25 / 200)
    everything = CropStream(_images(), crop=32, scale=SCALE, batch_size=20, seed=5, degradation=1.0)
    lr_up, hr = everything.batch(np.random.default_rng(2))
    for crop, got in zip(_crops_of(hr), lr_up, strict=True):
        assert not np.array_equal(got.numpy(), make_pair(np.ascontiguousarray(crop), SCALE)[1])


def test_second_order_runs_the_chain_twice_through_an_intermediate_size() -> None:
    """Mutations caught: the second stage skipped (equals the first-order LR), the stages at the wrong sizes
    (shape), or ``first_factor`` not dividing the scale."""
    hr = photo(128)
    first = degrade.Degradation(jpeg_quality=60)
    second = degrade.Degradation(jpeg_quality=50, blur_sigma=0.6)
    one = degrade.degrade(hr, SCALE, first, np.random.default_rng(2))
    two = degrade.degrade(hr, SCALE, degrade.Degradation(jpeg_quality=60, second=second), np.random.default_rng(2))
    assert two.shape == one.shape == (32, 32, 3)
    assert np.abs(two - one).mean() > 1.0 / 255.0  # JPEG of JPEG, blurred in between: not the first order
    # By hand: the first order down 2x with its JPEG, then the second down 2x with its own.
    middle = degrade._stage(hr, 2, first, np.random.default_rng(2))
    assert middle.shape == (64, 64, 3)
    np.testing.assert_array_equal(two, degrade._stage(middle, 2, second, np.random.default_rng(2)))
    assert [degrade.first_factor(s) for s in (2, 3, 4, 8, 16)] == [1, 1, 2, 2, 4]


def test_draw_makes_second_order_chains_at_about_the_asked_rate_and_none_at_zero() -> None:
    """Mutation caught: ``second_order`` ignored (no chain has a second stage), or drawn at 0."""
    rng = np.random.default_rng(3)
    chains = [degrade.draw(rng, (30, 95), second_order=0.5) for _ in range(400)]
    share = sum(c.second is not None for c in chains) / len(chains)
    assert 0.4 < share < 0.6
    rng = np.random.default_rng(3)
    assert all(degrade.draw(rng, (30, 95)).second is None for _ in range(100))
