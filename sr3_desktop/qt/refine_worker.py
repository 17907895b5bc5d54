"""A thin QObject adapter over the core's one refine step (``core.upscale.flow.refine_image``), run in its own QThread.

It forwards each RefineStep as a signal (numpy arrays; the view makes a QImage when it shows one)
through the core's small ``Progress`` interface: ``aborted()`` is checked between yields (and by
the core between tile batches), and the chain is closed on cancel. It does no maths and writes no files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
from PySide6.QtCore import Signal

from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.upscale.estimate import RunEstimate
from sr3_desktop.core.upscale.flow import refine_image
from sr3_desktop.core.upscale.output_size import OutputSize
from sr3_desktop.core.upscale.refine_types import METHODS, MODEL_METHODS, RefineOptions, RefineStep
from sr3_desktop.qt.abortable_worker import AbortableWorker, RunSessions

log = logging.getLogger(__name__)
UNEXPECTED = "Something went wrong while refining: {error}. Details are in the log file."


@dataclass(frozen=True)
class RefineJob:
    """One run of the single-image view: compare methods first (cheap), then SR3."""

    generation: int
    lr: np.ndarray
    options: RefineOptions
    sessions: RunSessions
    """The model files (the one-pass one of the compare too, when there is one) and the device."""
    methods: tuple[str, ...] = METHODS
    preview_every: int = 1
    """Forward every k-th yielded step as a preview (the core already yields every options.preview_every)."""
    size: OutputSize = field(default_factory=OutputSize)
    """The results' size (the Scale setting); the model runs at its own scale."""


class _StepRelay:
    """The core's Progress for one method of a run: each step becomes signals of the worker."""

    def __init__(self, worker: RefineWorker, method: str) -> None:
        self.worker, self.method = worker, method
        self.last_preview = 0

    def aborted(self) -> bool:
        return self.worker.aborted

    def started(self, estimate: RunEstimate) -> None:
        return None  # the controller showed the estimate before the run

    def set_progress(self, step: RefineStep) -> None:
        worker, generation = self.worker, self.worker.job.generation
        worker.progress.emit(generation, step.step, step.total)
        if step.result is not None:
            return  # the result comes from refine_image, resampled to the chosen size
        if step.step - self.last_preview >= worker.job.preview_every:
            self.last_preview = step.step
            worker.preview.emit(generation, step)


class RefineWorker(AbortableWorker):
    """Runs a :class:`RefineJob`. Every signal carries the job's generation, so stale ones can be dropped."""

    method_started = Signal(int, str)  # generation, method
    progress = Signal(int, int, int)  # generation, step, total
    preview = Signal(int, object)  # generation, RefineStep (not final)
    result = Signal(int, str, object)  # generation, method, RefineResult
    failed = Signal(int, str)  # generation, message for the user
    finished = Signal(int, bool)  # generation, cancelled

    def __init__(self, job: RefineJob) -> None:
        super().__init__(job.generation)
        self.job = job

    def run(self) -> None:
        job = self.job
        cancelled = False
        try:
            models = self.open_models(job.sessions)
            for method in job.methods:
                if method in MODEL_METHODS and models.of(method) is None:
                    continue
                if self.aborted:
                    cancelled = True
                    break
                self.method_started.emit(job.generation, method)
                options = replace(job.options, method=method)  # type: ignore[arg-type]
                result = refine_image(job.lr, options, models, _StepRelay(self, method), job.size)
                if result is None:
                    cancelled = True  # the chain stopped early: the abort flag was seen
                    break
                self.result.emit(job.generation, method, result)
        except SR3Error as err:
            self.failed.emit(job.generation, str(err))
        except Exception as err:  # a bug: log it, tell the user, keep the app alive
            log.exception("refinement failed")
            self.failed.emit(job.generation, UNEXPECTED.format(error=err))
        finally:
            self.finished.emit(job.generation, cancelled or self.aborted)

