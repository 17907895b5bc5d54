"""`evaluate` and `search-schedule`: disjoint crops, JPEG rows, presets chosen by targets relative to regression."""

from __future__ import annotations

import argparse
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exporter.__main__ import main
from exporter.evaluation import evaluate, search_schedule
from exporter.evaluation.eval_crops import EvalCrop, as_jpeg, load_crops, score
from exporter.evaluation.search_schedule import (
    Candidate,
    CompressedTargets,
    Targets,
    pick,
    quality_misses,
    to_preset,
    worse_than_regression_everywhere,
)
from sr3_desktop.core import metrics
from sr3_desktop.core.diffusion.schedule import gamma_of_sigma
from sr3_desktop.core.imageio import resample
from sr3_desktop.core.model_files.card import read_card
from tests.model_factory import make_photo_folder, make_tiny_models

REGRESSION = {"psnr_y": 30.0, "gmsd": 0.04, "grain": 0.5, "spectral_gap": 1.0, "detail_fidelity": 0.5,
              "consistency": 0.1, "colour_shift": 0.2}
GOOD = {"psnr_y": 29.6, "gmsd": 0.042, "grain": 1.0, "grain_worst": 1.4, "spectral_gap": 0.4,
        "detail_fidelity": 0.6, "consistency": 0.5, "colour_shift": 0.5}
"""Meets every target against REGRESSION: grain in 0.85-1.2 (worst crop <= 1.5), gap <= 0.45, GMSD <= 0.042,
PSNR >= 29.5, ..."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("tiny-eval")
    sr3, regression = make_tiny_models(root)
    return sr3, regression, make_photo_folder(root / "val", count=2, size=(96, 80))


def _default(module: object, flag: str) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return int(parser.parse_args(["m", "--data", "d"]).__dict__[flag])


# --- crops ----------------------------------------------------------------------------------------
def test_report_and_search_crops_never_share_a_cell(tmp_path: Path) -> None:
    photos = make_photo_folder(tmp_path / "photos", count=3, size=(256, 192))
    report_n, search_n = _default(evaluate, "crops_per_image"), _default(search_schedule, "crops_per_image")
    assert (report_n, search_n) == (8, 3)  # the commands' defaults differ: disjointness must not depend on them
    for per_report, per_search in ((4, 2), (2, 4), (6, 6)):
        report = load_crops(photos, 32, 4, per_report, role="report")
        search = load_crops(photos, 32, 4, per_search, role="search")
        assert len(report) == 3 * per_report and len(search) == 3 * per_search
        assert not {c.name for c in report} & {c.name for c in search}
    again = load_crops(photos, 32, 4, 4, role="report")
    assert [c.name for c in again] == [c.name for c in load_crops(photos, 32, 4, 4, role="report")]
    every = {c.name for c in load_crops(photos, 32, 4, 2, role="all")}
    assert every == {c.name for c in load_crops(photos, 32, 4, 2, role="report")} | {
        c.name for c in load_crops(photos, 32, 4, 2, role="search")}


def test_a_crop_is_its_cell_of_the_photo_with_the_clean_lr(tmp_path: Path) -> None:
    """Mutations caught: a cell off the centred grid, the LR not the antialiased downscale, or left in float (a
    file holds 8-bit levels, and the grain floor reads them as such)."""
    photos = make_photo_folder(tmp_path / "photos", count=1, size=(100, 70))
    rgb = np.asarray(Image.open(photos / "astronaut.png").convert("RGB"), dtype=np.float32) / 255.0
    crops = load_crops(photos, 32, 4, 3, role="all")
    cells = [(3 + r * 32, 2 + c * 32) for r in range(2) for c in range(3)]  # the grid centred in 70 x 100
    for crop in crops:
        top, left = cells[int(crop.name.split("#")[1])]
        np.testing.assert_array_equal(crop.hr, rgb[top : top + 32, left : left + 32])
        lr = np.clip(resample.downscale(crop.hr, 4), 0.0, 1.0)
        np.testing.assert_array_equal(crop.lr, np.round(lr * 255.0).astype(np.float32) / 255.0)


def test_jpeg_rows_give_the_model_the_lr_as_a_4_2_0_jpeg_and_keep_the_hr(tmp_path: Path) -> None:
    photos = make_photo_folder(tmp_path / "photos", count=1, size=(96, 64))
    crops = load_crops(photos, 32, 4, 2, role="report")
    for clean, lossy in zip(crops, as_jpeg(crops, 75), strict=True):
        buffer = io.BytesIO()
        Image.fromarray(np.round(clean.lr * 255).astype(np.uint8)).save(buffer, "JPEG", quality=75, subsampling=2)
        expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255
        np.testing.assert_array_equal(lossy.lr, expected)
        assert lossy.hr is clean.hr and lossy.name == f"{clean.name}@q75"
        assert not np.array_equal(lossy.lr, clean.lr)


# --- evaluate ---------------------------------------------------------------------------------------
def test_evaluate_scores_seeds_jpeg_rows_and_the_targets(tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    sr3, regression, photos = tiny
    out = tmp_path / "eval.json"
    code = main(["evaluate", str(sr3), "--regression", str(regression), "--data", str(photos), "--crop", "32",
                 "--crops-per-image", "1", "--steps", "1", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    results, default = report["results"], report["default"]
    assert default == f"sr3-{read_card(sr3).default_preset}" and report["seeds"] == [0, 1, 2]
    assert set(results) == {"bicubic", "regression", "sr3-fast", "sr3-balanced", "sr3-quality"}
    every_metric = set(metrics.evaluate_pair(np.zeros((32, 32, 3)), np.zeros((32, 32, 3)), np.zeros((8, 8, 3)), 4))
    for label, row in results.items():
        assert every_metric <= set(row)
        assert row["seeds"] == (3 if label.startswith("sr3-") else 1)
        assert ("psnr_y_seed_std" in row) == label.startswith("sr3-")
    # JPEG rows: bicubic, regression and the default preset, each from the same LR saved as JPEG q75.
    jpeg_rows = report["results_jpeg75"]
    assert set(jpeg_rows) == {"bicubic", "regression", default}
    crops = load_crops(photos, 32, 4, 1, role="report")
    bicubic_from_jpeg = []
    for crop in crops:
        buffer = io.BytesIO()
        Image.fromarray(np.round(crop.lr * 255).astype(np.uint8)).save(buffer, "JPEG", quality=75, subsampling=2)
        lr = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255
        bicubic_from_jpeg.append(metrics.psnr_y(np.clip(resample.upscale(lr, 4), 0, 1), crop.hr, shave=4))
    assert jpeg_rows["bicubic"]["psnr_y"] == pytest.approx(np.mean(bicubic_from_jpeg), abs=1e-9)
    assert jpeg_rows["bicubic"]["psnr_y"] < results["bicubic"]["psnr_y"]
    # The targets are the default preset's scores relative to regression in the same run.
    row, reg = results[default], results["regression"]
    targets = report["targets"]
    assert targets["spectral_gap_le_0.45x_regression"]["value"] == pytest.approx(
        row["spectral_gap"] / reg["spectral_gap"], abs=1e-4)
    assert targets["spectral_gap_le_0.45x_regression"]["met"] == (row["spectral_gap"] <= 0.45 * reg["spectral_gap"])
    assert targets["psnr_ge_regression_minus_0.5"]["value"] == pytest.approx(row["psnr_y"] - reg["psnr_y"], abs=1e-4)
    assert targets["grain_in_0.85_1.2"]["met"] == (0.85 <= row["grain"] <= 1.2)
    assert row["grain_worst"] >= row["grain"]
    assert targets["grain_worst_crop_le_1.5"]["met"] == (row["grain_worst"] <= 1.5)
    grid = Image.open(out.with_suffix(".png"))
    assert grid.size == (7 * 36, 2 * 36)  # LR | bicubic | regression | 3 presets | HR, 32 px + 2 px frames
    assert Image.open(out.with_name("eval-jpeg75.png")).size == (5 * 36, 2 * 36)


def test_evaluate_scores_the_regression_self_ensemble_on_clean_and_jpeg(tiny: tuple[Path, Path, Path],
                                                                       tmp_path: Path) -> None:
    """--ensemble 2 adds 'regression-x2' and the default preset over it beside the plain rows, clean and from
    JPEG, and columns of the PNG. Mutations caught: a row run without the ensemble (its scores would equal the
    plain row's), or left out of the JPEG rows."""
    sr3, regression, photos = tiny
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(sr3), "--regression", str(regression), "--data", str(photos), "--crop", "32",
                 "--crops-per-image", "1", "--steps", "1", "--seeds", "1", "--ensemble", "2",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    default = report["default"]
    for rows in (report["results"], report["results_jpeg75"]):
        assert {"regression", "regression-x2", default, f"{default}-x2"} <= set(rows)
        assert abs(rows["regression-x2"]["psnr_y"] - rows["regression"]["psnr_y"]) > 1e-4
        assert abs(rows[f"{default}-x2"]["psnr_y"] - rows[default]["psnr_y"]) > 1e-4
    # LR | bicubic | regression | regression-x2 | 3 presets | the default over regression-x2 | HR
    assert Image.open(out.with_suffix(".png")).size == (9 * 36, 2 * 36)


def test_default_targets_are_relative_to_regression() -> None:
    results = {"regression": {**REGRESSION, "spectral_gap": 1.0}, "sr3-fast": GOOD}
    assert all(t["met"] for t in evaluate.default_targets(results, "sr3-fast").values())
    tighter = {**results, "regression": {**REGRESSION, "spectral_gap": 0.8, "gmsd": 0.03, "psnr_y": 30.5}}
    checks = evaluate.default_targets(tighter, "sr3-fast")
    assert not checks["spectral_gap_le_0.45x_regression"]["met"] and not checks["gmsd_le_1.05x_regression"]["met"]
    assert not checks["psnr_ge_regression_minus_0.5"]["met"] and checks["grain_in_0.85_1.2"]["met"]
    worst = evaluate.default_targets({**results, "sr3-fast": {**GOOD, "grain_worst": 1.6}}, "sr3-fast")
    assert not worst["grain_worst_crop_le_1.5"]["met"] and worst["grain_in_0.85_1.2"]["met"]
    gridded = evaluate.default_targets({**results, "sr3-fast": {**GOOD, "grid": 2.3}}, "sr3-fast")
    assert not gridded["grid_le_1.1x_regression"]["met"] and gridded["grain_in_0.85_1.2"]["met"]


# --- the rules of the search --------------------------------------------------------------------------
def test_targets_are_relative_to_the_regression_scores() -> None:
    targets = Targets()
    assert not any(targets.misses(GOOD, REGRESSION).values())
    # The same scores miss once regression gets better: the bounds move with it.
    better = {**REGRESSION, "spectral_gap": 0.8, "gmsd": 0.035, "psnr_y": 30.5}
    missed = targets.misses(GOOD, better)
    assert missed["spectral_gap"] == pytest.approx((0.4 - 0.36) / 0.36)
    assert missed["gmsd"] == pytest.approx((0.042 - 0.03675) / 0.03675)
    assert missed["psnr_y"] == pytest.approx((30.0 - 29.6) / 0.5)
    # Grain counts on both sides of 0.85-1.2: noise and blur both miss; and so does one mottled crop.
    assert targets.misses({**GOOD, "grain": 1.5}, REGRESSION)["grain"] == pytest.approx(0.3 / 1.2)
    assert targets.misses({**GOOD, "grain": 0.7}, REGRESSION)["grain"] == pytest.approx(0.15 / 1.2)
    assert targets.misses({**GOOD, "grain_worst": 1.8}, REGRESSION)["grain_worst"] == pytest.approx(0.3 / 1.5)
    assert targets.misses({**GOOD, "consistency": 1.5, "colour_shift": 2.0}, REGRESSION)["colour_shift"] == 1.0
    # A 4 px grid misses too, however well the rest scores (mutation caught: the grid's bound not counted).
    gridded = {**REGRESSION, "grid": 1.5}
    assert targets.misses({**GOOD, "grid": 1.8}, gridded)["grid"] == pytest.approx((1.8 - 1.65) / 1.65)
    assert targets.misses({**GOOD, "grid": 1.6}, gridded)["grid"] == 0.0
    assert quality_misses({**GOOD, "psnr_y": 29.0, "grain": 1.4}, {"psnr_y": 28.0}) == {
        "psnr_y": 0.0, "grain": 0.0, "colour_shift": 0.0}


def _cand(psnr: float, sigma: float) -> Candidate:
    return Candidate(1, "regression", sigma, sigma, "ddpm", 1.0, scores={"psnr_y": psnr})


def test_pick_takes_the_most_faithful_chain_that_meets_the_targets_else_the_nearest_miss() -> None:
    met_low, met_high, missing_best_psnr = _cand(29.0, 0.1), _cand(29.4, 0.2), _cand(31.0, 0.3)
    misses = {met_low: {"grain": 0.0}, met_high: {"grain": 0.0}, missing_best_psnr: {"grain": 0.3}}
    assert pick([met_low, met_high, missing_best_psnr], misses) is met_high
    far, near, near_better = _cand(31.0, 0.1), _cand(28.0, 0.2), _cand(28.5, 0.3)
    misses = {far: {"grain": 2.0}, near: {"grain": 0.1, "gmsd": 0.1}, near_better: {"grain": 0.2}}
    assert pick([far, near, near_better], misses) is near_better  # equal total miss: the higher PSNR-Y


def test_a_preset_is_dropped_only_if_regression_is_as_good_on_every_metric() -> None:
    worse = {"psnr_y": 29.0, "gmsd": 0.05, "grain": 1.8, "spectral_gap": 1.2, "detail_fidelity": 0.4,
             "consistency": 0.2, "colour_shift": 0.3}
    assert worse_than_regression_everywhere(worse, REGRESSION)
    assert worse_than_regression_everywhere(REGRESSION, REGRESSION)  # a tie everywhere is no reason to keep it
    for key, value in (("psnr_y", 30.1), ("gmsd", 0.039), ("spectral_gap", 0.9), ("detail_fidelity", 0.6),
                       ("consistency", 0.05), ("colour_shift", 0.1), ("grain", 1.2)):  # grain: nearer 1 is better
        assert not worse_than_regression_everywhere({**worse, key: value}, REGRESSION), key
    assert worse_than_regression_everywhere({**worse, "grain": 1.6}, REGRESSION)  # |1.6 - 1| > |0.5 - 1|


def test_candidates_become_presets_with_their_exact_sigmas(tiny: tuple[Path, Path, Path]) -> None:
    card = read_card(tiny[0])
    one = to_preset(Candidate(1, "regression", 0.3, 0.3, "ddpm", 1.0, back_projection=2), card)
    assert (one.steps, one.start, one.back_projection) == (1, "regression", 2)
    assert one.noise_levels == pytest.approx((gamma_of_sigma(0.3),), rel=1e-14)
    two = to_preset(Candidate(2, "bicubic", 0.2, 0.05, "ddim", 0.0), card)
    assert two.noise_levels == pytest.approx((gamma_of_sigma(0.2), gamma_of_sigma(0.05)), rel=1e-14)
    quality = to_preset(Candidate(7, "noise", 0.0, 0.0, "ddpm", 1.0, spacing="quadratic"), card)
    assert (quality.steps, quality.strength, quality.schedule["spacing"]) == (7, 1.0, "quadratic")


def test_search_schedule_chooses_presets_by_the_rules(tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    sr3, regression, photos = tiny
    model, report_path = tmp_path / "searched.onnx", tmp_path / "search.json"
    code = main(["search-schedule", str(sr3), "--regression", str(regression), "--data", str(photos),
                 "--quality-steps", "3", "--sigmas", "0.1,0.3", "--end-ratios", "0.5", "--back-projection", "0,1",
                 "--crop", "32", "--crops-per-image", "1", "--out", str(model), "--report", str(report_path)])
    assert code == 0
    card, report = read_card(model), json.loads(report_path.read_text())
    search = card.metrics["schedule_search"]
    candidates = {c["label"]: c for c in report["candidates"]}
    for cand in report["candidates"]:  # short chains are judged against regression on the same search crops
        if not cand["label"].startswith("noise"):
            assert cand["misses"] == pytest.approx(Targets().misses(cand, report["reference"]["regression"]))
    # fast: 2 starts x 2 sigmas x 2 back-projections; balanced: the same x 2 samplers; quality: 2 spacings
    assert search["candidates"] == len(report["candidates"]) == 8 + 16 + 2
    reference = report["reference"]["regression"]
    quality = card.preset("quality")  # the paper's algorithm stays
    assert (quality.start, quality.strength, quality.back_projection, quality.sampler, quality.steps) == (
        "noise", 1.0, 0, "ddpm", 3)
    chosen = {}
    for name, budget in search_schedule.PRESET_BUDGETS.items():
        pool = [c for c in report["candidates"] if c["steps"] == budget and not c["label"].startswith("noise")]
        met = [c for c in pool if not any(c["misses"].values())]
        best = (max(met, key=lambda c: c["psnr_y"]) if met else
                min(pool, key=lambda c: (sum(c["misses"].values()), -c["psnr_y"])))
        chosen[name] = best
        if worse_than_regression_everywhere(best, reference):
            assert name in search["dropped"] and name not in card.inference_presets
            continue
        preset = card.preset(name)
        assert preset.steps == budget == preset.network_evaluations  # fast: 1 SR3 pass, balanced: 2
        label = Candidate(preset.steps, preset.start, preset.schedule["sigma_start"], preset.schedule["sigma_end"],
                          preset.sampler, preset.eta, preset.back_projection).label()
        assert candidates[label]["psnr_y"] == pytest.approx(best["psnr_y"], abs=1e-5)
        assert preset.scores["psnr_y"] == pytest.approx(best["psnr_y"], abs=1e-5)
    kept = [n for n in search_schedule.PRESET_BUDGETS if n in card.inference_presets
            and card.preset(n).network_evaluations <= search_schedule.MAX_DEFAULT_EVALUATIONS]
    expected = min(kept, key=lambda n: (sum(chosen[n]["misses"].values()), chosen[n]["steps"])) if kept else "quality"
    assert card.default_preset == search["default"] == report["default"] == expected
    assert all(p.description and "grain" in p.scores for p in card.inference_presets.values())
    assert read_card(sr3).inference_presets != card.inference_presets  # --out left the input alone
    assert card.compressed_preset == "" and "compressed" not in card.inference_presets  # no --jpeg, none


def test_jpeg_searches_the_compressed_preset_on_the_crops_saved_as_jpeg(tiny: tuple[Path, Path, Path],
                                                                        tmp_path: Path) -> None:
    """--jpeg 75: one-step chains from the regression output (the default's budget), each cap knee and
    back-projection scored on the search crops saved at quality 75 against bicubic and regression of the same
    JPEG, and the pick written as the card's compressed preset. Mutations caught: the candidates scored on the
    clean crops (the reference would be the clean one), a flag ignored (fewer rows), the pick not the least
    missing, or the card not naming it."""
    sr3, regression, photos = tiny
    model, report_path = tmp_path / "searched.onnx", tmp_path / "search.json"
    assert main(["search-schedule", str(sr3), "--regression", str(regression), "--data", str(photos),
                 "--quality-steps", "2", "--sigmas", "0.1,0.3", "--back-projection", "0,1", "--texture-caps", "2",
                 "--jpeg", "75", "--jpeg-texture-caps", "2", "--jpeg-flat-amplitudes", "1e-3,4e-3",
                 "--crop", "32", "--crops-per-image", "1", "--out", str(model), "--report", str(report_path)]) == 0
    card, report = read_card(model), json.loads(report_path.read_text())
    summary = card.metrics["schedule_search"]["compressed"]
    rows = report["compressed_candidates"]
    assert summary["quality"] == 75 and summary["candidates"] == len(rows) == 2 * 2 * 2
    crops = as_jpeg(load_crops(photos, 32, 4, 1, None, 0, "search"), 75)
    bicubic = score([np.clip(resample.upscale(c.lr, 4), 0.0, 1.0) for c in crops], crops, 4)
    reference = summary["reference"]
    assert reference["bicubic"]["psnr_y"] == pytest.approx(bicubic["psnr_y"], abs=1e-4)  # from the JPEG LR
    for row in rows:
        assert row["set"] == "jpeg75" and row["steps"] == 1 and row["label"].startswith("regression sigma")
        assert row["misses"] == pytest.approx(CompressedTargets().misses(row, reference["bicubic"],
                                                                         reference["regression"]))
    best = _best(rows)
    assert summary["chosen"] == best["label"]
    preset = card.preset(card.compressed_preset)
    assert card.compressed_preset == "compressed" and preset.steps == 1 and preset.start == "regression"
    assert preset.scores["psnr_y"] == pytest.approx(best["psnr_y"], abs=1e-5)
    assert preset.flat_amplitude in (1e-3, 4e-3) and preset.texture_cap == 2
    assert "JPEG" in preset.description


def _best(pool: list[dict]) -> dict:
    met = [c for c in pool if not any(c["misses"].values())]
    return max(met, key=lambda c: c["psnr_y"]) if met else min(pool, key=lambda c: (sum(c["misses"].values()),
                                                                                     -c["psnr_y"]))


def test_the_finish_flags_are_searched_and_the_pick_keeps_its_finish(tiny: tuple[Path, Path, Path],
                                                                     tmp_path: Path) -> None:
    """--texture-gains and --flat-amplitudes (with each cap > 0) on the short chains, --quality-texture-caps /
    --quality-back-projection on the full chain: each finish is scored on the same samples, and each preset is
    its budget's pick with that finish; quality keeps the paper's start (pure noise, strength 1). Catches: a flag
    ignored (fewer candidates), a gain or knee that changes nothing, or the chosen cap, knee, gain or
    back-projection not written into the preset."""
    sr3, regression, photos = tiny
    model, report_path = tmp_path / "searched.onnx", tmp_path / "search.json"
    assert main(["search-schedule", str(sr3), "--regression", str(regression), "--data", str(photos),
                 "--quality-steps", "3", "--quality-texture-caps", "0,0.5", "--quality-back-projection", "0,2",
                 "--sigmas", "0.3", "--back-projection", "0", "--texture-caps", "0,2", "--texture-gains", "1,1.5",
                 "--deblock", "0,1", "--flat-amplitudes", "5e-4,0.05",
                 "--crop", "32", "--crops-per-image", "1", "--out", str(model), "--report", str(report_path)]) == 0
    report, card = json.loads(report_path.read_text()), read_card(model)
    labels = {c["label"]: c for c in report["candidates"]}
    full = [c for c in report["candidates"] if c["label"].startswith("noise")]
    assert len(full) == 2 * (1 + 2) * 2 * 2  # spacings x (cap 0, cap 0.5 at two knees) x back-projections x deblocking
    one_step = [c for c in report["candidates"] if c["steps"] == 1]
    assert len(one_step) == 2 * (1 + 2) * 2 * 2  # starts x (cap 0, cap 2 at two knees) x gains x deblocking
    kneed = [c for c in one_step if " knee=0.05" in c["label"]]
    assert kneed and all(abs(c["grain"] - labels[c["label"].replace(" knee=0.05", "")]["grain"]) > 1e-4
                         for c in kneed)
    for c in one_step:
        if " gain=1.5" in c["label"] and " cap=" not in c["label"] and "deblock" not in c["label"]:
            plain = labels[c["label"].replace(" gain=1.5", "")]
            assert abs(c["spectral_gap"] - plain["spectral_gap"]) > 1e-4
    fast = card.preset("fast") if "fast" in card.inference_presets else None
    if fast is not None:
        label = Candidate(1, fast.start, fast.schedule["sigma_start"], fast.schedule["sigma_end"], fast.sampler,
                          fast.eta, fast.back_projection, texture_cap=fast.texture_cap,
                          texture_gain=fast.texture_gain, flat_amplitude=fast.flat_amplitude,
                          deblock=fast.deblock).label()
        assert labels[label]["psnr_y"] == pytest.approx(_best(one_step)["psnr_y"], abs=1e-6)
    quality = card.preset("quality")
    assert (quality.start, quality.strength, quality.sampler, quality.steps) == ("noise", 1.0, "ddpm", 3)
    label = Candidate(3, "noise", 0.0, 0.0, "ddpm", 1.0, quality.back_projection, quality.schedule["spacing"],
                      quality.texture_cap, flat_amplitude=quality.flat_amplitude, deblock=quality.deblock).label()
    assert labels[label]["psnr_y"] == pytest.approx(_best(full)["psnr_y"], abs=1e-6)
    assert quality.scores["psnr_y"] == pytest.approx(_best(full)["psnr_y"], abs=1e-5)
    assert "back-projection" in quality.description and (not quality.texture_cap or "capped" in quality.description)


def test_grain_floors_are_searched_on_the_same_samples_and_the_pick_keeps_its_grain(tiny: tuple[Path, Path, Path],
                                                                                    tmp_path: Path) -> None:
    """--grains on the short chains and --quality-grains on the full chain: each floor is scored on the same
    samples (twice the candidates; a floor raises the grain metric), and a preset picked with a floor keeps it
    (its scores are its candidate's). Catches: the flag ignored, a floor that adds nothing, the chosen grain not
    written into the preset."""
    sr3, regression, photos = tiny
    model, report_path = tmp_path / "grained.onnx", tmp_path / "search.json"
    assert main(["search-schedule", str(sr3), "--regression", str(regression), "--data", str(photos),
                 "--quality-steps", "2", "--quality-grains", "0,6", "--sigmas", "0.3", "--back-projection", "0",
                 "--texture-caps", "2", "--grains", "0,6", "--crop", "32", "--crops-per-image", "1",
                 "--out", str(model), "--report", str(report_path)]) == 0
    report, card = json.loads(report_path.read_text()), read_card(model)
    labels = {c["label"]: c for c in report["candidates"]}
    grained = [c for c in report["candidates"] if c["label"].endswith(" grain=6")]
    assert len(grained) == len(report["candidates"]) // 2 and any(c["label"].startswith("noise") for c in grained)
    short = [c for c in grained if not c["label"].startswith("noise")]  # (the tiny full chain is all noise)
    assert short and all(c["grain"] > labels[c["label"].removesuffix(" grain=6")]["grain"] + 1e-3 for c in short)
    for preset in card.inference_presets.values():
        assert preset.grain in (0.0, 6.0)
        assert (" grain where it is smoother than 6x" in preset.description) == (preset.grain == 6.0)
        match = [c for c in report["candidates"] if c["label"].endswith(" grain=6") == (preset.grain == 6.0)
                 and c["psnr_y"] == pytest.approx(preset.scores["psnr_y"], abs=1e-5)]
        assert match


def test_presets_worse_than_regression_everywhere_are_dropped(tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from tests.core.onnx_fixtures import constant_output, make_card, regression, save

    photos = tiny[2]
    grey = make_card("sr3", name="grey-sr3", prediction="x0", target="hr")  # x0 = 0: every chain ends flat grey
    sr3 = save(constant_output(grey, 0.0), tmp_path / "grey.onnx")
    reg = save(regression(name="fixture-regression-4x"), tmp_path / "reg.onnx")  # sharpened bicubic
    out = tmp_path / "searched.onnx"
    assert main(["search-schedule", str(sr3), "--regression", str(reg), "--data", str(photos), "--quality-steps",
                 "2", "--sigmas", "0.3", "--back-projection", "0", "--crop", "32", "--crops-per-image", "1",
                 "--out", str(out)]) == 0
    card = read_card(out)
    assert card.metrics["schedule_search"]["dropped"] == ["fast", "balanced"]
    assert card.preset_names() == ["quality"] and card.default_preset == "quality"


def test_search_schedule_needs_the_regression_reference(tiny: tuple[Path, Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    sr3, regression, photos = tiny
    assert main(["search-schedule", str(sr3), "--data", str(photos), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "needs --regression" in capsys.readouterr().err
    assert main(["search-schedule", str(regression), "--regression", str(regression), "--data", str(photos),
                 "--out", str(tmp_path / "m.onnx")]) == 1
    assert "needs an SR3 model" in capsys.readouterr().err
    # Found before the search runs, not after it (mutation caught: the check dropped, a crash at the end).
    assert main(["search-schedule", str(sr3), "--regression", str(regression), "--data", str(photos),
                 "--quality-steps", "0", "--out", str(tmp_path / "m.onnx")]) == 1
    assert "--quality-steps must be >= 1" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_cells_with_nothing_to_upscale_are_skipped(tmp_path: Path) -> None:
    """A flat cell (bicubic > 50 dB) would dominate the mean PSNR; a textured one is kept."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    image = np.full((32, 64, 3), 0.5, dtype=np.float32)
    image[:, 32:] = rng.random((32, 32, 3))  # the right cell has detail, the left one is flat grey
    Image.fromarray((image * 255).astype(np.uint8)).save(folder / "half.png")
    crops = load_crops(folder, 32, 4, 4, role="all")
    assert [c.name for c in crops] == ["half#1"]


def test_the_comparison_figure_shows_each_photos_most_detailed_crop() -> None:
    rng = np.random.default_rng(3)
    flat, busy = np.full((32, 32, 3), 0.5, np.float32), rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)
    lr = np.zeros((8, 8, 3), np.float32)
    crops = [EvalCrop("a#0", flat, lr), EvalCrop("a#1", busy, lr), EvalCrop("b#0", busy * 0.5, lr),
             EvalCrop("b#1", flat, lr), EvalCrop("c#0", flat, lr)]
    assert evaluate.detailed_rows(crops, count=2) == [1, 2]  # a's and b's textured crops, not the flat ones
    assert evaluate.detailed_rows(crops, count=3) == [1, 2, 4]  # then c's only crop


def test_evaluate_scores_a_one_pass_peer_in_the_same_run(tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A card-less one-pass upscaler (nearest 4x plus a zero-weight conv, exported by torch) is test-run as the
    app does and scored beside the model on clean and JPEG inputs, with a column of its own in the PNGs.
    Mutations caught: the peer run through the regression slot (its LR would be fed at the output size), its
    row left out of the JPEG set, or its outputs not the nearest upscale (the PSNR below)."""
    import torch
    from torch import nn

    class Nearest(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            up = torch.nn.functional.interpolate(x, scale_factor=4.0, mode="nearest")
            return up + self.conv(up)

    peer = tmp_path / "Nearest-x4.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(Nearest().eval(), (torch.rand(1, 3, 16, 16),), str(peer), input_names=["lr"],
                          output_names=["hr"], opset_version=17, dynamo=False,
                          dynamic_axes={"lr": {0: "n", 2: "h", 3: "w"}, "hr": {0: "n", 2: "h", 3: "w"}})
    _, regression, photos = tiny
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(regression), "--onepass", str(peer), "--data", str(photos), "--crop", "32",
                 "--crops-per-image", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    (name,) = set(report["results"]) - {"bicubic", "regression"}
    assert name in report["results_jpeg75"]
    crops = load_crops(photos, 32, 4, 1, role="report")
    nearest = [np.repeat(np.repeat(c.lr, 4, axis=0), 4, axis=1) for c in crops]
    expected = np.mean([metrics.psnr_y(n, c.hr, shave=4) for n, c in zip(nearest, crops, strict=True)])
    assert report["results"][name]["psnr_y"] == pytest.approx(expected, abs=1e-3)
    assert Image.open(out.with_suffix(".png")).size == (5 * 36, 2 * 36)  # LR | bicubic | peer | regression | HR
