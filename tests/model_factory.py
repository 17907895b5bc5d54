"""Real exported models for tests: the ``tiny`` preset trained for a few steps, then exported.

``make_tiny_models(out_dir)`` returns (sr3.onnx, regression.onnx). Results are cached per
out_dir (in memory, and on disk when the files are already there), so a session fixture in any
test folder can share one pair. Needs the exporter extra (torch); the models are tiny and
untrained, good for IO, card and pipeline tests, not for image quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_STEPS = 4
_CACHE: dict[Path, tuple[Path, Path]] = {}


def make_photo_folder(folder: Path, count: int = 3, size: tuple[int, int] = (128, 96)) -> Path:
    """A few small colour photos (from scikit-image's bundled data) as PNG files in ``folder``."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket")[:count]:
        path = folder / f"{name}.png"
        if not path.exists():
            Image.fromarray(np.asarray(getattr(data, name)())).resize(size, Image.Resampling.LANCZOS).save(path)
    return folder


def train_tiny(data_dir: Path, run_dir: Path, *extra: str, steps: int = TRAIN_STEPS) -> Path:
    """Train the tiny preset in-process; returns the run directory."""
    from exporter.__main__ import main

    argv = ["train", "--preset", "tiny", "--data", str(data_dir), "--out", str(run_dir), "--threads", "1",
            "--steps", str(steps), *extra]
    if main(argv) != 0:
        raise RuntimeError(f"training failed: {' '.join(argv)}")
    return run_dir


def make_tiny_models(out_dir: Path) -> tuple[Path, Path]:
    """Train and export a tiny SR3 model and a tiny regression model; (sr3 path, regression path)."""
    out_dir = Path(out_dir).resolve()
    if out_dir in _CACHE:
        return _CACHE[out_dir]
    sr3_path, regression_path = out_dir / "tiny-sr3.onnx", out_dir / "tiny-regression.onnx"
    if not (sr3_path.is_file() and regression_path.is_file()):
        from exporter.export.export_onnx import export

        photos = make_photo_folder(out_dir / "photos")
        sr3_run, regression_run = out_dir / "runs" / "sr3", out_dir / "runs" / "regression"
        if not (sr3_run / "checkpoint.pt").is_file():
            train_tiny(photos, sr3_run, "--kind", "sr3")
        if not (regression_run / "checkpoint.pt").is_file():
            train_tiny(photos, regression_run, "--kind", "regression")
        export(sr3_run, sr3_path, name="Tiny SR3 (test)")
        export(regression_run, regression_path, name="Tiny regression (test)")
    _CACHE[out_dir] = (sr3_path, regression_path)
    return sr3_path, regression_path
