"""The grain floor (issue 19, grain by construction): the input's noise is estimated blind to structure, flat
areas of the output get grain up to the floor and no more, textured areas get none, a band of rows on disk
gives the whole image's grain, and the chain adds the preset's grain after the cap and before back-projection
(also from the CLI's --grain)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from onnx_fixtures import local_sr3, make_card, regression, save

from sr3_desktop.core import metrics
from sr3_desktop.core.diffusion.schedule import gamma_of_sigma
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.model_files.card import CARD_METADATA_KEY, InferencePreset, ModelCardError, card_from_metadata
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale import output_canvas
from sr3_desktop.core.upscale.grain_floor import (
    QUANTIZATION_NOISE,
    WHITE_NOISE_READING,
    add_grain,
    add_grain_canvas,
    flat_immerkaer,
    noise_amplitude,
    on_8bit_grid,
)
from sr3_desktop.core.upscale.output_canvas import OutputCanvas
from sr3_desktop.core.upscale.pipeline import run
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.sr3_chain import back_project

RNG = np.random.default_rng(23)


def fine_amplitude(image: np.ndarray, rows: slice, cols: slice) -> float:
    """The fine band's amplitude as a grey level (the metrics' luma spans 219 / 255 of it)."""
    band = metrics.fine_band(metrics.rgb_to_y(image).astype(np.float64)) * 255.0 / 219.0
    return float(np.sqrt(np.mean(band[rows, cols] ** 2)))


def test_the_noise_estimate_reads_the_noise_and_not_the_structure() -> None:
    """Mutations caught: a plain Laplacian for Immerkaer's mask (the waves read as noise: it is blind only to
    planes, not to f(x) + g(y)), the flattest share dropped (the diagonal stripes count), its white-noise
    reading or the luma's scale left out (off by 0.6 or 0.86)."""
    y, x = np.mgrid[0:96, 0:96] / 96.0
    clean = (0.5 + 0.2 * np.sin(12.0 * x) + 0.2 * np.cos(9.0 * y))[..., None].repeat(3, axis=2)
    stripes = (np.sin((x + y) * 90.0) > 0)[:, 78:]
    clean[:, 78:] = 0.2 + 0.6 * stripes[..., None]  # hard diagonal stripes on a fifth of it
    for sigma in (0.004, 0.02):
        noisy = clean + RNG.normal(0.0, sigma, clean.shape[:2])[..., None]
        assert noise_amplitude(noisy) == pytest.approx(1.05 * sigma, rel=0.06)  # the stripes shift the cut up
    assert noise_amplitude(clean) < 1e-4  # the smooth waves read as no noise
    assert noise_amplitude(np.zeros((6, 40, 3))) == 0.0


def test_the_white_noise_reading_is_what_the_estimator_reads_on_white_noise() -> None:
    """The stored constant against a fresh measurement (mutation caught: the constant edited, or the estimator's
    flattest share or blur changed without it)."""
    reading = flat_immerkaer(np.random.default_rng(0).standard_normal((512, 512)))
    assert reading == pytest.approx(WHITE_NOISE_READING, abs=1e-4)


def test_an_8bit_file_reads_its_photo_noise_and_not_its_rounding() -> None:
    """8-bit rounding reads as 0.193 of a step of noise on a smooth image; a decoded file has it taken out, a
    16-bit or computed image does not. Mutations caught: the subtraction left out (the clean 8-bit waves read
    0.19 / 255), applied to off-grid input too (the float noise reads low), linear instead of in quadrature
    (the noisy file reads 0.19 / 255 low), the constant's 1 / sqrt(12) or luma weights changed."""
    y, x = np.mgrid[0:128, 0:128] / 128.0
    waves = np.stack([0.5 + 0.2 * np.sin(12.0 * x + c) + 0.2 * np.cos(9.0 * y - c) for c in range(3)], axis=2)
    rounding_steps = QUANTIZATION_NOISE * 255.0
    assert rounding_steps == pytest.approx(0.1930, abs=1e-4)
    rounded = np.round(waves * 255.0) / 255.0
    assert on_8bit_grid(rounded.astype(np.float32)) and not on_8bit_grid(waves)
    assert flat_immerkaer(metrics.rgb_to_y(rounded)) / WHITE_NOISE_READING * 255.0 / 219.0 * 255.0 == \
        pytest.approx(QUANTIZATION_NOISE * 255.0, rel=0.08)  # what rounding alone reads, before it is taken out
    assert noise_amplitude(rounded) < 0.03 / 255.0
    for sigma in (0.5 / 255.0, 1.0 / 255.0):
        noisy = waves + np.random.default_rng(4).normal(0.0, sigma, waves.shape[:2])[..., None]
        assert noise_amplitude(noisy) == pytest.approx(sigma, rel=0.05)  # off the grid: read as it is
        assert noise_amplitude(np.round(noisy * 255.0) / 255.0) == pytest.approx(sigma, rel=0.06)


def test_flat_areas_get_grain_up_to_the_floor_and_textured_ones_none() -> None:
    """Mutations caught: the shortfall's sqrt(floor^2 - E) replaced by the floor (grain on texture too), the
    white-noise fine-band factor left out (the flat band overshoots by 1 / 0.87), grain per channel (chroma
    noise), floor 0 not a no-op."""
    image = np.full((80, 80, 3), 0.5, dtype=np.float32)
    image[:, 40:] += RNG.uniform(-0.2, 0.2, (80, 40, 1)).astype(np.float32)  # texture far above the floor
    floor = 0.01
    grained = add_grain(image, floor, seed=5)
    flat, textured, rows = slice(6, 30), slice(48, 74), slice(6, 74)
    assert fine_amplitude(grained, rows, flat) == pytest.approx(floor, rel=0.08)
    added = grained - image
    assert np.abs(added[rows, textured]).max() < 1e-3 * np.abs(added[rows, flat]).max() + 1e-6
    np.testing.assert_array_equal(added[..., 0], added[..., 2])  # luma grain: the same on R, G and B
    assert add_grain(image, 0.0, seed=5) is image
    assert not np.array_equal(add_grain(image, floor, seed=6), grained)  # the seed draws the grain


def test_an_output_above_the_floor_is_left_as_it_is() -> None:
    """Mutation caught: energies added instead of the floor (max): grain on an output already grainy enough."""
    image = np.clip(0.5 + RNG.normal(0.0, 0.03, (64, 64, 1)), 0, 1).repeat(3, axis=2).astype(np.float32)
    np.testing.assert_allclose(add_grain(image, 0.005, seed=1), image, rtol=0, atol=1e-7)


def test_band_by_band_on_disk_equals_the_whole_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands of 7 rows: grain drawn per band and not per image row, or a halo too short for the local energy,
    changes the result (both mutations fail this)."""
    ramp = np.linspace(0.0, 0.02, 40, dtype=np.float32)[None, :, None]  # floors met partly, column by column
    image = (0.5 + ramp * RNG.standard_normal((70, 40, 1))).repeat(3, axis=2).astype(np.float32)
    expected = add_grain(image, 0.01, seed=9)
    monkeypatch.setattr(output_canvas, "IN_MEMORY_PIXELS", 500)
    monkeypatch.setattr(output_canvas, "BAND_PIXELS", 7 * 40)
    canvas = OutputCanvas(image.shape, dtype=np.float32, on_disk=True)
    canvas.write(0, image)
    add_grain_canvas(canvas, 0.01, seed=9)
    assert canvas.on_disk
    np.testing.assert_allclose(canvas.read(0, 70), expected, rtol=0, atol=1e-6)


def test_the_chain_adds_the_presets_grain_after_the_cap_and_before_back_projection(tmp_path: Path) -> None:
    """A random-conv SR3 over a regression model: the preset's grain is the capped result with the grain of
    grain x the LR's noise amplitude, then back-projected; --grain overrides it and 0 turns it off (mutations:
    grain after back-projection, the floor not scaled by the input's noise, the sample's seed not used, the
    option ignored)."""
    reg = OnnxDenoiser(save(regression(name="reg-fixture", amount=0.4), tmp_path / "reg.onnx"), "cpu")
    sr3 = OnnxDenoiser(save(local_sr3(seed=4, condition="regression", condition_model="reg-fixture",
                                      prediction="x0", target="residual"), tmp_path / "sr3.onnx"), "cpu")
    lr = np.random.default_rng(7).uniform(0, 1, (16, 12, 3)).astype(np.float32)
    lr[:, :6] = 0.4 + np.random.default_rng(8).normal(0.0, 0.01, (16, 6, 1))  # a noisy flat half
    base = InferencePreset(steps=1, noise_levels=(gamma_of_sigma(0.3),), sampler="ddpm", start="regression",  # type: ignore[arg-type]
                           strength=0.05, texture_cap=1.0, back_projection=0, schedule={"type": "explicit"})
    options = RefineOptions(method="sr3", preset="probe", custom_preset=base, seed=3)
    capped = run(lr, options, sr3, reg).image
    grained = run(lr, replace(options, custom_preset=replace(base, grain=2.0, back_projection=1)), sr3, reg).image
    expected = back_project(add_grain(capped, 2.0 * noise_amplitude(lr), seed=3), lr, 4, 1)
    np.testing.assert_allclose(grained, expected, rtol=0, atol=2e-6)
    assert np.abs(grained - back_project(capped, lr, 4, 1)).max() > 1e-3  # the grain did something here
    stronger = run(lr, replace(options, grain=4.0), sr3, reg).image
    np.testing.assert_allclose(stronger, add_grain(capped, 4.0 * noise_amplitude(lr), seed=3), rtol=0, atol=2e-6)
    off = run(lr, replace(options, custom_preset=replace(base, grain=2.0), grain=0.0), sr3, reg).image
    np.testing.assert_allclose(off, capped, rtol=0, atol=0)
    with pytest.raises(SR3Error, match="--grain"):
        run(lr, replace(options, grain=-1.0), sr3, reg)


def test_the_card_keeps_the_grain_and_refuses_a_bad_one() -> None:
    """Mutations caught: the reader dropping ``grain`` (read back as 0), a schema-5 card (no grain) refused or read
    with grain, a negative or NaN grain accepted."""
    card = make_card("sr3")
    fast = replace(card.inference_presets["fast"], grain=1.75)
    data = card.with_updates(inference_presets={**card.inference_presets, "fast": fast}).to_json()
    read = card_from_metadata({CARD_METADATA_KEY: data})
    assert read.inference_presets["fast"].grain == 1.75
    assert "grain floor 1.75x the input's noise" in read.inference_presets["fast"].finish_summary()
    old = json.loads(data)
    old["schema_version"] = 5
    del old["inference_presets"]["fast"]["grain"]
    assert card_from_metadata({CARD_METADATA_KEY: json.dumps(old)}).inference_presets["fast"].grain == 0.0
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ModelCardError, match="grain"):
            InferencePreset(steps=1, noise_levels=(0.9,), grain=bad)
