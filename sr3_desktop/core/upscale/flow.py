"""The one upscale flow, without Qt: find images, plan outputs, choose models, and run ONE item.

The CLI, the app (single run and batch) and the exporter's evaluation share it, so each of these
has one rule:

* **Finding images**: the loader's accepted suffixes, folders searched recursively, hidden files and
  folders (our temp files among them) left out, and the output folder skipped. EXIF orientation is
  the loader's job (``imageio.load_image``).
* **Formats**: one table (``imageio.formats``): "jpeg", ".JPG" and "jfif" all mean jpg.
* **Output paths**: ``--out-dir DIR`` writes DIR/<path inside the folder>.<format> (a loose file:
  DIR/<stem>.<format>); ``-o FILE`` writes FILE.
* **Existing outputs**: in a folder batch an existing output is complete (every output is published
  atomically, so a file under its final name is whole) and is skipped and reported as skipped;
  ``overwrite`` redoes it. A single ``-o FILE`` that exists is an error unless ``overwrite``.
  Nothing is ever written as "name (1).ext".
* **The start estimate**: which regression model, if any, an SR3 run loads (``regression_for``).
* **The output size**: ``--scale 2|3|4``, ``--width`` or ``--height`` (``OutputSize``): the model runs at
  its own scale and ``refine_image`` resamples its result down (``output_size``).
* **The time estimate**: ``estimate_for`` before a run (from this machine's measured speed), and every
  finished run refreshes that speed (``core.upscale.estimate``).

``upscale_item`` runs load -> refine -> resize alpha -> save for one item, reporting to a small
``Progress`` (chaiNNer's idea: ``aborted()`` and ``set_progress()``), so a caller needs no Qt to
show progress or to cancel.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from sr3_desktop.core.errors import ImageSaveError, SR3Error
from sr3_desktop.core.imageio import (
    DEFAULT_FORMAT,
    SAVE_FORMATS,
    SUPPORTED_EXTENSIONS,
    LoadedImage,
    OutputExistsError,
    OutputFormat,
    format_of_path,
    load_image,
    output_format,
    save_image,
    save_notes,
)
from sr3_desktop.core.upscale import estimate
from sr3_desktop.core.upscale.output_size import (
    OutputSize,
    consistency_of,
    output_alpha,
    resize_result,
    uncertainty_image,
)
from sr3_desktop.core.upscale.pipeline import refine
from sr3_desktop.core.upscale.refine_types import RefineOptions, RefineResult, RefineStep
from sr3_desktop.core.upscale.run_models import Models

UNCERTAINTY_GAIN = 4.0
"""Uncertainty images show 4 x the per-pixel std: white means a std of 0.25 or more."""


# --- finding images ------------------------------------------------------------------------------
def is_image_file(path: Path) -> bool:
    """A file name the loader accepts and that is not hidden (temp files are hidden: ``.sr3tmp-*``)."""
    return path.suffix.lower() in SUPPORTED_EXTENSIONS and not path.name.startswith(".")


def find_images(folder: str | os.PathLike[str], *, skip: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every image under ``folder``, recursively, in a fixed (sorted) order.

    Hidden files and folders are left out, and so is ``skip`` (the output folder) with everything
    in it. Symbolic links to folders are not followed (no loops); links to files are kept.
    Raises ``SR3Error`` when ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise SR3Error(f"folder not found: {root}")
    skipped = Path(skip).resolve() if skip is not None else None
    if skipped is not None and root.resolve().is_relative_to(skipped):
        return []  # the folder is (inside) the output folder
    found: list[Path] = []
    for current, folders, files in os.walk(root):
        here = Path(current)
        folders[:] = [name for name in folders if not name.startswith(".")
                      and (skipped is None or (here / name).resolve() != skipped)]
        found.extend(here / name for name in files if is_image_file(here / name) and (here / name).is_file())
    return sorted(found)


# --- formats and output paths --------------------------------------------------------------------
def choose_format(fmt: str | None, output: Path | None = None) -> str:
    """The output format: ``fmt``, else ``output``'s suffix, else png; a contradiction is an error."""
    named = output_format(fmt) if fmt else None
    if fmt and named is None:
        raise SR3Error(f"unknown output format {fmt!r}; use one of {', '.join(SAVE_FORMATS)}")
    from_name = format_of_path(output) if output is not None else None
    if named is not None:
        if from_name is not None and from_name.name != named.name:
            raise SR3Error(f"the output name {output.name if output else ''} says {from_name.name} "
                           f"but --format says {named.name}")
        return named.name
    if output is None:
        return DEFAULT_FORMAT
    if from_name is None:
        raise SR3Error(f"cannot tell the format from {output.name}; use one of "
                       f"{', '.join(SAVE_FORMATS)} as its extension or add --format")
    return from_name.name


@dataclass(frozen=True)
class Item:
    """One input and where its output goes."""

    source: Path
    target: Path
    label: str
    """The input as a user knows it: its path inside the given folder, or its file name."""

    @property
    def uncertainty_target(self) -> Path:
        """Where the per-pixel std of K samples goes: <stem>_uncertainty.png next to the output."""
        return self.target.with_name(f"{self.target.stem}_uncertainty.png")


@dataclass(frozen=True)
class Plan:
    """The items of one run, the inputs that do not exist, and whether it is a single ``-o FILE``."""

    items: tuple[Item, ...]
    missing: tuple[Path, ...] = ()
    single: bool = False
    """A single -o FILE: an existing output is an error (not skipped) unless overwrite."""


def plan_outputs(inputs: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str], fmt: str, *,
                 nest_folders: bool = False) -> Plan:
    """Items for files and folders written into ``out_dir`` as <path inside the folder>.<fmt>.

    A loose file goes to out_dir/<stem>.<fmt>. With ``nest_folders`` a folder's images go under
    out_dir/<folder name>/ (the app's batch keeps the dropped folder's name). The output folder is
    never searched. Two inputs that would share an output name (a.png and a.jpg) keep both: the
    later one becomes <stem>_<its suffix>.<fmt>. An input named twice is planned once.
    """
    kind = _known_format(fmt)
    out = Path(out_dir).expanduser()
    items: list[Item] = []
    missing: list[Path] = []
    planned: set[Path] = set()
    sources: set[Path] = set()

    def add(source: Path, relative: Path, label: str) -> None:
        resolved = source.resolve()
        if resolved in sources:
            return
        sources.add(resolved)
        target = out / relative.with_suffix(kind.suffix)
        if target in planned:
            target = target.with_name(f"{target.stem}_{source.suffix.lstrip('.').lower()}{target.suffix}")
        planned.add(target)
        items.append(Item(source, target, label))

    for raw in inputs:
        given = Path(raw).expanduser()
        if given.is_dir():
            base = Path(given.resolve().name) if nest_folders else Path()
            for path in find_images(given, skip=out):
                inside = path.relative_to(given)
                add(path, base / inside, str(base / inside))
        elif given.is_file():
            add(given, Path(given.stem), given.name)
        else:
            missing.append(given)
    return Plan(tuple(items), tuple(missing))


def plan_single(source: str | os.PathLike[str], output: str | os.PathLike[str], fmt: str | None = None) -> Plan:
    """The plan of ``-o FILE``: one input, one output. A FILE without a suffix gets the format's."""
    given, target = Path(source).expanduser(), Path(output).expanduser()
    if given.is_dir():
        raise SR3Error("-o FILE takes exactly one input image; use --out-dir DIR for a folder")
    kind = _known_format(choose_format(fmt, target))
    if not target.suffix:
        target = target.with_suffix(kind.suffix)
    if not given.exists():
        return Plan((), (given,), single=True)
    return Plan((Item(given, target, given.name),), single=True)


def _known_format(fmt: str) -> OutputFormat:
    found = output_format(fmt)
    if found is None:
        raise SR3Error(f"unknown output format {fmt!r}; use one of {', '.join(SAVE_FORMATS)}")
    return found


# --- existing outputs ----------------------------------------------------------------------------
def skip_reason(item: Item, *, overwrite: bool, single: bool) -> str | None:
    """The one rule for existing outputs: None means "make it", a string says why it is skipped.

    A single -o FILE that exists raises ``OutputExistsError`` unless ``overwrite``; a folder under
    the output's name is always an error.
    """
    target = item.target
    if target.is_dir():
        raise ImageSaveError(f"Cannot save {target.name}: a folder with that name exists ({target}).")
    if not os.path.lexists(target) or overwrite:
        return None
    if single:
        raise OutputExistsError(f"{target} already exists; pass --overwrite to replace it")
    return f"{target} already exists (pass --overwrite to redo it)"


# --- one item ------------------------------------------------------------------------------------
class Progress(Protocol):
    """How a caller follows and cancels one item (no Qt needed)."""

    def aborted(self) -> bool:
        """True once the caller wants the item stopped (checked between tile batches and steps)."""
        ...

    def started(self, estimate: estimate.RunEstimate) -> None:
        """The image is loaded and the chain starts now; ``estimate`` says how long it should take."""
        ...

    def set_progress(self, step: RefineStep) -> None:
        """Called with every RefineStep the chain yields (the last one carries the result)."""
        ...


class NoProgress:
    """Nobody is watching and nothing cancels."""

    def aborted(self) -> bool:
        return False

    def started(self, estimate: estimate.RunEstimate) -> None:
        return None

    def set_progress(self, step: RefineStep) -> None:
        return None


@dataclass(frozen=True)
class ItemResult:
    """What ``upscale_item`` did with one item."""

    item: Item
    status: Literal["written", "skipped", "cancelled"]
    written: tuple[Path, ...] = ()
    """The files written, the image first (then its uncertainty map)."""
    notes: tuple[str, ...] = ()
    """Loader notices, the pipeline's and the model choice's notes, what the format lost, or why it was skipped."""
    result: RefineResult | None = None
    consistency: float | None = None
    """The paper's consistency of the output with the input, at the output's size (x 1e-5)."""


def native_scale(method: str, models: Models) -> int | None:
    """The scale the method's model runs at (the bicubic method: ``models.scale``, else a model's)."""
    model = models.of(method)
    if model is not None:
        return model.card.scale
    if method == "bicubic":
        return models.scale or next((m.card.scale for m in models.sessions), None)
    return None


def estimate_for(lr_size: tuple[int, int], options: RefineOptions, models: Models) -> estimate.RunEstimate:
    """How long refining a (width, height) input with these sessions should take on their device."""
    scale = native_scale(options.method, models) or 1
    device = models.sessions[0].requested_device if models.sessions else "cpu"
    return estimate.estimate(lr_size, options, models.sr3, models.regression, scale, device)


def refine_image(lr: np.ndarray, options: RefineOptions, models: Models, progress: Progress | None = None,
                 size: OutputSize | None = None) -> RefineResult | None:
    """Run the chain on ``lr`` (HWC [0, 1]) at the model's scale, then resample it to ``size``; None when
    ``progress`` aborted it. The finished run refreshes the remembered speed of its models."""
    watcher = progress or NoProgress()
    native = native_scale(options.method, models)
    target = (size or OutputSize()).resolve(lr.shape[1], lr.shape[0], native) if native else None
    result: RefineResult | None = None
    steps = refine(lr, options, models.sr3, models.regression, models.scale, onepass=models.onepass,
                   should_stop=watcher.aborted)
    try:
        for step in steps:
            if watcher.aborted():
                return None
            watcher.set_progress(step)
            result = step.result or result
    finally:
        steps.close()
    if result is None:
        return None
    if native and options.method != "bicubic":
        _record_speed(lr, options, models, native, result)
    return resize_result(result, *target) if target else result


def _record_speed(lr: np.ndarray, options: RefineOptions, models: Models, scale: int, result: RefineResult) -> None:
    budget = models.of(options.method) or models.sessions[0]
    try:
        work = estimate.plan_work((lr.shape[1], lr.shape[0]), options, models.sr3, models.regression, scale,
                                  budget.budget_pixels)
        estimate.record_run(work, result.seconds)
    except (OSError, SR3Error):
        pass  # a speed that cannot be remembered is measured again next time


def save_result(target: Path, result: RefineResult, loaded: LoadedImage, fmt: str, *, overwrite: bool = False,
                protected: Iterable[str | os.PathLike[str]] = (), uncertainty: Path | None = None) -> tuple[Path, ...]:
    """Put back alpha (resized separately to the output) and metadata and write ``target`` atomically.

    With ``uncertainty`` and K > 1 samples, the uncertainty map is written there first, so an
    existing ``target`` always means a complete item (an uncertainty map without its image is a
    leftover of an interrupted run and is replaced).
    """
    alpha = output_alpha(loaded.alpha, *result.size) if loaded.alpha is not None else None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ImageSaveError(f"cannot create the folder {target.parent}: {error.strerror or error}") from None
    guarded = [loaded.path, *protected]
    written: list[Path] = []
    if uncertainty is not None and result.spread is not None:
        written.append(save_image(uncertainty, uncertainty_image(result.spread, UNCERTAINTY_GAIN), fmt="png",
                                  overwrite=True, protected=guarded))
    image = save_image(target, result.output, alpha=alpha, source=loaded, fmt=fmt, overwrite=overwrite,
                       protected=guarded)
    return (image, *written)


def upscale_item(item: Item, options: RefineOptions, models: Models, fmt: str, *, overwrite: bool = False,
                 single: bool = False, progress: Progress | None = None,
                 protected: Iterable[str | os.PathLike[str]] = (), uncertainty: bool = True,
                 size: OutputSize | None = None) -> ItemResult:
    """Load -> refine -> resize alpha -> save for ONE item, under the existing-output rule.

    ``protected`` are paths never written (the run's other inputs). With ``uncertainty`` and K > 1
    samples the per-pixel std is written as <stem>_uncertainty.png too. ``size`` is the output's
    size (default: the model's scale). Bad input or a model failure raises ``SR3Error`` (its message
    names the file); the caller reports it and goes on.
    """
    reason = skip_reason(item, overwrite=overwrite, single=single)
    if reason is not None:
        return ItemResult(item, "skipped", notes=(reason,))
    loaded = load_image(item.source)
    options = replace(options, input_quality=loaded.jpeg_quality)  # a JPEG input may run the compressed preset
    watcher = progress or NoProgress()
    watcher.started(estimate_for(loaded.size, options, models))
    result = refine_image(loaded.rgb, options, models, watcher, size)
    if result is None:
        return ItemResult(item, "cancelled", notes=tuple(loaded.notices))
    written = save_result(item.target, result, loaded, fmt, overwrite=overwrite, protected=protected,
                          uncertainty=item.uncertainty_target if uncertainty else None)
    notes = (*loaded.notices, *result.notes, *save_notes(fmt, alpha=loaded.alpha, source=loaded))
    return ItemResult(item, "written", written, notes, result, consistency_of(result.output, loaded.rgb))
