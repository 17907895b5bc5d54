"""A thin QObject adapter over the core's ``refine`` generator, run in its own QThread.

It forwards each RefineStep as a signal (numpy arrays; the view makes a QImage when it shows one),
checks an abort flag between yields (and the core checks it between tile batches), and closes the
generator on cancel. It does no maths and writes no files.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal

from sr3_desktop.core.denoiser import get_denoiser
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.pipeline import RefineOptions, RefineStep, refine

log = logging.getLogger(__name__)
UNEXPECTED = "Something went wrong while refining: {error}. Details are in the log file."


@dataclass(frozen=True)
class RefineJob:
    """One run of the single-image view: compare methods first (cheap), then SR3."""

    generation: int
    lr: np.ndarray
    options: RefineOptions
    sr3_model: Path
    regression_model: Path | None
    device: str
    methods: tuple[str, ...] = ("bicubic", "regression", "sr3")
    preview_every: int = 1
    """Forward every k-th yielded step as a preview (the core already yields every options.preview_every)."""


class RefineWorker(QObject):
    """Runs a :class:`RefineJob`. Every signal carries the job's generation, so stale ones can be dropped."""

    engine_ready = Signal(int, object, object)  # generation, providers (list[str]), fallback note
    method_started = Signal(int, str)  # generation, method
    progress = Signal(int, int, int)  # generation, step, total
    preview = Signal(int, object)  # generation, RefineStep (not final)
    result = Signal(int, str, object)  # generation, method, RefineResult
    failed = Signal(int, str)  # generation, message for the user
    finished = Signal(int, bool)  # generation, cancelled

    def __init__(self, job: RefineJob) -> None:
        super().__init__()
        self.job = job
        self._abort = threading.Event()

    def abort(self) -> None:
        """Ask the run to stop; thread-safe, takes effect within one step."""
        self._abort.set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def run(self) -> None:
        job = self.job
        cancelled = False
        try:
            sr3 = get_denoiser(job.sr3_model, job.device)
            self.engine_ready.emit(job.generation, list(sr3.providers), sr3.fallback_note)
            regression = get_denoiser(job.regression_model, job.device) if job.regression_model else None
            for method in job.methods:
                if method == "regression" and regression is None:
                    continue
                if self.aborted:
                    cancelled = True
                    break
                self.method_started.emit(job.generation, method)
                options = replace(job.options, method=method)  # type: ignore[arg-type]
                steps = refine(job.lr, options, sr3, regression, should_stop=self._abort.is_set)
                if not self._forward(method, steps):
                    cancelled = True
                    break
        except SR3Error as err:
            self.failed.emit(job.generation, str(err))
        except Exception as err:  # a bug: log it, tell the user, keep the app alive
            log.exception("refinement failed")
            self.failed.emit(job.generation, UNEXPECTED.format(error=err))
        finally:
            self.finished.emit(job.generation, cancelled or self.aborted)

    def _forward(self, method: str, steps: Iterator[RefineStep]) -> bool:
        """Emit the steps of one method; False when cancelled before its result."""
        last_preview = 0
        try:
            for step in steps:
                if self.aborted:
                    return False
                if step.result is not None:
                    self.progress.emit(self.job.generation, step.step, step.total)
                    self.result.emit(self.job.generation, method, step.result)
                    return True
                self.progress.emit(self.job.generation, step.step, step.total)
                if step.step - last_preview >= self.job.preview_every:
                    last_preview = step.step
                    self.preview.emit(self.job.generation, step)
            return False  # the generator stopped early: the core saw the abort flag
        finally:
            close = getattr(steps, "close", None)
            if close:
                close()


def start_in_thread(worker: QObject, name: str) -> QThread:
    """Move ``worker`` into a new QThread that calls ``worker.run`` and quits when it finishes."""
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)  # type: ignore[attr-defined]
    worker.finished.connect(thread.quit)  # type: ignore[attr-defined]
    thread.start()
    return thread
