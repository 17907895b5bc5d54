"""Batch: plan outputs for files and folders (structure kept), then refine and save them one by one."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from sr3_desktop.core.denoiser import OnnxDenoiser, get_denoiser
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio import (
    SUPPORTED_EXTENSIONS,
    TEMP_PREFIX,
    check_output_size,
    load_image,
    save_image,
    upscale_alpha,
)
from sr3_desktop.core.pipeline import RefineOptions, RefineResult, refine
from sr3_desktop.qt.state import BatchItem
from sr3_desktop.qt.views.progress import format_duration

log = logging.getLogger(__name__)
BATCH_PROGRESS_EVERY = 4


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_EXTENSIONS and not path.name.startswith((".", TEMP_PREFIX))


def plan_batch(paths: list[Path], output_folder: Path, fmt: str) -> list[BatchItem]:
    """One item per image: loose files go to ``output_folder/<stem>.<fmt>``, a folder's images to
    ``output_folder/<folder name>/<path inside the folder>`` with the extension replaced."""
    items: list[BatchItem] = []
    planned: set[Path] = set()
    output_folder = output_folder.expanduser()
    out_resolved = output_folder.resolve()
    for path in paths:
        path = Path(path).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p)
                           and not _inside(p.resolve(), out_resolved) and not _hidden(p.relative_to(path)))
            for file in files:
                relative = file.relative_to(path)
                label = str(Path(path.name) / relative)
                target = output_folder / path.name / relative.with_suffix(f".{fmt}")
                items.append(_item(file, target, label, planned))
        elif path.is_file():
            items.append(_item(path, output_folder / f"{path.stem}.{fmt}", path.name, planned))
    return items


def _item(source: Path, target: Path, label: str, planned: set[Path]) -> BatchItem:
    if target in planned:  # a.png and a.jpg in one folder: keep both
        target = target.with_name(f"{target.stem}_{source.suffix.lstrip('.').lower()}{target.suffix}")
    planned.add(target)
    return BatchItem(source=source, output=target, label=label)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


@dataclass(frozen=True)
class BatchJob:
    generation: int
    items: list[BatchItem]
    options: RefineOptions
    sr3_model: Path
    regression_model: Path | None
    device: str
    fmt: str


class BatchWorker(QObject):
    """Refines and saves each item; skips existing outputs, lists errors and goes on."""

    engine_ready = Signal(int, object, object)  # generation, providers, fallback note
    item_changed = Signal(int, int, object)  # generation, index, BatchItem
    progress = Signal(int, int, int)  # generation, step, total (of the current item)
    finished = Signal(int, bool, str)  # generation, cancelled, summary

    def __init__(self, job: BatchJob) -> None:
        super().__init__()
        self.job = job
        self._abort = threading.Event()

    def abort(self) -> None:
        self._abort.set()

    def run(self) -> None:
        job, started = self.job, time.perf_counter()
        try:
            sr3 = get_denoiser(job.sr3_model, job.device)
            regression = get_denoiser(job.regression_model, job.device) if job.regression_model else None
            self.engine_ready.emit(job.generation, list(sr3.providers), sr3.fallback_note)
        except SR3Error as err:
            for index, item in enumerate(job.items):
                self._set(index, item, "error", str(err))
            self.finished.emit(job.generation, False, f"The batch could not start: {err}")
            return
        except Exception as err:
            log.exception("batch could not start")
            self.finished.emit(job.generation, False, f"The batch could not start: {err}")
            return
        for index, item in enumerate(job.items):
            if self._abort.is_set():
                self._set(index, item, "cancelled", "")
                continue
            if item.output.exists():
                self._set(index, item, "skipped", f"{item.output.name} already exists")
                continue
            self._set(index, item, "running", "")
            try:
                result, written = self._process(item, sr3, regression)
            except SR3Error as err:
                self._set(index, item, "error", str(err))
                continue
            except Exception as err:  # a bug on one file must not stop the others
                log.exception("batch item %s failed", item.source)
                self._set(index, item, "error", f"Unexpected error: {err} (details in the log file)")
                continue
            if result is None:
                self._set(index, item, "cancelled", "")
                continue
            notes = "; ".join(result.notes)
            self._set(index, item, "done", f"{written}  ({result.seconds:.1f} s){'  · ' + notes if notes else ''}")
        self.finished.emit(job.generation, self._abort.is_set(), summary(job.items, time.perf_counter() - started))

    def _process(self, item: BatchItem, sr3: OnnxDenoiser,
                 regression: OnnxDenoiser | None) -> tuple[RefineResult | None, Path | None]:
        job = self.job
        image = load_image(item.source)
        scale = sr3.card.scale
        check_output_size(image.size[0] * scale, image.size[1] * scale)
        result: RefineResult | None = None
        # No preview is shown in a batch: a step every few keeps the progress bar moving cheaply.
        steps = refine(image.rgb, replace(job.options, preview_every=BATCH_PROGRESS_EVERY), sr3, regression,
                       should_stop=self._abort.is_set)
        try:
            for step in steps:
                if self._abort.is_set():
                    return None, None
                self.progress.emit(job.generation, step.step, step.total)
                result = step.result or result
        finally:
            steps.close()
        if result is None:
            return None, None
        item.output.parent.mkdir(parents=True, exist_ok=True)
        alpha = upscale_alpha(image.alpha, scale) if image.alpha is not None else None
        written = save_image(item.output, result.image, alpha=alpha, source=image, fmt=job.fmt,
                             protected=[item.source])
        return result, written

    def _set(self, index: int, item: BatchItem, status: str, message: str) -> None:
        item.status, item.message = status, message
        self.item_changed.emit(self.job.generation, index, item)


def summary(items: list[BatchItem], seconds: float) -> str:
    counts = {s: sum(1 for i in items if i.status == s) for s in ("done", "skipped", "error", "cancelled")}
    parts = [f"{counts['done']} done", f"{counts['skipped']} skipped (output exists)", f"{counts['error']} failed"]
    if counts["cancelled"]:
        parts.append(f"{counts['cancelled']} cancelled")
    return f"Batch finished in {format_duration(seconds)}: " + ", ".join(parts) + "."
