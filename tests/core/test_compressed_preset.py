"""JPEG inputs: the quality a file was saved at is read back from its quantization table, and a card's compressed
preset stands in for the default on inputs saved at quality <= COMPRESSED_QUALITY (the CLI, the flow and the
pipeline; the app in tests/qt/test_compressed_input.py)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from onnx_fixtures import TRAIN, make_card, make_presets, oracle_sr3, regression, save
from PIL import Image

from sr3_desktop import cli
from sr3_desktop.core.diffusion.schedule import inference_levels
from sr3_desktop.core.imageio import load_image
from sr3_desktop.core.model_files.card import COMPRESSED_QUALITY, InferencePreset, ModelCard
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.model_files.registry import ModelEntry
from sr3_desktop.core.upscale import estimate
from sr3_desktop.core.upscale.pipeline import run
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.run_models import preset_name, regression_for

LR = np.random.default_rng(3).random((10, 12, 3)).astype(np.float32)


def photo(seed: int = 0) -> Image.Image:
    smooth = np.linspace(0, 255, 48)[None, :, None] * np.ones((40, 1, 3))
    noise = np.random.default_rng(seed).normal(0, 20, (40, 48, 3))
    return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))


def compressed_card(**changes: object) -> ModelCard:
    """The fixture card with a 2-step compressed preset (fast: 4 steps, balanced, the default: 6)."""
    levels = inference_levels(TRAIN, 2, 0.2)
    compressed = InferencePreset(steps=len(levels), noise_levels=tuple(float(g) for g in levels), strength=0.2,
                                 sampler="ddim", start="bicubic", schedule={"type": "train_subsequence"})
    fields: dict[str, object] = {"inference_presets": {**make_presets(), "compressed": compressed},
                                 "compressed_preset": "compressed", **changes}
    return make_card("sr3", name="fixture-compressed", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["JPEG", "MPO"])
def test_the_saved_quality_is_read_back_exactly(tmp_path: Path, fmt: str) -> None:
    """Every quality from 1 to 100 (Pillow's libjpeg, 4:2:0), a JPEG whose chroma table differs, and lossless files
    (None). Mutations caught: the IJG scale's branch at 50 moved, rounding dropped (no +50), the chroma table read
    instead of the luminance one, or a PNG given a quality."""
    image = photo()
    for quality in range(1, 101):
        path = tmp_path / f"q{quality}.jpg"
        image.save(path, fmt, quality=quality)
        assert load_image(path).jpeg_quality == quality
    path = tmp_path / "own-chroma.jpg"
    image.save(path, "JPEG", qtables=[[int(v) for v in Image.open(tmp_path / "q60.jpg").quantization[0]],
                                      [3] * 64])
    assert load_image(path).jpeg_quality == 60
    for lossless in ("png", "webp", "tiff"):
        image.save(tmp_path / f"x.{lossless}", **({"lossless": True} if lossless == "webp" else {}))
        assert load_image(tmp_path / f"x.{lossless}").jpeg_quality is None


def test_which_preset_a_run_names() -> None:
    """Mutations caught: the compressed preset also taking over an explicit choice, the <= of the threshold
    turned into <, a lossless input (None) read as compressed, a card without one given one, or the long-run
    prompt offering it for any image."""
    card = compressed_card()
    named = {q: preset_name(card, RefineOptions(input_quality=q)) for q in (None, 30, 75, COMPRESSED_QUALITY,
                                                                          COMPRESSED_QUALITY + 1, 100)}
    assert named == {None: "balanced", 30: "compressed", 75: "compressed", COMPRESSED_QUALITY: "compressed",
                     COMPRESSED_QUALITY + 1: "balanced", 100: "balanced"}
    assert preset_name(card, RefineOptions(preset="fast", input_quality=75)) == "fast"
    plain = make_card("sr3")
    assert plain.compressed_preset == "" and preset_name(plain, RefineOptions(input_quality=30)) == "balanced"
    assert card.preset_names() == ["fast", "balanced", "quality", "compressed"]
    assert [card.preset_role(n) for n in card.preset_names()] == ["", "default", "", "JPEG inputs"]
    # the long-run prompt's faster offer: the fewest evaluations, but never the JPEG preset (2 steps < fast's 4)
    assert estimate.fastest_preset(card) == "fast"


def test_a_batch_loads_the_regression_model_the_compressed_preset_starts_from() -> None:
    """A default that starts from bicubic and a compressed preset that starts from regression: a run with no
    preset named loads the regression model (a JPEG of the batch will need it); an explicit bicubic-start preset
    does not. Mutation caught: regression_for reading only the default."""
    reg = ModelEntry("fixture-regression-4x", Path("r.onnx"), make_card("regression"), bundled=True)
    card = compressed_card(default_preset="fast")
    card = card.with_updates(inference_presets={**card.inference_presets, "compressed": replace(
        card.preset("compressed"), start="regression")})
    assert regression_for(card, RefineOptions(), [reg]).entry == reg
    assert regression_for(card, RefineOptions(preset="fast"), [reg]).entry is None
    assert regression_for(compressed_card(default_preset="fast"), RefineOptions(), [reg]).entry is None


def test_a_jpeg_input_runs_the_compressed_preset_and_says_so(tmp_path: Path) -> None:
    """The pipeline runs the compressed preset's chain (its steps, its result) and says why; the estimate counts
    the same chain. Mutations caught: the chain or the estimate still reading the default, or no note."""
    sr3 = OnnxDenoiser(save(oracle_sr3(compressed_card()), tmp_path / "sr3.onnx"), "cpu")
    jpeg = run(LR, RefineOptions(seed=1, input_quality=75), sr3)
    lossless = run(LR, RefineOptions(seed=1), sr3)
    named = run(LR, RefineOptions(seed=1, preset="compressed"), sr3)
    assert (jpeg.preset, jpeg.steps, lossless.preset, lossless.steps) == ("compressed", 2, "balanced", 6)
    np.testing.assert_array_equal(jpeg.image, named.image)
    assert any("saved as JPEG at quality 75: preset 'compressed'" in n for n in jpeg.notes)
    assert not any("JPEG" in n for n in (*lossless.notes, *named.notes))
    plan = estimate.plan_work((12, 10), RefineOptions(input_quality=75), sr3, None, 4)
    assert sum(w.evaluations for w in plan) == 2


def test_the_cli_reads_the_quality_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 empty_model_folders: tuple[Path, Path]) -> None:
    """`upscale` of a JPEG at quality 75 runs the compressed preset, of the same image saved at 95 the default.
    Mutation caught: the flow not passing the loaded file's quality on."""
    monkeypatch.setenv("SR3_THREADS", "1")
    model = save(oracle_sr3(compressed_card()), tmp_path / "sr3.onnx")
    save(regression(name="fixture-regression"), tmp_path / "regression.onnx")
    notes = {}
    for quality in (75, 95):
        source = tmp_path / f"q{quality}.jpg"
        photo(1).resize((12, 10)).save(source, quality=quality)
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["upscale", str(source), "-o", str(tmp_path / f"q{quality}.png"), "--model", str(model)],
                        out, err)
        assert code == 0, err.getvalue()
        notes[quality] = err.getvalue()
    assert "saved as JPEG at quality 75: preset 'compressed'" in notes[75]
    assert "JPEG" not in notes[95]


def test_a_compressed_preset_must_be_one_of_the_cards() -> None:
    """Mutations caught: the card's check skipping the compressed preset's name, or from_dict dropping it."""
    card = compressed_card()
    assert ModelCard.from_json(card.to_json()) == card and card.compressed_preset == "compressed"
    with pytest.raises(ValueError, match="compressed preset 'missing' is not among"):
        replace(compressed_card(), compressed_preset="missing")
