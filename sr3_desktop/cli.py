"""The headless command line: ``python -m sr3_desktop upscale ...`` and ``... models``.

A thin argparse front for ``core.pipeline``; no Qt. A bad file in a batch is reported and
skipped; a user never sees a traceback (unexpected errors go to a log file instead).
Exit codes: 0 all written, 1 a file or the set-up failed, 2 usage or unexpected error, 130 Ctrl+C.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

import numpy as np

from sr3_desktop import __version__
from sr3_desktop.core.denoiser import DEVICES, OnnxDenoiser, get_denoiser
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio import (
    SAVE_FORMATS,
    SUPPORTED_EXTENSIONS,
    cleanup_stale_temp_files,
    load_image,
    save_image,
    upscale_alpha,
)
from sr3_desktop.core.model_card import ModelCard
from sr3_desktop.core.models import ModelEntry, data_dir, default_model, resolve_model, scan_models, user_models_dir
from sr3_desktop.core.pipeline import METHODS, RefineOptions, RefineResult, RefineStep, refine

COMMANDS = ("upscale", "models")
EXIT_OK, EXIT_FAILED, EXIT_UNEXPECTED, EXIT_INTERRUPTED = 0, 1, 2, 130
UNCERTAINTY_GAIN = 4.0
"""Uncertainty images show 4 x the per-pixel std: white means a std of 0.25 or more."""
DEFAULT_BICUBIC_SCALE = 4


# --- arguments -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sr3_desktop", description="SR3 Desktop: super-resolution "
                                     "by iterative refinement (run with no arguments to open the window).")
    parser.add_argument("--version", action="version", version=f"SR3 Desktop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{upscale,models}")
    up = commands.add_parser("upscale", help="upscale images or folders of images")
    up.add_argument("images", nargs="+", metavar="IMG", help="image files, or folders (searched recursively)")
    out = up.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", type=Path, metavar="FILE", help="output file (one input only)")
    out.add_argument("--out-dir", type=Path, metavar="DIR", help="output folder: DIR/<input stem>.<format>")
    up.add_argument("--method", choices=METHODS, default="sr3", help="sr3 (default), regression or bicubic")
    up.add_argument("--model", metavar="NAME|PATH", help="installed model name or .onnx path (default: bundled)")
    steps = up.add_mutually_exclusive_group()
    steps.add_argument("--preset", metavar="NAME", help="fast, balanced or quality (default: the model's choice)")
    steps.add_argument("--steps", type=int, metavar="N", help="number of refinement steps (overrides the preset)")
    up.add_argument("--strength", type=float, metavar="S", help="start strength in (0, 1]; < 1 refines a noised "
                    "bicubic or regression estimate")
    up.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    up.add_argument("--samples", type=int, default=1, metavar="K", help="average K seeds and also write "
                    "<stem>_uncertainty.png (per-pixel std)")
    up.add_argument("--tile", type=int, metavar="PX", help="tile size in output pixels (default: automatic)")
    up.add_argument("--device", choices=DEVICES, default="auto", help="execution device (default auto)")
    up.add_argument("--format", choices=SAVE_FORMATS, help="output format (default png, or -o's extension)")
    up.add_argument("--overwrite", action="store_true", help="replace existing outputs instead of adding ' (1)'")
    up.add_argument("--quiet", action="store_true", help="no progress bar or notes; errors are still shown")
    commands.add_parser("models", help="list bundled and imported models with their cards")
    return parser


@dataclass
class Job:
    """One input and where its output goes."""

    source: Path
    target: Path


@dataclass
class Outcome:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    unexpected: int = 0


# --- progress ------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr: name, bar, step i/N, it/s, ETA."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream, self.quiet = stream, quiet
        self.interactive = stream.isatty()
        self._started = 0.0
        self._last_print = 0.0
        self.name = ""

    def start(self, name: str) -> None:
        self.name, self._started, self._last_print = name, time.perf_counter(), 0.0

    def update(self, step: RefineStep) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        elapsed = max(now - self._started, 1e-9)
        rate = step.step / elapsed
        eta = (step.total - step.step) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * step.step / step.total)
        line = (f"{self.name}  [{'#' * filled}{'.' * (width - filled)}] step {step.step}/{step.total}  "
                f"{rate:.2f} it/s  ETA {_clock(eta)}")
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if step.step == step.total else ""))
            self.stream.flush()
        elif step.step == step.total or now - self._last_print >= 5.0:
            self.stream.write(line + "\n")
            self._last_print = now

    def abandon(self) -> None:
        if self.interactive and not self.quiet:
            self.stream.write("\n")


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


# --- inputs and outputs --------------------------------------------------------------------------
def _is_image(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_EXTENSIONS and not path.name.startswith(".")


def _walk(folder: Path, skip: Path | None) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.is_file() and _is_image(path):
            found.append(path)
    return found


def output_format(args: argparse.Namespace) -> str:
    """--format, else -o's extension, else png."""
    suffix = args.output.suffix.lower().lstrip(".") if args.output is not None else ""
    aliases = {"jpeg": "jpg", "tif": "tiff"}
    from_name = aliases.get(suffix, suffix)
    if args.format:
        if from_name and from_name in SAVE_FORMATS and from_name != args.format:
            raise SR3Error(f"the output name {args.output.name} says {from_name} but --format says {args.format}")
        return str(args.format)
    if args.output is None:
        return "png"
    if from_name not in SAVE_FORMATS:
        raise SR3Error(f"cannot tell the format from {args.output.name}; use one of "
                       f"{', '.join(SAVE_FORMATS)} as its extension or add --format")
    return from_name


def plan_jobs(args: argparse.Namespace, fmt: str, outcome: Outcome) -> list[Job]:
    """Inputs expanded (folders recursively) with their output paths; missing inputs fail."""
    if args.output is not None:
        if len(args.images) != 1 or Path(args.images[0]).is_dir():
            raise SR3Error("-o FILE takes exactly one input image; use --out-dir DIR for several")
        target = args.output if args.format is None or args.output.suffix else args.output.with_suffix(f".{fmt}")
        return [Job(Path(args.images[0]), target)]
    out_dir: Path = args.out_dir
    skip = out_dir.resolve()
    jobs = []
    for raw in args.images:
        item = Path(raw)
        if item.is_dir():
            for path in _walk(item, skip):
                jobs.append(Job(path, out_dir / path.relative_to(item).with_suffix(f".{fmt}")))
        elif item.exists():
            jobs.append(Job(item, out_dir / f"{item.stem}.{fmt}"))
        else:
            outcome.failed.append((item, "file not found"))
    return jobs


# --- models --------------------------------------------------------------------------------------
@dataclass
class Models:
    sr3: OnnxDenoiser | None = None
    regression: OnnxDenoiser | None = None
    scale: int | None = None


def _entry(name: str | None, kind: str) -> ModelEntry:
    if name:
        return resolve_model(name, kind)
    entry = default_model(kind)
    if entry is None:
        raise SR3Error(f"no {kind} model is installed; pass --model PATH to an exported .onnx file, "
                       "or use --method bicubic")
    return entry


def load_models(args: argparse.Namespace) -> Models:
    if args.method == "bicubic":
        if args.model:
            return Models(scale=resolve_model(args.model).card.scale)
        entry = default_model("sr3") or default_model("regression")
        return Models(scale=entry.card.scale if entry else DEFAULT_BICUBIC_SCALE)
    if args.method == "regression":
        return Models(regression=get_denoiser(_entry(args.model, "regression").path, args.device))
    sr3 = get_denoiser(_entry(args.model, "sr3").path, args.device)
    preset = sr3.card.preset(args.preset or sr3.card.default_preset)
    regression = None
    if preset.start == "regression" and (args.strength is None or args.strength < 1.0):
        entry = default_model("regression")
        if entry is not None and entry.card.scale == sr3.card.scale:
            regression = get_denoiser(entry.path, args.device)
    return Models(sr3=sr3, regression=regression)


# --- the upscale command -------------------------------------------------------------------------
def _uncertainty_rgb(std: np.ndarray) -> np.ndarray:
    gray = np.clip(std * UNCERTAINTY_GAIN, 0.0, 1.0).astype(np.float32)
    return np.repeat(gray[:, :, None], 3, axis=2)


def upscale_one(job: Job, args: argparse.Namespace, models: Models, fmt: str, protected: list[Path],
                progress: Progress, err: TextIO) -> list[Path]:
    loaded = load_image(job.source)
    for notice in loaded.notices:
        _note(err, args, f"{job.source.name}: {notice}")
    options = RefineOptions(method=args.method, preset=args.preset, steps=args.steps, strength=args.strength,
                            seed=args.seed, samples=args.samples, tile=args.tile, preview_every=1)
    progress.start(job.source.name)
    result: RefineResult | None = None
    steps = refine(loaded.rgb, options, models.sr3, models.regression, models.scale)
    try:
        for step in steps:
            progress.update(step)
            result = step.result or result
    except BaseException:
        progress.abandon()
        raise
    finally:
        steps.close()
    assert result is not None
    for note in result.notes:
        _note(err, args, f"{job.source.name}: {note}")
    scale = result.image.shape[0] // loaded.rgb.shape[0]
    alpha = upscale_alpha(loaded.alpha, scale) if loaded.alpha is not None else None
    try:
        job.target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SR3Error(f"cannot create the folder {job.target.parent}: {error.strerror or error}") from None
    written = [save_image(job.target, result.image, alpha=alpha, source=loaded, fmt=fmt, overwrite=args.overwrite,
                          protected=protected)]
    if result.uncertainty is not None:
        target = job.target.with_name(f"{job.target.stem}_uncertainty.png")
        written.append(save_image(target, _uncertainty_rgb(result.uncertainty), fmt="png",
                                  overwrite=args.overwrite, protected=protected))
    return written


def _note(err: TextIO, args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        err.write(f"note: {text}\n")


def log_path() -> Path:
    return data_dir() / "logs" / "cli.log"


def _log_unexpected(context: str) -> Path | None:
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(f"--- {datetime.now().isoformat(timespec='seconds')} SR3 Desktop {__version__}: {context}\n")
            log.write(traceback.format_exc())
        return path
    except OSError:
        return None


def _unexpected_message(what: str, error: BaseException) -> str:
    where = _log_unexpected(what)
    detail = f"details were written to {where}" if where else "no log file could be written"
    return f"unexpected problem with {what} ({type(error).__name__}); {detail}"


def run_upscale(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    outcome = Outcome()
    fmt = output_format(args)
    jobs = plan_jobs(args, fmt, outcome)
    for folder in {job.target.parent for job in jobs}:
        cleanup_stale_temp_files(folder)
    models = load_models(args) if jobs else Models()
    for model in (models.sr3, models.regression):
        if model is not None and model.fallback_note:
            _note(err, args, model.fallback_note)
    if models.sr3 is not None and not args.quiet:
        err.write(f"using {models.sr3.describe()}"
                  + (f" (start estimates from {models.regression.card.name})" if models.regression else "") + "\n")
    protected = [job.source for job in jobs]
    progress = Progress(err, args.quiet)
    for job in jobs:
        try:
            for path in upscale_one(job, args, models, fmt, protected, progress, err):
                outcome.written.append(path)
                out.write(f"{path}\n")
                out.flush()
        except SR3Error as error:
            outcome.failed.append((job.source, str(error)))
            err.write(f"error: {job.source}: {error}\n")
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # a bug: keep the traceback out of the user's face, but keep it
            outcome.unexpected += 1
            message = _unexpected_message(str(job.source), error)
            outcome.failed.append((job.source, message))
            err.write(f"error: {job.source}: {message}\n")
    return _summary(outcome, args, err)


def _summary(outcome: Outcome, args: argparse.Namespace, err: TextIO) -> int:
    if not outcome.written and not outcome.failed:
        err.write("error: no images found in the inputs\n")
        return EXIT_FAILED
    if not args.quiet or outcome.failed:
        images = len([p for p in outcome.written if not p.stem.endswith("_uncertainty")])
        err.write(f"done: {images} written, {len(outcome.failed)} failed\n")
        for path, reason in outcome.failed:
            err.write(f"  failed: {path}: {reason}\n")
    if outcome.unexpected:
        return EXIT_UNEXPECTED
    return EXIT_FAILED if outcome.failed else EXIT_OK


# --- the models command --------------------------------------------------------------------------
def describe_card(card: ModelCard) -> list[str]:
    lines = [f"  {card.kind}, {card.scale}x, size multiple {card.size_multiple}"]
    if card.kind == "sr3":
        lines[0] += f", predicts {card.prediction}, target {card.target}, noise level = {card.noise_conditioning}"
        for name in card.preset_names():
            p = card.preset(name)
            start = "noise" if p.start == "noise" else f"noised {p.start} @ strength {p.strength:g}"
            sampler = p.sampler + (f" eta={p.eta:g}" if p.sampler == "ddim" else "")
            marker = " (default)" if name == card.default_preset else ""
            lines.append(f"  preset {name}{marker}: {p.steps} steps, {sampler}, from {start}, "
                         f"back-projection {p.back_projection}")
    if card.description:
        lines.append(f"  {card.description}")
    if card.training:
        shown = ", ".join(f"{k}={v}" for k, v in card.training.items() if isinstance(v, str | int | float))
        if shown:
            lines.append(f"  training: {shown}")
    if card.metrics:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in card.metrics.items()
                          if isinstance(v, str | int | float))
        if shown:
            lines.append(f"  metrics: {shown}")
    return lines


def run_models(out: TextIO, err: TextIO) -> int:
    scan = scan_models()
    for warning in scan.warnings:
        err.write(f"warning: {warning}\n")
    if not scan.entries:
        out.write(f"no models installed (imported models go in {user_models_dir()})\n")
        return EXIT_OK
    for entry in scan.entries:
        origin = "bundled" if entry.bundled else "imported"
        out.write(f"{entry.name}  [{origin}]  {entry.path}\n")
        for line in describe_card(entry.card):
            out.write(line + "\n")
    return EXIT_OK


# --- entry point ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Console entry point; ``sr3-upscale IMG ...`` works without the ``upscale`` word."""
    out, err = out or sys.stdout, err or sys.stderr
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] not in COMMANDS and not arguments[0].startswith("-"):
        arguments.insert(0, "upscale")
    try:
        args = build_parser().parse_args(arguments)
    except SystemExit as stop:  # argparse already printed its usage message
        return int(stop.code or 0) if not isinstance(stop.code, str) else EXIT_UNEXPECTED
    try:
        if args.command == "models":
            return run_models(out, err)
        return run_upscale(args, out, err)
    except SR3Error as error:
        err.write(f"error: {error}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.write("\ninterrupted: no partial files were left behind\n")
        return EXIT_INTERRUPTED
    except Exception as error:
        err.write(f"error: {_unexpected_message(args.command, error)}\n")
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
