"""Batch: the core's plan for files and folders (structure kept), then the core's one-item flow for
each image, in a worker thread that reports every item.

Finding images, output names, the existing-output rule and load -> refine -> save are all
``core.upscale.flow``'s; this module only turns them into signals.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from PySide6.QtCore import Signal

from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.upscale import flow
from sr3_desktop.core.upscale.estimate import RunEstimate
from sr3_desktop.core.upscale.output_size import OutputSize
from sr3_desktop.core.upscale.refine_types import RefineOptions, RefineStep
from sr3_desktop.qt.abortable_worker import AbortableWorker, RunSessions
from sr3_desktop.qt.view_data import BatchItem
from sr3_desktop.qt.views.progress_bar import format_duration

log = logging.getLogger(__name__)
BATCH_PROGRESS_EVERY = 4


def plan_batch(paths: list[Path], output_folder: Path, fmt: str) -> list[BatchItem]:
    """One item per image (``core.upscale.flow.plan_outputs``): loose files go to ``output_folder/<stem>.<fmt>``,
    a folder's images to ``output_folder/<folder name>/<path inside the folder>``."""
    plan = flow.plan_outputs(paths, output_folder, fmt, nest_folders=True)
    return [BatchItem(source=i.source, output=i.target, label=i.label) for i in plan.items]


@dataclass(frozen=True)
class BatchJob:
    generation: int
    items: list[BatchItem]
    options: RefineOptions
    sessions: RunSessions
    fmt: str
    notes: tuple[str, ...] = ()
    """What the user should know about the model choice (shown with each result)."""
    size: OutputSize = field(default_factory=OutputSize)
    """The outputs' size (the Scale setting)."""


class _ItemProgress:
    """The core's Progress for one item: cancel on abort, a progress signal every few steps."""

    def __init__(self, worker: BatchWorker) -> None:
        self.worker = worker

    def aborted(self) -> bool:
        return self.worker.aborted

    def started(self, estimate: RunEstimate) -> None:
        return None  # the progress bar's ETA follows the steps

    def set_progress(self, step: RefineStep) -> None:
        self.worker.progress.emit(self.worker.job.generation, step.step, step.total)


class BatchWorker(AbortableWorker):
    """Refines and saves each item; skips existing outputs, lists errors and goes on."""

    item_changed = Signal(int, int, object)  # generation, index, BatchItem
    progress = Signal(int, int, int)  # generation, step, total (of the current item)
    finished = Signal(int, bool, str)  # generation, cancelled, summary

    def __init__(self, job: BatchJob) -> None:
        super().__init__(job.generation)
        self.job = job

    def run(self) -> None:
        job, started = self.job, time.perf_counter()
        try:
            models = self.open_models(job.sessions, job.notes)
        except SR3Error as err:
            for index, item in enumerate(job.items):
                self._set(index, item, "error", str(err))
            self.finished.emit(job.generation, False, f"The batch could not start: {err}")
            return
        except Exception as err:
            log.exception("batch could not start")
            self.finished.emit(job.generation, False, f"The batch could not start: {err}")
            return
        # No preview is shown in a batch: a step every few keeps the progress bar moving cheaply.
        options = replace(job.options, preview_every=BATCH_PROGRESS_EVERY)
        protected = [item.source for item in job.items]
        for index, item in enumerate(job.items):
            if self.aborted:
                self._set(index, item, "cancelled", "")
                continue
            planned = flow.Item(item.source, item.output, item.label)
            if flow.skip_reason(planned, overwrite=False, single=False) is not None:
                self._set(index, item, "skipped", f"{item.output.name} already exists")
                continue
            self._set(index, item, "running", "")
            try:
                done = flow.upscale_item(planned, options, models, job.fmt, progress=_ItemProgress(self),
                                               protected=protected, uncertainty=False, size=job.size)
            except SR3Error as err:
                self._set(index, item, "error", str(err))
                continue
            except Exception as err:  # a bug on one file must not stop the others
                log.exception("batch item %s failed", item.source)
                self._set(index, item, "error", f"Unexpected error: {err} (details in the log file)")
                continue
            if done.status == "skipped":  # it appeared meanwhile
                self._set(index, item, "skipped", f"{item.output.name} already exists")
            elif done.status == "cancelled" or done.result is None:
                self._set(index, item, "cancelled", "")
            else:
                notes = "; ".join((*done.notes, *models.notes))
                self._set(index, item, "done", f"{done.written[0]}  ({done.result.seconds:.1f} s)"
                                               + (f"  · {notes}" if notes else ""))
        self.finished.emit(job.generation, self.aborted, summary(job.items, time.perf_counter() - started))

    def _set(self, index: int, item: BatchItem, status: str, message: str) -> None:
        item.status, item.message = status, message
        self.item_changed.emit(self.job.generation, index, item)


def summary(items: list[BatchItem], seconds: float) -> str:
    counts = {s: sum(1 for i in items if i.status == s) for s in ("done", "skipped", "error", "cancelled")}
    parts = [f"{counts['done']} done", f"{counts['skipped']} skipped (output exists)", f"{counts['error']} failed"]
    if counts["cancelled"]:
        parts.append(f"{counts['cancelled']} cancelled")
    return f"Batch finished in {format_duration(seconds)}: " + ", ".join(parts) + "."
