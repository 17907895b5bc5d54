"""A thin QObject adapter over the core's one refine step (``core.batch.refine_image``), run in its own QThread.

It forwards each RefineStep as a signal (numpy arrays; the view makes a QImage when it shows one)
through the core's small ``Progress`` interface: ``aborted()`` is checked between yields (and by
the core between tile batches), and the chain is closed on cancel. It does no maths and writes no files.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal

from sr3_desktop.core.batch import Models, OutputSize, refine_image
from sr3_desktop.core.denoiser import OnnxDenoiser, get_denoiser
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.estimate import RunEstimate
from sr3_desktop.core.pipeline import RefineOptions, RefineStep
from sr3_desktop.core.refine_types import METHODS, MODEL_METHODS

log = logging.getLogger(__name__)
UNEXPECTED = "Something went wrong while refining: {error}. Details are in the log file."


def open_models(sr3: Path, regression: Path | None, device: str, notes: tuple[str, ...] = (),
                sr3_ready: Callable[[OnnxDenoiser], None] | None = None, onepass: Path | None = None) -> Models:
    """The sessions of a run (cached by the core); ``sr3_ready`` hears of the SR3 one first."""
    sr3_session = get_denoiser(sr3, device)
    if sr3_ready is not None:
        sr3_ready(sr3_session)
    regression_session = get_denoiser(regression, device) if regression else None
    onepass_session = get_denoiser(onepass, device) if onepass else None
    return Models(sr3=sr3_session, regression=regression_session, notes=notes, onepass=onepass_session)


@dataclass(frozen=True)
class RefineJob:
    """One run of the single-image view: compare methods first (cheap), then SR3."""

    generation: int
    lr: np.ndarray
    options: RefineOptions
    sr3_model: Path
    regression_model: Path | None
    device: str
    methods: tuple[str, ...] = METHODS
    preview_every: int = 1
    """Forward every k-th yielded step as a preview (the core already yields every options.preview_every)."""
    size: OutputSize = field(default_factory=OutputSize)
    """The results' size (the Scale setting); the model runs at its own scale."""
    onepass_model: Path | None = None
    """The imported one-pass upscaler of the compare (its own pane), if any."""


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
            models = open_models(job.sr3_model, job.regression_model, job.device, (),
                                 lambda sr3: self.engine_ready.emit(job.generation, list(sr3.providers),
                                                                    sr3.fallback_note), job.onepass_model)
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


def start_in_thread(worker: QObject, name: str) -> QThread:
    """Move ``worker`` into a new QThread that calls ``worker.run`` and quits when it finishes.

    The quit is a direct call from the worker's thread (``QThread.quit`` is thread-safe): queued to
    the thread object's owner instead, it would wait for that thread's event loop, and a caller that
    stops its loop on ``worker.finished`` and then waits for the thread would wait for ever."""
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)  # type: ignore[attr-defined]
    worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)  # type: ignore[attr-defined]
    thread.start()
    return thread
