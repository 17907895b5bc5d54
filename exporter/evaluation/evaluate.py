"""`python -m exporter evaluate`: an exported model on held-out LR/HR crops, bicubic and regression alongside.

Metrics (sr3_desktop.core.metrics): PSNR-Y and SSIM-Y with `scale` pixels shaved, GMSD, grain,
spectral gap, detail fidelity, the paper's consistency (x1e-5), sharpness and colour shift (0-255).
SR3 presets are scored over several seeds. With --jpeg Q the same crops are scored again with the
LR saved as JPEG at quality Q, the input people really have; bicubic is then upscaled from that JPEG. The JPEG
rows hold the default preset and, where the card has one, its compressed preset: what the app runs on a file
saved at Q <= 90 (``run_models.preset_name``).
The report also checks the default preset against the product's targets (docs/models.md).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from exporter.evaluation.eval_crops import EvalCrop, as_jpeg, load_crops, score_seeds
from exporter.evaluation.targets import Targets
from sr3_desktop.core.imageio.atomic import atomic_file
from sr3_desktop.core.metrics import fine_band
from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.run_models import load_models
from sr3_desktop.core.upscale.self_ensemble import ENSEMBLE_SIZES


def default_targets(results: dict[str, dict[str, float]], default: str) -> dict[str, dict[str, float | bool]]:
    """The default preset's scores against the targets of issue 19 (search_schedule.Targets, the one
    statement of them), relative to regression in the same run."""
    row, reg = results[default], results["regression"]
    missed = Targets().misses(row, reg)
    checks = {  # report key: (the value shown, the target it is judged by)
        "grain_in_0.85_1.2": (row["grain"], "grain"),
        "grain_worst_crop_le_1.5": (row.get("grain_worst", row["grain"]), "grain_worst"),
        "spectral_gap_le_0.45x_regression": (row["spectral_gap"] / reg["spectral_gap"], "spectral_gap"),
        "gmsd_le_1.05x_regression": (row["gmsd"] / reg["gmsd"], "gmsd"),
        "psnr_ge_regression_minus_0.5": (row["psnr_y"] - reg["psnr_y"], "psnr_y"),
        "consistency_le_1": (row["consistency"], "consistency"),
        "colour_shift_le_1": (row["colour_shift"], "colour_shift"),
        "grid_le_1.1x_regression": (row.get("grid", 1.0) / reg.get("grid", 1.0), "grid"),
    }
    return {name: {"value": round(float(v), 4), "met": missed[target] == 0.0} for name, (v, target) in checks.items()}


def detailed_rows(crops: Sequence[EvalCrop], count: int = 4) -> list[int]:
    """The most detailed crop (HR fine-band energy) of each photo, for the ``count`` most detailed photos:
    a figure of flat sky shows neither texture nor grain."""
    best: dict[str, tuple[float, int]] = {}
    for i, crop in enumerate(crops):
        energy = float(np.mean(fine_band(crop.hr.mean(axis=2)) ** 2))
        photo = crop.name.split("#")[0]
        best[photo] = max(best.get(photo, (-1.0, i)), (energy, i))
    return sorted(i for _, i in sorted(best.values(), reverse=True)[:count])


def comparison_png(path: Path, crops: Sequence[EvalCrop], columns: Mapping[str, Sequence[np.ndarray]],
                   scale: int, rows: Sequence[int] | None = None) -> None:
    """LR (nearest) | each method | HR, one row per crop index in ``rows`` (default: ``detailed_rows``)."""
    tiles = []
    for i in [r for r in (detailed_rows(crops) if rows is None else rows) if r < len(crops)]:
        crop = crops[i]
        lr_nearest = np.repeat(np.repeat(crop.lr, scale, axis=0), scale, axis=1)
        row = [lr_nearest, *[col[i] for col in columns.values()], crop.hr]
        tiles.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=1.0) for t in row], axis=1))
    grid = np.concatenate(tiles, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        Image.fromarray((np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)).save(handle, format="PNG")
    labels = ["LR (nearest)", *columns, "HR"]
    path.with_suffix(".txt").write_text("columns: " + " | ".join(labels) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="exported .onnx model (SR3 or regression)")
    parser.add_argument("--data", type=Path, required=True, help="folder of HR photos (searched recursively)")
    parser.add_argument("--regression", type=Path, help="regression .onnx: scored alongside, and the condition or "
                        "start estimate of SR3 models that use one")
    parser.add_argument("--onepass", type=Path, metavar="PEER.onnx",
                        help="a one-pass ONNX upscaler (e.g. Real-ESRGAN; a card-less file is test-run as the app "
                             "does) scored alongside on clean and JPEG inputs, and a column of the PNGs")
    parser.add_argument("--preset", action="append",
                        help="SR3 preset to evaluate; repeat for several (default: every preset in the card)")
    parser.add_argument("--steps", type=int, help="override the preset's step count")
    parser.add_argument("--strength", type=float, help="override the preset's start strength")
    parser.add_argument("--crop", type=int, default=256, help="HR crop size in pixels (default 256 = 64->256 at 4x)")
    parser.add_argument("--crops-per-image", type=int, default=8,
                        help="report crops per image, from a grid of non-overlapping cells (default 8)")
    parser.add_argument("--role", choices=("report", "search", "all"), default="report",
                        help="which cells: report (default), search (the cells search-schedule uses) or all")
    parser.add_argument("--max-images", type=int, help="use at most this many images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops and the first sampling seed")
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds per SR3 preset (default 3)")
    parser.add_argument("--jpeg", type=int, default=75, help="also score LR inputs saved as JPEG at this quality "
                        "(bicubic, regression and the default preset; 0: skip; default 75)")
    parser.add_argument("--ensemble", type=int, choices=ENSEMBLE_SIZES, default=1,
                        help="also score the regression model's self-ensemble of this many flips and transposes, "
                             "alone and as the default preset's anchor (rows 'regression-xK' and "
                             "'sr3-<default>-xK', clean and JPEG; default 1: none)")
    parser.add_argument("--device", default="cpu", help="auto|cpu|cuda|... (default cpu)")
    parser.add_argument("--out", type=Path, default=Path("evaluation.json"), help="JSON report path")
    parser.add_argument("--png", type=Path, help="comparison PNG path (default: next to --out)")


def _methods(card: ModelCard, model: OnnxDenoiser, regression: OnnxDenoiser | None, presets: list[str] | None,
             onepass: OnnxDenoiser | None = None, ensemble: int = 1,
             ) -> list[tuple[str, RefineOptions, OnnxDenoiser | None, OnnxDenoiser | None]]:
    """(label, options, SR3 model, regression or one-pass model) of every method scored; ``ensemble`` > 1 adds
    the regression model's self-ensemble (``regression-x<ensemble>``) and the default preset over it."""
    methods: list[tuple[str, RefineOptions, OnnxDenoiser | None, OnnxDenoiser | None]] = [
        ("bicubic", RefineOptions(method="bicubic"), None, None)]
    if onepass is not None:  # the peer people already use, e.g. Real-ESRGAN, measured in the same run
        methods.append((onepass.card.name, RefineOptions(method="onepass"), None, onepass))
    reference = model if card.kind == "regression" else regression
    if reference is not None:
        methods.append(("regression", RefineOptions(method="regression"), None, reference))
        if ensemble > 1:
            methods.append((f"regression-x{ensemble}", RefineOptions(method="regression", ensemble=ensemble), None,
                            reference))
    if card.kind == "regression":
        return methods
    for name in presets or card.preset_names():
        methods.append((f"sr3-{name}", RefineOptions(method="sr3", preset=name), model, regression))
    if ensemble > 1 and regression is not None:  # the default chain over the ensembled anchor
        methods.append((f"sr3-{card.default_preset}-x{ensemble}",
                        RefineOptions(method="sr3", preset=card.default_preset, ensemble=ensemble), model, regression))
    return methods


def run_cli(args: argparse.Namespace) -> int:
    model = OnnxDenoiser(args.model, args.device)
    regression = OnnxDenoiser(args.regression, args.device) if args.regression else None
    onepass = load_models("onepass", str(args.onepass), RefineOptions(method="onepass"), args.device).onepass \
        if args.onepass else None
    card = model.card
    crops = load_crops(args.data, args.crop, card.scale, args.crops_per_image, args.max_images, args.seed, args.role)
    photos = len({c.name.split("#")[0] for c in crops})
    print(f"evaluating {card.name} on {len(crops)} {args.role} crops of {args.crop}px from {photos} photos "
          f"in {args.data}, {args.seeds} seed(s) per SR3 preset")
    seeds = [args.seed + k for k in range(max(1, args.seeds))]
    default = f"sr3-{card.default_preset}" if card.kind == "sr3" else "regression"
    sets = {"clean": crops, **({f"jpeg{args.jpeg}": as_jpeg(crops, args.jpeg)} if args.jpeg else {})}
    report: dict[str, object] = {
        "model": card.name, "kind": card.kind, "scale": card.scale, "data": str(args.data.name), "role": args.role,
        "crop": args.crop, "crops": len(crops), "photos": photos, "seeds": seeds, "default": default,
        "date": time.strftime("%Y-%m-%d"),
    }
    columns: dict[str, dict[str, list[np.ndarray]]] = {}
    for set_name, set_crops in sets.items():
        results: dict[str, dict[str, float]] = {}
        columns[set_name] = {}
        for label, options, sr3, reg in _methods(card, model, regression, args.preset, onepass, args.ensemble):
            peer = onepass is not None and reg is onepass
            jpeg_rows = ("bicubic", default, f"{default}-x{args.ensemble}", f"sr3-{card.compressed_preset}")
            if set_name != "clean" and label not in jpeg_rows and not label.startswith("regression") and not peer:
                continue
            if label.startswith("sr3-"):
                options = replace(options, steps=args.steps, strength=args.strength)
            stochastic = label.startswith("sr3-")
            row, outputs = score_seeds(set_crops, options, sr3, reg, card.scale, seeds if stochastic else seeds[:1])
            results[label] = row
            columns[set_name][label] = outputs
            print(f"  [{set_name}] {label:<16} PSNR-Y {row['psnr_y']:6.2f}  GMSD {row['gmsd']:.4f}  grain "
                  f"{row['grain']:.2f}  spectral gap {row['spectral_gap']:.3f}  detail {row['detail_fidelity']:.3f}  "
                  f"consistency {row['consistency']:7.3f}  colour {row['colour_shift']:.2f}  "
                  f"{row['seconds_per_crop']:.2f}s/crop", flush=True)
        for label, row in results.items():
            if label != "bicubic":
                row["psnr_y_gain_over_bicubic"] = row["psnr_y"] - results["bicubic"]["psnr_y"]
        report["results" if set_name == "clean" else f"results_{set_name}"] = results
        if set_name == "clean" and card.kind == "sr3" and "regression" in results and default in results:
            report["targets"] = default_targets(results, default)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out) as handle:
        handle.write(json.dumps(report, indent=1).encode())
    png = args.png or args.out.with_suffix(".png")
    comparison_png(png, crops, columns["clean"], card.scale)
    written = [args.out, png]
    if len(sets) > 1:
        jpeg_name = next(name for name in sets if name != "clean")
        jpeg_png = png.with_name(f"{png.stem}-{jpeg_name}.png")
        comparison_png(jpeg_png, sets[jpeg_name], columns[jpeg_name], card.scale)
        written.append(jpeg_png)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


run = run_cli  # the exporter's dispatcher calls `run(args)`
