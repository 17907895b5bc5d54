"""The bundled models still upscale well: a broken, swapped or badly retrained model fails here.

Two scikit-image photos (the paper's 64 -> 256 protocol, their centre crops) through the core API with
the bundled models and the card's default preset. The margins are set from what the bundled models
measured (docs/models.md), with room for the run-to-run noise of one seed on two crops:
  regression   PSNR-Y >= bicubic + REGRESSION_MARGIN_DB;
  default SR3  PSNR-Y > bicubic, grain within GRAIN_BOUNDS (as in the photo: neither grainy nor smoothed),
               spectral gap below regression's (it adds the fine band regression misses), and PSNR-Y and
               GMSD close to regression's (FAITHFUL_DB, FAITHFUL_GMSD: texture, not invented structure), and
               no 4 px cell grid (GRID_MAX).
From the same crops saved as JPEG at quality 75, the compressed preset (what the app runs on such a file) beats
bicubic-from-the-JPEG by COMPRESSED_MARGIN_DB with less grain than the default preset there.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sr3_desktop.core import metrics
from sr3_desktop.core.imageio.resample import downscale
from sr3_desktop.core.model_files import folders
from sr3_desktop.core.model_files.card import read_card
from sr3_desktop.core.model_files.denoiser import get_denoiser
from sr3_desktop.core.upscale.pipeline import run
from sr3_desktop.core.upscale.refine_types import RefineOptions

skimage_data = pytest.importorskip("skimage.data")

PHOTOS = ("astronaut", "coffee")
CROP = 256
REGRESSION_MARGIN_DB = 1.2
"""Measured with the bundled regression model (the low-resolution U-Net, 69,710 steps, the last 4,000 on 128 px
crops): +2.18 dB (astronaut) and +2.52 dB (coffee); at 55,710 steps: +2.05 dB (astronaut)
and +2.38 dB (coffee) on these crops; at 37,210 steps: +2.03 and +2.38; at 17,210: +1.91 and +2.28; the
full-resolution models bundled before it: +1.90 and +2.51."""
GRAIN_BOUNDS = (0.8, 2.0)
"""Measured with the default preset of the tenth sitting (the ninth's chain, knee 1e-3, with its grain floor at 1.2x the
input's noise): 1.03 and 0.90; the ninth sitting's (1 step from sigma 0.5, cap 6, 2 back-projections, over the new
regression): 1.00 and 0.82 (mean 0.91); the eighth sitting's (sigma 0.4): 1.01 and 0.88 (mean 0.94); the seventh
sitting's (the SR3 model with its full-resolution output stage; sigma 0.5, cap 6, gain 1.15): 1.22 and 1.08 (mean
1.15); the sixth sitting's (cap 4, gain 1.15): 1.27 and 0.98; without the gain: 1.16 and 0.91; the full-resolution
models: 1.44 and 1.71. Over the 20 held-out report crops and 2 seeds the mean is 0.94 (tenth sitting; 0.66 in the
ninth, 0.79 in the eighth; docs/models.md). Below 0.8 is regression's smoothness (0.34-0.42 here): an SR3 model that
adds nothing fails; far above is noise."""
FAITHFUL_DB = 1.2
"""Default SR3 PSNR-Y >= regression's - 1.2 dB on each crop (the product's target: -0.5 over 20+ crops). Measured: -0.47
and -0.21 dB (tenth sitting); -0.47 and -0.20 dB (ninth); -0.44 and -0.19 dB (eighth sitting); -0.67 and -0.34 dB
(seventh); the sixth sitting's: -0.99 and -0.26 dB with the gain (without it: -0.77 and -0.19; the full-resolution
pair: -0.30 and -0.52; before the regression anchor: -1.60 and -1.91, which fails)."""
FAITHFUL_GMSD = 1.25
"""Default SR3 GMSD <= 1.25 x regression's on each crop (target 1.05 x over 20+ crops). Measured: 1.07 and 1.02 x
(seventh sitting), 1.04 and 1.01 x (eighth, ninth and tenth); the sixth sitting's: 1.15 and 1.03 x with the gain
(without it: 1.12 and 1.02 x; the full-resolution pair: 1.01 and 1.00 x; the earlier models: 1.27 and 1.48 x, which
fail)."""
GRID_MAX = 1.6
"""Default SR3 cell grid (metrics.cell_grid over 4 px cells, 1 = as the photo) <= 1.6 on each crop. Measured: 1.10 and
1.00 with the full-resolution output stage (regression: 0.72 and 0.99), 1.14 and 1.05 (eighth sitting), 0.93 and 0.90
(ninth, and tenth); the sixth
sitting's model, whose output was a bare depth-to-space, 2.27 and 1.40, which fails."""
ENSEMBLE_GAIN_DB = 0.05
"""Regression self-ensembled over 4 flips (``--ensemble 4``) >= its one pass + 0.05 dB on each crop. Measured: +0.08
and +0.08 dB (ninth sitting's regression), +0.10 (astronaut) and +0.12 dB (coffee) before; +0.20 (+0.26 before)
over the 20 report crops. An ensemble that changes nothing fails, one
whose outputs are not transformed back loses dB."""
COMPRESSED_MARGIN_DB = 0.2
"""On the crops saved as JPEG at quality 75 (as the app runs such a file: the card's compressed preset), SR3 PSNR-Y >=
bicubic-from-the-same-JPEG + COMPRESSED_MARGIN_DB on each crop. Measured (tenth sitting, grain floor 1x): +0.39
(astronaut) and +0.85 dB (coffee); ninth: +0.40 and +0.84 dB; the default preset there: +0.37 and +0.71."""
COMPRESSED_GRAIN_MAX = 1.3
"""The compressed preset's grain on each JPEG crop <= this bound and <= the default preset's on the same JPEG (its
reason to exist: the default grows block edges into a mottle). Measured: 1.14 and 0.95 (the default: 1.26 and 1.09;
tenth sitting, both with their grain floors); ninth: 0.97 and 0.82 (the default: 1.03 and 0.94); over the 20 report
crops from JPEG 0.78, worst crop 3.30 (the default: 0.92 and 3.98; ninth: 0.63 and 2.62)."""
Outputs = dict[str, list[tuple[np.ndarray, np.ndarray]]]
"""{method: [(output, hr), ...]}"""


def _crop(name: str) -> tuple[np.ndarray, np.ndarray]:
    photo = np.asarray(getattr(skimage_data, name)(), dtype=np.float32)[:, :, :3] / 255.0
    top, left = (photo.shape[0] - CROP) // 2, (photo.shape[1] - CROP) // 2
    hr = np.ascontiguousarray(photo[top : top + CROP, left : left + CROP])
    return hr, np.clip(downscale(hr, 4), 0.0, 1.0)


@pytest.fixture(scope="module")
def outputs() -> Outputs:
    """{method: [(output, hr), ...]} for bicubic, regression and the default SR3 preset."""
    bundled = folders.BUNDLED_DIR  # the shipped files, whatever SR3_DESKTOP_BUNDLED_DIR says
    sr3 = get_denoiser(bundled / "sr3-photo-4x.onnx", "cpu")
    regression = get_denoiser(bundled / "regression-photo-4x.onnx", "cpu")
    found: Outputs = {"bicubic": [], "regression": [], "sr3": [], "regression-x4": []}
    for name in PHOTOS:
        hr, lr = _crop(name)
        for method in found:
            options = RefineOptions(method=method.split("-")[0], seed=0,  # type: ignore[arg-type]
                                    ensemble=4 if method.endswith("-x4") else 1)
            found[method].append((run(lr, options, sr3 if method == "sr3" else None, regression).image, hr))
    return found


@pytest.fixture(scope="module")
def jpeg_outputs() -> Outputs:
    """The same crops with the LR saved as JPEG at quality 75: bicubic, regression, the compressed preset (the
    run knows the quality, as the app does from the file) and the default preset (named, as if it did not)."""
    bundled = folders.BUNDLED_DIR
    sr3 = get_denoiser(bundled / "sr3-photo-4x.onnx", "cpu")
    regression = get_denoiser(bundled / "regression-photo-4x.onnx", "cpu")
    runs = {"bicubic": RefineOptions(method="bicubic"), "regression": RefineOptions(method="regression"),
            "compressed": RefineOptions(input_quality=75), "default": RefineOptions(preset=sr3.card.default_preset)}
    found: Outputs = {name: [] for name in runs}
    for name in PHOTOS:
        hr, lr = _crop(name)
        encoded = io.BytesIO()
        Image.fromarray(np.round(lr * 255).astype(np.uint8)).save(encoded, "JPEG", quality=75)
        jpeg = np.asarray(Image.open(encoded), dtype=np.float32) / 255.0
        for method, options in runs.items():
            found[method].append((run(jpeg, options, sr3 if options.method == "sr3" else None, regression).image, hr))
    return found


def _mean(pairs: list[tuple[np.ndarray, np.ndarray]], metric: str) -> float:
    return float(np.mean([getattr(metrics, metric)(out, hr) for out, hr in pairs]))


def test_regression_beats_bicubic_by_a_margin(outputs: Outputs) -> None:
    for (reg, hr), (bic, _) in zip(outputs["regression"], outputs["bicubic"], strict=True):
        assert metrics.psnr_y(reg, hr, 4) >= metrics.psnr_y(bic, hr, 4) + REGRESSION_MARGIN_DB


def test_the_self_ensemble_adds_to_regression(outputs: Outputs) -> None:
    for (ensembled, hr), (reg, _) in zip(outputs["regression-x4"], outputs["regression"], strict=True):
        assert metrics.psnr_y(ensembled, hr, 4) >= metrics.psnr_y(reg, hr, 4) + ENSEMBLE_GAIN_DB


def test_the_default_preset_beats_bicubic_without_grain(outputs: Outputs) -> None:
    for (sr3, hr), (bic, _) in zip(outputs["sr3"], outputs["bicubic"], strict=True):
        assert metrics.psnr_y(sr3, hr, 4) > metrics.psnr_y(bic, hr, 4)
    low, high = GRAIN_BOUNDS
    assert low <= _mean(outputs["sr3"], "grain") <= high
    assert _mean(outputs["sr3"], "spectral_gap") < _mean(outputs["regression"], "spectral_gap")


def test_the_default_preset_keeps_regressions_structure(outputs: Outputs) -> None:
    for (sr3, hr), (reg, _) in zip(outputs["sr3"], outputs["regression"], strict=True):
        assert metrics.psnr_y(sr3, hr, 4) >= metrics.psnr_y(reg, hr, 4) - FAITHFUL_DB
        assert metrics.gmsd(sr3, hr) <= FAITHFUL_GMSD * metrics.gmsd(reg, hr)


def test_the_default_preset_leaves_no_cell_grid(outputs: Outputs) -> None:
    for sr3, hr in outputs["sr3"]:
        assert metrics.cell_grid(sr3, hr, 4) <= GRID_MAX


def test_a_jpeg_runs_the_compressed_preset_without_mottle(jpeg_outputs: Outputs) -> None:
    """Mutations caught: a card without a compressed preset (the two SR3 rows would be equal), one that grows JPEG
    blocks into grain, or one that loses to bicubic."""
    assert read_card(folders.BUNDLED_DIR / "sr3-photo-4x.onnx").compressed_preset == "compressed"
    rows = zip(jpeg_outputs["compressed"], jpeg_outputs["default"], jpeg_outputs["bicubic"], strict=True)
    for (compressed, hr), (default, _), (bic, _) in rows:
        assert metrics.psnr_y(compressed, hr, 4) >= metrics.psnr_y(bic, hr, 4) + COMPRESSED_MARGIN_DB
        assert metrics.grain(compressed, hr) <= min(COMPRESSED_GRAIN_MAX, metrics.grain(default, hr))
        assert not np.array_equal(compressed, default)
