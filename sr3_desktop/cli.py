"""The headless command line: ``python -m sr3_desktop upscale ...`` and ``... models``.

A thin argparse front for ``core.upscale.flow`` (finding, planning, the existing-output rule and the
one-item flow live there); no Qt. A bad file in a batch is reported and skipped; an existing
output is skipped and reported (``--overwrite`` redoes it); a user never sees a traceback
(unexpected errors go to a log file instead).
Exit codes: 0 all written, 1 a file or the set-up failed, 2 usage or unexpected error, 130 Ctrl+C.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sr3_desktop import __version__
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio import SAVE_FORMATS, cleanup_stale_temp_files, output_format
from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.denoiser import DEVICES, OnnxDenoiser
from sr3_desktop.core.model_files.folders import data_dir, user_models_dir
from sr3_desktop.core.model_files.registry import import_model, scan_models
from sr3_desktop.core.upscale import estimate, flow
from sr3_desktop.core.upscale.output_size import SCALE_CHOICES, OutputSize
from sr3_desktop.core.upscale.refine_types import METHODS, RefineOptions, RefineStep
from sr3_desktop.core.upscale.run_models import Models, load_models, run_method
from sr3_desktop.core.upscale.self_ensemble import ENSEMBLE_SIZES

COMMANDS = ("upscale", "models")
EXIT_OK, EXIT_FAILED, EXIT_UNEXPECTED, EXIT_INTERRUPTED = 0, 1, 2, 130


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
    up.add_argument("--method", choices=METHODS, default="sr3", help="sr3 (default), regression, bicubic, or onepass "
                    "(a one-pass upscaler from elsewhere; --method regression --model FILE.onnx runs one too)")
    up.add_argument("--model", metavar="NAME|PATH", help="installed model name or .onnx path (default: bundled)")
    steps = up.add_mutually_exclusive_group()
    steps.add_argument("--preset", metavar="NAME", help="fast, balanced or quality (default: the model's choice)")
    steps.add_argument("--steps", type=int, metavar="N", help="number of refinement steps (overrides the preset)")
    up.add_argument("--strength", type=float, metavar="S", help="start strength in (0, 1]; < 1 refines a noised "
                    "bicubic or regression estimate")
    up.add_argument("--detail", type=float, metavar="G", help="SR3's added detail amplified up to G times where the "
                    "preset's texture cap leaves room (< 1 damps it; default: the preset's)")
    up.add_argument("--grain", type=float, metavar="K", help="photo grain where SR3's output is smoother than the "
                    "input's own noise, up to K times that noise (0: none; default: the preset's)")
    up.add_argument("--ensemble", type=int, choices=ENSEMBLE_SIZES, default=1, metavar="K",
                    help="self-ensemble of the regression (or one-pass) network: the mean over K = 2, 4 or 8 flips "
                    "and transposes of the input, at K passes (default 1; 4 gained 0.26 dB on the report crops)")
    up.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    up.add_argument("--samples", type=int, default=1, metavar="K", help="average K seeds and also write "
                    "<stem>_uncertainty.png (per-pixel std)")
    size = up.add_mutually_exclusive_group()
    size.add_argument("--scale", type=int, choices=SCALE_CHOICES, help="output scale (default: the model's, "
                      "4 for the bundled models); the model runs at its own scale, then the result is resampled")
    size.add_argument("--width", type=int, metavar="PX", help="output width in pixels (the aspect ratio is kept)")
    size.add_argument("--height", type=int, metavar="PX", help="output height in pixels (the aspect ratio is kept)")
    up.add_argument("--tile", type=int, metavar="PX", help="tile size in output pixels (default: automatic)")
    up.add_argument("--device", choices=DEVICES, default="auto", help="execution device (default auto)")
    up.add_argument("--format", type=_format_name, choices=SAVE_FORMATS,
                    help="output format (default png, or -o's extension); jpeg, tif ... are understood too")
    up.add_argument("--overwrite", action="store_true", help="redo outputs that exist (default: a folder batch "
                    "skips them, and an existing -o FILE is an error)")
    up.add_argument("--quiet", action="store_true", help="no progress bar or notes; errors are still shown")
    models = commands.add_parser("models", help="list bundled and imported models with their cards")
    actions = models.add_subparsers(dest="models_command", metavar="{import}")
    add = actions.add_parser("import", help="validate an .onnx file and copy it into your models folder (a one-pass "
                             "upscaler without a card gets the card its test run makes)")
    add.add_argument("path", type=Path, metavar="PATH", help="the .onnx file")
    return parser


def _format_name(text: str) -> str:
    """--format's value in the one format table's words ("jpeg" -> "jpg"); unknown words stay for argparse."""
    found = output_format(text)
    return found.name if found is not None else text


@dataclass
class Outcome:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    unexpected: int = 0

    @property
    def images_written(self) -> int:
        return len([p for p in self.written if not p.stem.endswith("_uncertainty")])


# --- progress ------------------------------------------------------------------------------------
class ProgressBar:
    """A one-line progress bar on stderr: name, bar, step i/N, it/s, ETA (a ``flow.Progress``)."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream, self.quiet = stream, quiet
        self.interactive = stream.isatty()
        self._started = 0.0
        self._last_print = 0.0
        self.name = ""

    def start(self, name: str) -> None:
        self.name, self._started, self._last_print = name, time.perf_counter(), 0.0

    def aborted(self) -> bool:
        return False  # Ctrl+C arrives as KeyboardInterrupt

    def started(self, guess: estimate.RunEstimate) -> None:
        """The estimate, on its own line before the progress bar."""
        if self.quiet or not guess.work:
            return
        passes = "; ".join(f"{w.model.card.name}: {w.evaluations} pass{'es' if w.evaluations > 1 else ''} over "
                           f"{w.pixels / 1e6:.1f} MP" for w in guess.work)
        self.stream.write(f"{self.name}: estimated time {guess.text()} ({passes})\n")
        self.stream.flush()
        self._started = time.perf_counter()

    def set_progress(self, step: RefineStep) -> None:
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


# --- the upscale command -------------------------------------------------------------------------
def plan(args: argparse.Namespace, fmt: str) -> flow.Plan:
    """Inputs expanded (folders recursively) with their output paths (core.upscale.flow's rules)."""
    if args.output is not None:
        if len(args.images) != 1:
            raise SR3Error("-o FILE takes exactly one input image; use --out-dir DIR for several")
        return flow.plan_single(args.images[0], args.output, args.format)
    return flow.plan_outputs(args.images, args.out_dir, fmt)


def output_size(args: argparse.Namespace) -> OutputSize:
    """--scale, --width or --height (argparse has made sure there is at most one)."""
    return OutputSize(scale=args.scale, width=args.width, height=args.height)


def refine_options(args: argparse.Namespace) -> RefineOptions:
    return RefineOptions(method=args.method, preset=args.preset, steps=args.steps, strength=args.strength,
                         texture_gain=args.detail, grain=args.grain, seed=args.seed, samples=args.samples,
                         tile=args.tile, preview_every=1, ensemble=args.ensemble)


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
    fmt = flow.choose_format(args.format, args.output)  # --format, else -o's extension, else png
    jobs = plan(args, fmt)
    outcome.failed.extend((path, "file not found") for path in jobs.missing)
    for folder in {item.target.parent for item in jobs.items}:
        cleanup_stale_temp_files(folder)
    options = refine_options(args)
    size = output_size(args)
    # The existing-output rule first: a single -o FILE that exists fails now, and a resumed batch
    # whose outputs all exist loads no model.
    pending = [item for item in jobs.items if flow.skip_reason(item, overwrite=args.overwrite,
                                                                 single=jobs.single) is None]
    models = load_models(args.method, args.model, options, args.device) if pending else Models()
    options = replace(options, method=run_method(args.method, models))
    for model in (models.sr3, models.regression):
        if model is not None and model.fallback_note:
            _note(err, args, model.fallback_note)
    for note in models.notes:
        _note(err, args, note)
    if models.sr3 is not None and not args.quiet:
        err.write(f"using {models.sr3.describe()}"
                  + (f" (start estimates from {models.regression.card.name})" if models.regression else "") + "\n")
    if not args.quiet:
        _calibrate(models, err)
    protected = [item.source for item in jobs.items]
    progress = ProgressBar(err, args.quiet)
    for item in jobs.items:
        try:
            progress.start(item.source.name)
            try:
                done = flow.upscale_item(item, options, models, fmt, overwrite=args.overwrite, single=jobs.single,
                                          progress=progress, protected=protected, size=size)
            except BaseException:
                progress.abandon()
                raise
            _report(done, outcome, args, out, err)
        except SR3Error as error:
            outcome.failed.append((item.source, str(error)))
            err.write(f"error: {item.source}: {error}\n")
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # a bug: keep the traceback out of the user's face, but keep it
            outcome.unexpected += 1
            message = _unexpected_message(str(item.source), error)
            outcome.failed.append((item.source, message))
            err.write(f"error: {item.source}: {message}\n")
    return _summary(outcome, args, err)


def _calibrate(models: Models, err: TextIO) -> None:
    """Measure this machine's speed for a model the first time it runs here (for the estimates)."""
    def announce(model: OnnxDenoiser) -> None:
        err.write(f"note: measuring this computer's speed with {model.card.name} on {model.providers[0]} "
                  "(once, a second or two)\n")

    estimate.ensure_speeds(models.sessions, announce)


def _report(done: flow.ItemResult, outcome: Outcome, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    """stdout gets one line per file written (other tools read it); skips and notes go to stderr."""
    if done.status == "skipped":
        outcome.skipped.append(done.item.target)
        for note in done.notes:
            if not args.quiet:
                err.write(f"skipped: {note}\n")
        return
    for note in done.notes:
        _note(err, args, f"{done.item.source.name}: {note}")
    if done.result is not None and done.consistency is not None:
        width, height = done.result.size
        _note(err, args, f"{done.item.source.name}: {width}x{height}, consistency with the input "
                         f"{done.consistency:.3g} x 1e-5 (MSE of its bicubic downsample)")
    for path in done.written:
        outcome.written.append(path)
        out.write(f"{path}\n")
        out.flush()


def _summary(outcome: Outcome, args: argparse.Namespace, err: TextIO) -> int:
    if not outcome.written and not outcome.failed and not outcome.skipped:
        err.write("error: no images found in the inputs\n")
        return EXIT_FAILED
    if not args.quiet or outcome.failed:
        skipped = f"{len(outcome.skipped)} skipped (output exists), " if outcome.skipped else ""
        err.write(f"done: {outcome.images_written} written, {skipped}{len(outcome.failed)} failed\n")
        for path, reason in outcome.failed:
            err.write(f"  failed: {path}: {reason}\n")
    if outcome.unexpected:
        return EXIT_UNEXPECTED
    return EXIT_FAILED if outcome.failed else EXIT_OK


# --- the models command --------------------------------------------------------------------------
def describe_card(card: ModelCard) -> list[str]:
    lines = [f"  {card.kind}, {card.scale}x, size multiple {card.size_multiple}"]
    if card.kind == "onepass":
        lines[0] += f", input range [{card.value_range[0]:g}, {card.value_range[1]:g}] (found by a test run)"
    if card.kind == "sr3":
        lines[0] += f", predicts {card.prediction}, target {card.target}, noise level = {card.noise_conditioning}"
        for name in card.preset_names():
            p = card.preset(name)
            start = "noise" if p.start == "noise" else f"noised {p.start} @ strength {p.strength:g}"
            sampler = p.sampler + (f" eta={p.eta:g}" if p.sampler == "ddim" else "")
            marker = f" ({role})" if (role := card.preset_role(name)) else ""
            lines.append(f"  preset {name}{marker}: {p.steps} steps, {sampler}, from {start}, "
                         f"back-projection {p.back_projection}" + p.finish_summary())
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


def run_import(path: Path, out: TextIO) -> int:
    """``models import PATH``: the same checks and test run as the app's Models > Import, then an atomic copy."""
    entry = import_model(path)
    out.write(f"imported {entry.name} -> {entry.path}\n")
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
            return run_import(args.path, out) if args.models_command == "import" else run_models(out, err)
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
