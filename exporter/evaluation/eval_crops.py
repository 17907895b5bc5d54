"""Validation crops and their scores, shared by `evaluate` and `search-schedule`.

Crops sit on a grid of non-overlapping cells of each photo (cells with nothing to upscale skipped,
see FLAT_PSNR_DB). Each photo's cells are shuffled with
a fixed seed; the *report* crops come from the even places of that order and the *search* crops
from the odd places, so the two sets never share a cell whatever ``per_image`` each command uses,
and a schedule is never chosen on the crops it is reported on. The LR is the clean protocol
(antialiased bicubic, as in training, rounded to 8 bits as the file a person drops in holds it) or the same LR
saved as JPEG.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from exporter.training.data import DataError, find_images, load_rgb
from exporter.training.degrade import jpeg, quantise
from sr3_desktop.core import metrics
from sr3_desktop.core.imageio.resample import downscale, upscale
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.pipeline import run as run_pipeline
from sr3_desktop.core.upscale.refine_types import RefineOptions

Role = Literal["report", "search", "all"]
PEOPLE_METRICS = ("psnr_y", "gmsd", "grain", "spectral_gap", "detail_fidelity", "consistency", "colour_shift",
                  "grid")
"""The numbers a preset is judged and reported by (see core/metrics.py; grid is reported, not yet a target);
sharpness is reported, never used to choose."""


@dataclass(frozen=True)
class EvalCrop:
    """One validation pair: an HR crop and the LR the model gets (clean bicubic, or that LR as JPEG)."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


FLAT_PSNR_DB = 50.0
"""A cell that bicubic already reconstructs to over 50 dB PSNR-Y (out-of-focus background, clear sky)
holds nothing for an upscaler to do; it is skipped, so it cannot dominate the mean PSNR."""


def _has_detail(hr: np.ndarray, scale: int) -> bool:
    bicubic = np.clip(upscale(downscale(hr, scale), scale), 0.0, 1.0)
    return metrics.psnr_y(bicubic, hr, shave=scale) <= FLAT_PSNR_DB


def _cells(height: int, width: int, crop: int) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping crop cells, the grid centred in the image."""
    rows, cols = height // crop, width // crop
    top, left = (height - rows * crop) // 2, (width - cols * crop) // 2
    return [(top + r * crop, left + c * crop) for r in range(rows) for c in range(cols)]


def load_crops(folder: Path, crop: int, scale: int, per_image: int = 2, max_images: int | None = None,
               seed: int = 0, role: Role = "all") -> list[EvalCrop]:
    """Deterministic HR crops and their clean LR (8-bit levels); ``role`` picks the report or the search cells."""
    if crop % scale:
        raise DataError(f"--crop {crop} must be a multiple of the model's scale {scale}")
    paths = find_images(folder)[:max_images]
    if not paths:
        raise DataError(f"no images found under {folder}")
    crops: list[EvalCrop] = []
    for index, path in enumerate(paths):
        rgb = load_rgb(path).astype(np.float32) / 255.0
        cells = [(k, y, x) for k, (y, x) in enumerate(_cells(rgb.shape[0], rgb.shape[1], crop))
                 if _has_detail(rgb[y : y + crop, x : x + crop], scale)]  # k: the cell's place in the grid
        order = np.random.default_rng([seed, index]).permutation(len(cells))
        report, search = order[0::2][:per_image], order[1::2][:per_image]  # disjoint for any per_image
        chosen = {"report": report, "search": search, "all": np.concatenate([report, search])}[role]
        for i in sorted(int(i) for i in chosen):
            k, y, x = cells[i]
            hr = np.ascontiguousarray(rgb[y : y + crop, x : x + crop])
            crops.append(EvalCrop(f"{path.stem}#{k}", hr, quantise(downscale(hr, scale))))
    if not crops:
        raise DataError(f"no image under {folder} holds a {crop} px crop for the {role} set")
    return crops


def as_jpeg(crops: Sequence[EvalCrop], quality: int) -> list[EvalCrop]:
    """The same crops with the LR saved as JPEG at ``quality`` (4:2:0), the reference HR unchanged."""
    return [replace(c, name=f"{c.name}@q{quality}", lr=jpeg(c.lr, quality)) for c in crops]


def score(outputs: Sequence[np.ndarray], crops: Sequence[EvalCrop], scale: int) -> dict[str, float]:
    """Mean of every metric over the crops, and the worst crop's grain (``grain_worst``): a default is
    judged by its worst crop too, since a mottle on one smooth photo is what a person sees."""
    rows = [metrics.evaluate_pair(out, c.hr, c.lr, scale) for out, c in zip(outputs, crops, strict=True)]
    means = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    return {**means, "grain_worst": float(max(r["grain"] for r in rows))}


def run_method(crops: Iterable[EvalCrop], options: RefineOptions, sr3: OnnxDenoiser | None,
               regression: OnnxDenoiser | None, scale: int) -> tuple[list[np.ndarray], float]:
    """Outputs for every crop and the mean seconds per crop; for the "onepass" method ``regression`` is the
    one-pass model."""
    outputs, start = [], time.perf_counter()
    onepass = regression if options.method == "onepass" else None
    regression = None if onepass is not None else regression
    for crop in crops:
        outputs.append(run_pipeline(crop.lr, options, sr3, regression, scale=scale, onepass=onepass).image)
    return outputs, (time.perf_counter() - start) / max(1, len(outputs))


def score_seeds(crops: Sequence[EvalCrop], options: RefineOptions, sr3: OnnxDenoiser | None,
                regression: OnnxDenoiser | None, scale: int, seeds: Sequence[int],
                ) -> tuple[dict[str, float], list[np.ndarray]]:
    """Scores averaged over crops and seeds, with each metric's spread over the seeds (``<key>_seed_std``).

    Returns the scores and the first seed's outputs (for comparison images).
    """
    per_seed, first = [], []
    for i, seed in enumerate(seeds):
        outputs, seconds = run_method(crops, replace(options, seed=seed), sr3, regression, scale)
        per_seed.append({**score(outputs, crops, scale), "seconds_per_crop": seconds})
        if i == 0:
            first = outputs
    keys = per_seed[0].keys()
    mean = {k: float(np.mean([row[k] for row in per_seed])) for k in keys}
    if len(per_seed) > 1:
        mean.update({f"{k}_seed_std": float(np.std([row[k] for row in per_seed])) for k in PEOPLE_METRICS})
    mean["seeds"] = float(len(per_seed))
    return mean, first
