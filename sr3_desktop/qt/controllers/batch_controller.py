"""Batches: plan files and folders (off the UI thread), run them one by one, report each item.

It depends on :class:`BatchHost`, the little it needs of the app around it, not on the controller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject

from sr3_desktop.qt.batch_worker import BatchJob, BatchWorker, plan_batch
from sr3_desktop.qt.controllers.context import AppContext
from sr3_desktop.qt.controllers.run_plan import RunPlan
from sr3_desktop.qt.controllers.run_slot import RunSlot
from sr3_desktop.qt.view_data import BatchItem
from sr3_desktop.qt.views.progress_bar import ProgressClock


class BatchHost(Protocol):
    """What a batch needs of the app: run plans, and leaving the single image or the batch."""

    def plan(self, compare: bool, size: tuple[int, int] | None = None) -> RunPlan | None:
        """Models and options for a run; None (the user was told why) when none can start."""
        ...

    def forget_image(self) -> None:
        """Drop the single image and what the view showed of it."""
        ...

    def clear(self) -> None:
        """Forget the image or batch and show the drop zone."""
        ...


class BatchController(QObject):
    """A QObject on the UI thread, so the worker's signals reach its methods there (queued)."""

    def __init__(self, ctx: AppContext, slot: RunSlot, host: BatchHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx, self.slot, self.host = ctx, slot, host
        self._clock = ProgressClock()

    @property
    def items(self) -> list[BatchItem]:
        return self.ctx.model.batch.items

    def queue(self, paths: list[Path], run_after: bool = False) -> None:
        """Find the images (off the UI thread); ``planned`` receives the items."""
        model = self.ctx.model
        generation = model.begin_generation()
        model.batch.sources = list(paths)
        model.batch.run_when_planned = run_after
        folder, fmt = model.settings.output_folder(), model.settings.output_format
        self.ctx.view.show_busy("Looking for images…")
        self.ctx.tasks.submit("plan", generation, lambda: (plan_batch(paths, folder, fmt), (str(folder), fmt)))

    def planned(self, _token: int, value: tuple[list[BatchItem], tuple[str, str]]) -> None:
        items, key = value
        model, view, batch = self.ctx.model, self.ctx.view, self.ctx.model.batch
        if not items:
            names = ", ".join(p.name for p in batch.sources[:3])
            self.ctx.report_error("No images found",
                                  f"No supported images (PNG, JPEG, WebP, TIFF, BMP, GIF) in {names}.")
            view.show_status("")
            if model.mode != "single":
                self.host.clear()
            return
        model.mode = "batch"
        batch.items, batch.key = items, key
        self.host.forget_image()  # the single-image state no longer applies
        view.show_batch(items, key[0])
        view.show_status(f"{len(items)} image(s) ready. Press Start batch (Ctrl+Enter).")
        self.ctx.events.batch_ready.emit()
        if batch.run_when_planned:
            batch.run_when_planned = False
            self.run()

    def run(self) -> None:
        model, view, batch = self.ctx.model, self.ctx.view, self.ctx.model.batch
        if self.slot.busy or not batch.sources:
            return
        key = (str(model.settings.output_folder()), model.settings.output_format)
        if key != batch.key:  # the output folder or format changed since planning: plan again
            self.queue(batch.sources, run_after=True)
            return
        plan = self.host.plan(compare=False)
        if plan is None:
            return
        generation = model.begin_generation()
        for index, item in enumerate(batch.items):
            item.status, item.message = "pending", ""
            view.update_batch_item(index, item)
        Path(key[0]).mkdir(parents=True, exist_ok=True)
        job = BatchJob(generation, batch.items, plan.options, plan.sessions(model.settings.device), key[1],
                       size=plan.size)
        worker = BatchWorker(job)
        worker.engine_ready.connect(self._engine_ready)
        worker.item_changed.connect(self._item_changed)
        worker.progress.connect(self._progress)
        worker.finished.connect(self._finished)
        self.slot.launch(worker, f"sr3-batch-{generation}")
        view.set_running(True, batch=True)
        view.show_busy("Loading the model…")

    # --- worker signals (each checks the generation) ---------------------------------------------
    def _engine_ready(self, generation: int, providers: list[str], note: str | None) -> None:
        self.ctx.show_engine(generation, providers, note)  # a slot of this QObject: called on the UI thread

    def _item_changed(self, generation: int, index: int, item: BatchItem) -> None:
        if self.ctx.model.is_current(generation):
            self.ctx.view.update_batch_item(index, item)
            if item.status == "running":
                self._clock = ProgressClock()

    def _progress(self, generation: int, step: int, total: int) -> None:
        if not self.ctx.model.is_current(generation):
            return
        rate = self._clock.rate(step)
        items = self.items
        done = sum(1 for i in items if i.status not in ("pending", "running"))
        label = f"Image {min(done + 1, len(items))}/{len(items)} · step"
        self.ctx.view.show_progress(step, total, rate, ProgressClock.eta(step, total, rate), label)

    def _finished(self, generation: int, cancelled: bool, summary: str) -> None:
        if not self.ctx.model.is_current(generation):
            return
        self.slot.finish()
        view = self.ctx.view
        view.set_running(False, batch=True)
        view.show_batch_summary(summary)
        view.show_status(summary)
        self.ctx.events.batch_finished.emit(summary)
