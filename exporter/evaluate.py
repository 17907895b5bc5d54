"""`python -m exporter evaluate`: metrics of an exported model on LR/HR crops, bicubic alongside.

Metrics (sr3_desktop.core.metrics): PSNR-Y and SSIM-Y with `scale` pixels shaved, the paper's
consistency (MSE of the bicubic-downsampled output against the LR, x1e-5), sharpness (Sobel
magnitude ratio against HR) and mean colour shift (0-255).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sr3_desktop.core import metrics
from sr3_desktop.core.denoiser import OnnxDenoiser
from sr3_desktop.core.pipeline import RefineOptions
from sr3_desktop.core.pipeline import run as run_pipeline
from sr3_desktop.core.resample import downscale

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


@dataclass(frozen=True)
class EvalCrop:
    """One validation pair: HR crop and its antialiased bicubic LR (as in training)."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


def find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_crops(folder: Path, crop: int, scale: int, per_image: int = 2, max_images: int | None = None,
               seed: int = 0) -> list[EvalCrop]:
    """Deterministic crops: the centre crop, then seeded random crops, per image."""
    if crop % scale:
        raise SystemExit(f"--crop {crop} must be a multiple of the model's scale {scale}")
    paths = find_images(folder)[:max_images]
    if not paths:
        raise SystemExit(f"no images found under {folder}")
    rng = np.random.default_rng(seed)
    crops: list[EvalCrop] = []
    for path in paths:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        h, w = rgb.shape[:2]
        if min(h, w) < crop:
            continue
        corners = [((h - crop) // 2, (w - crop) // 2)]
        for _ in range(per_image - 1):
            corners.append((int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))))
        for k, (y, x) in enumerate(corners):
            hr = rgb[y : y + crop, x : x + crop]
            crops.append(EvalCrop(f"{path.stem}#{k}", hr, np.clip(downscale(hr, scale), 0.0, 1.0)))
    return crops


def score(outputs: Sequence[np.ndarray], crops: Sequence[EvalCrop], scale: int) -> dict[str, float]:
    """Mean of every metric over the crops."""
    rows = [metrics.evaluate_pair(out, c.hr, c.lr, scale) for out, c in zip(outputs, crops, strict=True)]
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def run_method(crops: Iterable[EvalCrop], options: RefineOptions, sr3: OnnxDenoiser | None,
               regression: OnnxDenoiser | None, scale: int) -> tuple[list[np.ndarray], float]:
    """Outputs for every crop and the mean seconds per crop."""
    outputs, start = [], time.perf_counter()
    for crop in crops:
        outputs.append(run_pipeline(crop.lr, options, sr3, regression, scale=scale).image)
    n = max(1, len(outputs))
    return outputs, (time.perf_counter() - start) / n


def comparison_png(path: Path, crops: Sequence[EvalCrop], columns: dict[str, Sequence[np.ndarray]],
                   scale: int, rows: int = 3) -> None:
    """LR (nearest) | each method | HR, for the first `rows` crops."""
    tiles = []
    for i, crop in enumerate(crops[:rows]):
        lr_nearest = np.repeat(np.repeat(crop.lr, scale, axis=0), scale, axis=1)
        row = [lr_nearest, *[col[i] for col in columns.values()], crop.hr]
        tiles.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=1.0) for t in row], axis=1))
    grid = np.concatenate(tiles, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
    labels = ["LR (nearest)", *columns, "HR"]
    path.with_suffix(".txt").write_text("columns: " + " | ".join(labels) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="exported .onnx model (SR3 or regression)")
    parser.add_argument("--data", type=Path, required=True, help="folder of HR photos (searched recursively)")
    parser.add_argument("--regression", type=Path, help="regression .onnx: scored alongside, and used by presets "
                        "that start from the regression output")
    parser.add_argument("--preset", help="SR3 preset to evaluate (default: every preset in the card)")
    parser.add_argument("--steps", type=int, help="override the preset's step count")
    parser.add_argument("--strength", type=float, help="override the preset's start strength")
    parser.add_argument("--crop", type=int, default=256, help="HR crop size in pixels (default 256 = 64->256 at 4x)")
    parser.add_argument("--crops-per-image", type=int, default=2, help="crops per image: centre + random (default 2)")
    parser.add_argument("--max-images", type=int, help="use at most this many images")
    parser.add_argument("--seed", type=int, default=0, help="seed for crops and sampling")
    parser.add_argument("--device", default="cpu", help="auto|cpu|cuda|... (default cpu)")
    parser.add_argument("--out", type=Path, default=Path("evaluation.json"), help="JSON report path")
    parser.add_argument("--png", type=Path, help="comparison PNG path (default: next to --out)")


def run_cli(args: argparse.Namespace) -> int:
    model = OnnxDenoiser(args.model, args.device)
    regression = OnnxDenoiser(args.regression, args.device) if args.regression else None
    card = model.card
    crops = load_crops(args.data, args.crop, card.scale, args.crops_per_image, args.max_images, args.seed)
    print(f"evaluating {card.name} on {len(crops)} crops of {args.crop}px from {args.data}")
    results: dict[str, dict[str, float]] = {}
    columns: dict[str, list[np.ndarray]] = {}

    def add(label: str, options: RefineOptions, sr3: OnnxDenoiser | None, reg: OnnxDenoiser | None) -> None:
        outputs, seconds = run_method(crops, options, sr3, reg, card.scale)
        results[label] = {**score(outputs, crops, card.scale), "seconds_per_crop": seconds}
        columns[label] = outputs
        row = results[label]
        print(f"  {label:<22} PSNR-Y {row['psnr_y']:6.2f}  SSIM-Y {row['ssim_y']:.4f}  consistency "
              f"{row['consistency']:8.3f}  sharpness {row['sharpness']:.3f}  colour shift {row['colour_shift']:.3f}  "
              f"{seconds:.2f}s/crop", flush=True)

    add("bicubic", RefineOptions(method="bicubic"), None, None)
    if card.kind == "regression":
        add("regression", RefineOptions(method="regression"), None, model)
    else:
        if regression is not None:
            add("regression", RefineOptions(method="regression"), None, regression)
        names = [args.preset] if args.preset else card.preset_names()
        for name in names:
            options = RefineOptions(method="sr3", preset=name, steps=args.steps, strength=args.strength, seed=args.seed)
            add(f"sr3-{name}", options, model, regression)
    for label, row in results.items():
        if label != "bicubic":
            row["psnr_y_gain_over_bicubic"] = row["psnr_y"] - results["bicubic"]["psnr_y"]
    report = {
        "model": card.name, "kind": card.kind, "scale": card.scale, "data": str(args.data.name),
        "crop": args.crop, "crops": len(crops), "seed": args.seed, "results": results,
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    png = args.png or args.out.with_suffix(".png")
    comparison_png(png, crops, columns, card.scale)
    print(f"wrote {args.out} and {png}")
    return 0


run = run_cli  # the exporter's dispatcher calls `run(args)`
