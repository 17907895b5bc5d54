"""`evaluate` and `search-schedule` on real tiny exported models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exporter.__main__ import main
from exporter.search_schedule import Candidate, pick
from sr3_desktop.core.model_card import read_card
from tests.model_factory import make_photo_folder, make_tiny_models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("tiny-eval")
    sr3, regression = make_tiny_models(root)
    return sr3, regression, make_photo_folder(root / "val", count=2, size=(96, 80))


def test_evaluate_writes_json_with_bicubic_and_every_preset(tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    sr3, regression, photos = tiny
    out = tmp_path / "eval.json"
    code = main(["evaluate", str(sr3), "--regression", str(regression), "--data", str(photos), "--crop", "32",
                 "--crops-per-image", "1", "--steps", "2", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    results = report["results"]
    assert {"bicubic", "regression", "sr3-fast", "sr3-balanced", "sr3-quality"} <= set(results)
    for row in results.values():
        assert {"psnr_y", "ssim_y", "consistency", "sharpness", "colour_shift"} <= set(row)
        assert np.isfinite(row["psnr_y"]) and row["sharpness"] > 0
    assert results["regression"]["psnr_y_gain_over_bicubic"] == pytest.approx(
        results["regression"]["psnr_y"] - results["bicubic"]["psnr_y"])
    grid = Image.open(out.with_suffix(".png"))
    # LR | bicubic | regression | 3 presets | HR, each 32 px plus a 2 px frame on both sides
    assert grid.size == (7 * 36, 2 * 36)


def test_search_schedule_writes_three_presets_into_the_card(tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    sr3, regression, photos = tiny
    model = tmp_path / "searched.onnx"
    report = tmp_path / "search.json"
    code = main(["search-schedule", str(sr3), "--regression", str(regression), "--data", str(photos),
                 "--budgets", "3,5", "--quality-steps", "4", "--strengths", "0.2", "--back-projection", "0,1",
                 "--crop", "32", "--max-images", "2", "--crops-per-image", "1", "--out", str(model),
                 "--report", str(report)])
    assert code == 0
    card = read_card(model)
    assert card.preset_names() == ["fast", "balanced", "quality"]
    quality = card.preset("quality")
    assert (quality.start, quality.strength, quality.back_projection, quality.sampler) == ("noise", 1.0, 0, "ddpm")
    assert quality.steps == 4
    assert card.preset("fast").network_evaluations <= 10
    assert card.preset("balanced").network_evaluations <= 50
    assert all(p.description and "psnr_y" in p.scores for p in card.inference_presets.values())
    assert card.metrics["schedule_search"]["candidates"] == len(json.loads(report.read_text())["candidates"])
    assert read_card(sr3).inference_presets != card.inference_presets  # --out left the input alone


def _cand(psnr: float, sharpness: float, colour: float = 0.1) -> Candidate:
    return Candidate(10, "bicubic", 0.3, "ddim", 0.0, "uniform",
                     scores={"psnr_y": psnr, "sharpness": sharpness, "colour_shift": colour})


def test_pick_prefers_psnr_within_the_sharpness_and_colour_limits() -> None:
    blurry_best_psnr = _cand(30.0, 0.7)
    sharp = _cand(29.0, 0.95)
    sharper_lower = _cand(28.5, 1.05)
    drifting = _cand(31.0, 1.0, colour=3.0)
    assert pick([blurry_best_psnr, sharp, sharper_lower, drifting], (0.85, 1.15)) is sharp
    assert pick([blurry_best_psnr, sharp, sharper_lower], (1.0, 1.15)) is sharper_lower
    assert pick([blurry_best_psnr, sharp], (0.0, float("inf"))) is blurry_best_psnr
