"""The texture cap (a strength that follows local structure, issue 19): flat areas stay flat, textured
areas keep SR3's detail, a band of rows on disk gives the whole image's answer, and the chain applies
the preset's cap before back-projection against the condition it was fed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from onnx_fixtures import local_sr3, make_card, regression, save

from sr3_desktop.core import metrics
from sr3_desktop.core.diffusion.schedule import gamma_of_sigma
from sr3_desktop.core.model_files.card import (
    CARD_METADATA_KEY,
    FLAT_AMPLITUDE,
    InferencePreset,
    ModelCardError,
    card_from_metadata,
)
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale import output_canvas
from sr3_desktop.core.upscale.output_canvas import OutputCanvas
from sr3_desktop.core.upscale.pipeline import run
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.sr3_chain import back_project
from sr3_desktop.core.upscale.texture_cap import (
    cap_texture,
    cap_texture_canvas,
    smooth_cell_borders,
)

RNG = np.random.default_rng(19)


def half_textured(height: int = 64, width: int = 64) -> np.ndarray:
    """Left half flat grey, right half a strong random texture (the anchor)."""
    anchor = np.full((height, width, 3), 0.5, dtype=np.float32)
    anchor[:, width // 2 :] += RNG.uniform(-0.3, 0.3, (height, width - width // 2, 1)).astype(np.float32)
    return anchor


def band_energy(image: np.ndarray, cols: slice) -> float:
    return float(np.mean(metrics.fine_band(metrics.rgb_to_y(image).astype(np.float64))[8:-8, cols] ** 2))


def test_flat_areas_lose_the_added_grain_and_textured_areas_keep_it() -> None:
    """Mutations caught: max instead of min in the gain (flat grain stays), the gain on the whole image
    (the texture is damped), the anchor's energy left out (everything capped to 0)."""
    anchor = half_textured()
    grain = RNG.normal(0.0, 0.03, anchor.shape).astype(np.float32)
    image = np.clip(anchor + grain, 0.0, 1.0)
    capped = cap_texture(image, anchor, 2.0)
    flat, textured = slice(4, 24), slice(40, 60)  # columns
    assert band_energy(capped - anchor + 0.5, flat) < 1e-3 * band_energy(image - anchor + 0.5, flat)
    np.testing.assert_allclose(capped[:, textured], image[:, textured], rtol=0, atol=1e-6)  # gain 1 there
    assert cap_texture(image, anchor, 0.0) is image  # 0: off


def test_the_gain_amplifies_the_detail_only_where_the_cap_leaves_room() -> None:
    """gain 1.5 under cap 2: the textured half gets exactly 1.5x the added detail, the flat half stays flat;
    without a cap the gain applies everywhere. Mutations caught: the gain ignored (1x on the texture), the
    gain applied outside the min (the capped detail lifted past the cap: 2x), or a gain of 1 no longer a no-op."""
    anchor = half_textured()
    grain = RNG.normal(0.0, 0.01, anchor.shape).astype(np.float32)
    image = np.clip(anchor + grain, 0.0, 1.0)
    gained = cap_texture(image, anchor, 2.0, gain=1.5)
    flat, textured = slice(4, 24), slice(40, 60)
    inside = (anchor[:, textured] > 0.05) & (anchor[:, textured] < 0.95) & (image[:, textured] > 0.05)
    expected = np.clip(anchor + 1.5 * (image - anchor), 0.0, 1.0)[:, textured]
    np.testing.assert_allclose(gained[:, textured][inside], expected[inside], rtol=0, atol=1e-6)
    assert band_energy(gained - anchor + 0.5, flat) < 1e-3 * band_energy(image - anchor + 0.5, flat)
    everywhere = cap_texture(image, anchor, 0.0, gain=1.5)
    np.testing.assert_allclose(everywhere, np.clip(anchor + 1.5 * (image - anchor), 0, 1), rtol=0, atol=1e-6)
    assert cap_texture(image, anchor, 0.0, gain=1.0) is image
    # where the detail already exceeds the cap, the gain cannot lift it past cap x the anchor's amplitude
    anchor = np.clip(0.5 + RNG.normal(0, 0.01, (96, 96, 1)).repeat(3, axis=2), 0, 1).astype(np.float32)
    added = RNG.normal(0, 0.1, (96, 96, 1)).repeat(3, axis=2).astype(np.float32)
    capped = cap_texture(np.clip(anchor + added, 0, 1), anchor, 1.5, gain=2.0)
    ratio = np.sqrt(band_energy(capped - anchor + 0.5, slice(8, -8)) / band_energy(anchor, slice(8, -8)))
    assert 1.3 < ratio < 1.7


def test_deblocking_removes_a_cell_grid_and_keeps_smooth_detail() -> None:
    """Detail made of 4 px cells, each at its own level (what a depth-to-space output can leave), loses most
    of its steps at the cell borders; a linear ramp is a fixed point of the [1, 2, 1] / 4 filter, and pixels
    away from the borders keep any detail. Mutations caught: the filter on the wrong pixels (the grid stays),
    on every pixel (the texture inside the cells changes), or on one axis only."""
    anchor = np.full((64, 64, 3), 0.5, dtype=np.float32)
    cells = np.kron(RNG.normal(0, 0.03, (16, 16)), np.ones((4, 4)))[..., None].repeat(3, axis=2)
    deblocked = cap_texture(np.clip(anchor + cells, 0, 1).astype(np.float32), anchor, 0.0, 1.0, cell=4)
    for axis in (1, 0):
        after = np.abs(np.diff(deblocked[..., 0], axis=axis)).take(range(3, 63, 4), axis=axis).mean()
        before = np.abs(np.diff(cells[..., 0], axis=axis)).take(range(3, 63, 4), axis=axis).mean()
        assert after < 0.5 * before
    ramp = np.linspace(-0.1, 0.1, 64)[None, :, None] + np.linspace(-0.05, 0.05, 64)[:, None, None]
    smooth = (anchor + ramp).astype(np.float32)
    np.testing.assert_allclose(cap_texture(smooth, anchor, 0.0, 1.0, cell=4), smooth, rtol=0, atol=1e-6)
    texture = RNG.normal(0, 0.02, (64, 64, 3))
    inside = np.arange(64) % 4 != 0
    inside &= np.arange(64) % 4 != 3  # neither side of a border
    kept = smooth_cell_borders(texture, 4)[np.ix_(inside, inside)]
    np.testing.assert_array_equal(kept, texture[np.ix_(inside, inside)])


def test_deblocking_band_by_band_keeps_the_images_cell_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands of 7 rows (not a multiple of the cell): with the band's first row passed on, the canvas equals
    the whole image. Mutation caught: ``row0`` ignored (each band's cells start at its own top)."""
    anchor = (0.5 + 0.02 * RNG.standard_normal((70, 40, 1))).repeat(3, axis=2).astype(np.float32)
    cells = np.kron(RNG.normal(0, 0.03, (18, 10)), np.ones((4, 4)))[:70, :, None].repeat(3, axis=2)
    image = np.clip(anchor + cells, 0, 1).astype(np.float32)
    expected = cap_texture(image, anchor, 2.0, 1.2, cell=4)
    monkeypatch.setattr(output_canvas, "IN_MEMORY_PIXELS", 500)
    monkeypatch.setattr(output_canvas, "BAND_PIXELS", 7 * 40)
    canvas = OutputCanvas(image.shape, dtype=np.float32, on_disk=True)
    canvas.write(0, image)
    cap_texture_canvas(canvas, lambda top, bottom: anchor[top:bottom], 2.0, 1.2, cell=4)
    np.testing.assert_allclose(canvas.read(0, 70), expected, rtol=0, atol=1e-6)


def test_the_cap_scales_the_added_energy_to_cap_times_the_anchor() -> None:
    """Anchor and added detail of known, uniform energies: the added amplitude ends at cap x the anchor's
    (mutation: cap**2 or sqrt left out gives 4x or 2x off)."""
    anchor = np.clip(0.5 + RNG.normal(0, 0.01, (96, 96, 1)).repeat(3, axis=2), 0, 1).astype(np.float32)
    added = RNG.normal(0, 0.1, (96, 96, 1)).repeat(3, axis=2).astype(np.float32)
    capped = cap_texture(np.clip(anchor + added, 0, 1), anchor, 1.5)
    ratio = np.sqrt(band_energy(capped - anchor + 0.5, slice(8, -8)) / band_energy(anchor, slice(8, -8)))
    assert 1.3 < ratio < 1.7


def test_an_anchor_below_the_flat_amplitude_supports_detail_by_the_square_of_its_shortfall() -> None:
    """An anchor whose fine band is a quarter of FLAT_AMPLITUDE (a surface the input shows as flat): the
    added amplitude ends near cap / 16 x the anchor's, not cap x (mutation: the knee left out gives 1.5x;
    a linear knee gives 0.375x)."""
    base = RNG.normal(0, 1, (96, 96, 1))
    amplitude = np.sqrt(band_energy((base * 0.01).repeat(3, axis=2) + 0.5, slice(8, -8)))
    anchor = (0.5 + base * 0.01 * 0.25 * FLAT_AMPLITUDE / amplitude).repeat(3, axis=2)
    added = RNG.normal(0, 0.1, (96, 96, 1)).repeat(3, axis=2)
    capped = cap_texture((anchor + added).astype(np.float32), anchor, 1.5)  # no clipping: far from 0 and 1
    ratio = np.sqrt(band_energy(capped - anchor + 0.5, slice(8, -8)) / band_energy(anchor, slice(8, -8)))
    assert 0.075 < ratio < 0.115


def test_a_larger_knee_keeps_a_faint_anchor_flat_by_the_square_of_its_shortfall() -> None:
    """An anchor with a fine band of 1e-3, twice the default knee: the default lets the added amplitude reach
    cap x the anchor's, a knee of 2e-3 a quarter of that (mutation caught: ``flat`` ignored, 1.5x both times)."""
    base = RNG.normal(0, 1, (96, 96, 1))
    amplitude = np.sqrt(band_energy((base * 0.01).repeat(3, axis=2) + 0.5, slice(8, -8)))
    anchor = (0.5 + base * 0.01 * 1e-3 / amplitude).repeat(3, axis=2)
    added = RNG.normal(0, 0.1, (96, 96, 1)).repeat(3, axis=2)
    ratios = []
    for flat in (FLAT_AMPLITUDE, 2e-3):
        capped = cap_texture((anchor + added).astype(np.float32), anchor, 1.5, flat=flat)
        ratios.append(np.sqrt(band_energy(capped - anchor + 0.5, slice(8, -8)) / band_energy(anchor, slice(8, -8))))
    assert 1.3 < ratios[0] < 1.7 and 0.3 < ratios[1] < 0.45


@pytest.mark.parametrize("flat", [FLAT_AMPLITUDE, 2e-2])
def test_band_by_band_on_disk_equals_the_whole_image(monkeypatch: pytest.MonkeyPatch, flat: float) -> None:
    """Bands of 7 rows (under the halo): a band written before the next one has read its context, or a
    halo too short, changes rows at the band edges (both mutations fail this); a knee inside the anchor's
    range reaches every band (mutation: the canvas dropping ``flat``)."""
    ramp = np.linspace(0.002, 0.05, 40, dtype=np.float32)[None, :, None]  # gains between 0 and 1 everywhere
    anchor = (0.5 + ramp * RNG.standard_normal((70, 40, 1))).repeat(3, axis=2).astype(np.float32)
    image = np.clip(anchor + RNG.normal(0, 0.05, anchor.shape), 0, 1).astype(np.float32)
    expected = cap_texture(image, anchor, 2.0, flat=flat)
    monkeypatch.setattr(output_canvas, "IN_MEMORY_PIXELS", 500)
    monkeypatch.setattr(output_canvas, "BAND_PIXELS", 7 * 40)
    canvas = OutputCanvas(image.shape, dtype=np.float32, on_disk=True)
    canvas.write(0, image)
    cap_texture_canvas(canvas, lambda top, bottom: anchor[top:bottom], 2.0, flat=flat)
    assert canvas.on_disk
    np.testing.assert_allclose(canvas.read(0, 70), expected, rtol=0, atol=1e-6)


def test_the_chain_caps_against_its_regression_condition(tmp_path: Path) -> None:
    """A random-conv SR3 conditioned on a regression model: with the preset's cap the result is the uncapped
    result capped against the regression output; the preset's gain, knee and deblocking reach it too
    (mutations: the cap not applied in the chain, applied after back-projection, or against bicubic; the gain,
    the knee or the deblocking left out of the chain's finish)."""
    reg = OnnxDenoiser(save(regression(name="reg-fixture", amount=0.4), tmp_path / "reg.onnx"), "cpu")
    sr3 = OnnxDenoiser(save(local_sr3(seed=4, condition="regression", condition_model="reg-fixture",
                                      prediction="x0", target="residual", architecture={"unshuffle": 4}),
                            tmp_path / "sr3.onnx"), "cpu")  # (its card's cells: deblock smooths 4 px ones)
    lr = np.random.default_rng(7).uniform(0, 1, (16, 12, 3)).astype(np.float32)
    lr[:, :6] = 0.4  # a flat half, where the cap bites
    base = InferencePreset(steps=1, noise_levels=(gamma_of_sigma(0.3),), sampler="ddpm", start="regression",  # type: ignore[arg-type]
                           strength=0.05, back_projection=0, schedule={"type": "explicit"})
    options = RefineOptions(method="sr3", preset="probe", custom_preset=base, seed=3)
    uncapped = run(lr, options, sr3, reg).image
    anchor = run(lr, RefineOptions(method="regression"), None, reg).image
    capped = run(lr, replace(options, custom_preset=replace(base, texture_cap=1.0, back_projection=1)), sr3, reg).image
    expected = back_project(cap_texture(uncapped, anchor, 1.0), lr, 4, 1)
    np.testing.assert_allclose(capped, expected, rtol=0, atol=2e-6)
    assert np.abs(capped - uncapped).max() > 0.01  # the cap did something here
    gained_preset = replace(base, texture_cap=1.0, texture_gain=0.5, deblock=True, back_projection=1)
    gained = run(lr, replace(options, custom_preset=gained_preset), sr3, reg).image  # the preset's finish reaches it
    np.testing.assert_allclose(gained, back_project(cap_texture(uncapped, anchor, 1.0, 0.5, cell=4), lr, 4, 1),
                               rtol=0, atol=2e-6)
    assert np.abs(gained - capped).max() > 0.01
    assert np.abs(gained - back_project(cap_texture(uncapped, anchor, 1.0, 0.5), lr, 4, 1)).max() > 1e-3
    kneed = run(lr, replace(options, custom_preset=replace(base, texture_cap=1.0, flat_amplitude=0.05,
                                                           back_projection=1)), sr3, reg).image
    np.testing.assert_allclose(kneed, back_project(cap_texture(uncapped, anchor, 1.0, flat=0.05), lr, 4, 1),
                               rtol=0, atol=2e-6)
    assert np.abs(kneed - capped).max() > 1e-3


def test_the_card_keeps_the_cap_and_gain_and_refuses_bad_ones() -> None:
    """Mutations caught: the reader dropping ``texture_cap``, ``texture_gain``, ``flat_amplitude`` or ``deblock``
    (read back as 0, 1, the default knee or false), a string taken for a flag, or a schema-2 card (no gain) or
    schema-3 card (no knee) refused or read with another gain than 1 or knee than the default."""
    card = make_card("sr3")
    fast = replace(card.inference_presets["fast"], texture_cap=2.5, texture_gain=1.25, flat_amplitude=1e-3,
                   deblock=True)
    presets = {**card.inference_presets, "fast": fast}
    read = card_from_metadata({CARD_METADATA_KEY: card.with_updates(inference_presets=presets).to_json()})
    assert (read.inference_presets["fast"].texture_cap, read.inference_presets["fast"].texture_gain,
            read.inference_presets["fast"].flat_amplitude, read.inference_presets["fast"].deblock) == (
        2.5, 1.25, 1e-3, True)
    assert "texture cap 2.5 (knee 0.001)" in read.inference_presets["fast"].finish_summary()
    assert read.inference_presets["balanced"].deblock is False
    assert (read.inference_presets["balanced"].texture_cap, read.inference_presets["balanced"].texture_gain) == (
        0.0, 1.0)
    old = json.loads(card.with_updates(inference_presets=presets).to_json())
    old["schema_version"] = 2
    del old["inference_presets"]["fast"]["texture_gain"]
    assert card_from_metadata({CARD_METADATA_KEY: json.dumps(old)}).inference_presets["fast"].texture_gain == 1.0
    old["schema_version"] = 3
    del old["inference_presets"]["fast"]["flat_amplitude"]
    assert card_from_metadata({CARD_METADATA_KEY: json.dumps(old)}).inference_presets["fast"].flat_amplitude == \
        FLAT_AMPLITUDE
    for bad in (0.0, -1e-3, float("nan")):
        with pytest.raises(ModelCardError, match="flat_amplitude"):
            InferencePreset(steps=1, noise_levels=(0.9,), flat_amplitude=bad)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ModelCardError, match="texture_cap"):
            InferencePreset(steps=1, noise_levels=(0.9,), texture_cap=bad)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ModelCardError, match="texture_gain"):
            InferencePreset(steps=1, noise_levels=(0.9,), texture_gain=bad)
    broken = json.loads(card.with_updates(inference_presets=presets).to_json())
    broken["inference_presets"]["fast"]["deblock"] = "yes"
    with pytest.raises(ModelCardError, match="deblock must be true or false"):
        card_from_metadata({CARD_METADATA_KEY: json.dumps(broken)})
