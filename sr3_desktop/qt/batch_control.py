"""The batch half of the controller: plan files and folders, run them one by one, report each item."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from sr3_desktop.qt.batch import BatchJob, BatchWorker, plan_batch
from sr3_desktop.qt.state import BatchItem
from sr3_desktop.qt.views.progress import ProgressClock

if TYPE_CHECKING:
    from sr3_desktop.qt.controller import Controller


class BatchControl(QObject):
    """Batch state and flow. It shares the owner's generation counter, worker slot, view and tasks.

    A QObject living on the UI thread, so the worker's signals reach its methods there (queued);
    a plain Python object would have them called on the worker's thread.
    """

    def __init__(self, owner: Controller) -> None:
        super().__init__(owner)
        self.owner = owner
        self.sources: list[Path] = []
        self.items: list[BatchItem] = []
        self.key: tuple[str, str] | None = None
        """(output folder, format) the items were planned for."""
        self.run_when_planned = False
        self._clock = ProgressClock()

    def reset(self) -> None:
        self.sources, self.items, self.key = [], [], None

    def queue(self, paths: list[Path], run_after: bool = False) -> None:
        """Find the images (off the UI thread); ``planned`` receives the items."""
        owner = self.owner
        owner.abandon_run()
        owner.generation += 1
        self.sources = list(paths)
        self.run_when_planned = run_after
        folder, fmt = owner.settings.output_folder(), owner.settings.output_format
        owner.view.show_busy("Looking for images…")
        owner.tasks.submit("plan", owner.generation, lambda: (plan_batch(paths, folder, fmt), (str(folder), fmt)))

    def planned(self, items: list[BatchItem], key: tuple[str, str]) -> None:
        owner, view = self.owner, self.owner.view
        if not items:
            names = ", ".join(p.name for p in self.sources[:3])
            owner.report_error("No images found", f"No supported images (PNG, JPEG, WebP, TIFF, BMP, GIF) in {names}.")
            view.show_status("")
            if owner.mode != "single":
                owner.clear()
            return
        owner.mode = "batch"
        self.items, self.key = items, key
        owner.forget_image()  # the single-image state no longer applies
        view.show_batch(items, key[0])
        view.show_status(f"{len(items)} image(s) ready. Press Start batch (Ctrl+Enter).")
        owner.batch_ready.emit()
        if self.run_when_planned:
            self.run_when_planned = False
            self.run()

    def run(self) -> None:
        owner = self.owner
        if owner.busy or not self.sources:
            return
        key = (str(owner.settings.output_folder()), owner.settings.output_format)
        if key != self.key:  # the output folder or format changed since planning: plan again
            self.queue(self.sources, run_after=True)
            return
        sr3 = owner.require_sr3()
        if sr3 is None:
            return
        options = owner.refine_options(sr3.card, owner.next_seed())
        regression = owner.regression_entry() if owner.starts_from_regression(sr3.card, options) else None
        owner.generation += 1
        for index, item in enumerate(self.items):
            item.status, item.message = "pending", ""
            owner.view.update_batch_item(index, item)
        Path(key[0]).mkdir(parents=True, exist_ok=True)
        job = BatchJob(owner.generation, self.items, options, Path(sr3.path),
                       Path(regression.path) if regression else None, owner.settings.device, key[1])
        worker = BatchWorker(job)
        worker.engine_ready.connect(owner.engine_ready)
        worker.item_changed.connect(self._item_changed)
        worker.progress.connect(self._progress)
        worker.finished.connect(self._finished)
        owner.launch(worker, f"sr3-batch-{owner.generation}")
        owner.view.set_running(True, batch=True)
        owner.view.show_busy("Loading the model…")

    # --- worker signals (each checks the generation) ---------------------------------------------
    def _item_changed(self, generation: int, index: int, item: BatchItem) -> None:
        if generation == self.owner.generation:
            self.owner.view.update_batch_item(index, item)
            if item.status == "running":
                self._clock = ProgressClock()

    def _progress(self, generation: int, step: int, total: int) -> None:
        if generation != self.owner.generation:
            return
        rate = self._clock.rate(step)
        done = sum(1 for i in self.items if i.status not in ("pending", "running"))
        label = f"Image {min(done + 1, len(self.items))}/{len(self.items)} · step"
        self.owner.view.show_progress(step, total, rate, ProgressClock.eta(step, total, rate), label)

    def _finished(self, generation: int, cancelled: bool, summary: str) -> None:
        owner = self.owner
        if generation != owner.generation:
            return
        owner.finish_run()
        owner.view.set_running(False, batch=True)
        owner.view.show_batch_summary(summary)
        owner.view.show_status(summary)
        owner.batch_finished.emit(summary)
