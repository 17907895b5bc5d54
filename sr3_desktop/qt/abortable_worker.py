"""The one base of the app's background workers: a QObject, moved into its own QThread, that stops
between steps when asked, and opens the sessions of a run.

The abort flag is a ``threading.Event`` that the worker's code (and, through the core's small
``Progress`` interface, the core itself) checks between yields, so the core needs no Qt to be
cancellable: superqt's ``GeneratorWorker`` idea. superqt itself is not used: it is not one of the
app's dependencies, and the core reports through ``Progress`` callbacks, not a generator the worker
could drive, so its ``yielded`` signal would carry nothing ours do not (the generation tag).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal

from sr3_desktop.core.model_files.denoiser import get_denoisers
from sr3_desktop.core.upscale.run_models import Models


@dataclass(frozen=True)
class RunSessions:
    """The model files a run opens, and the device they run on (``RunPlan.sessions`` builds it)."""

    sr3_model: Path
    regression_model: Path | None
    device: str
    onepass_model: Path | None = None
    """The imported one-pass upscaler of the compare's own pane, if any."""


class AbortableWorker(QObject):
    """A worker of one generation: ``abort()`` is thread-safe and takes effect within one step.

    Subclasses define ``run()`` and a ``finished`` signal whose first two arguments are the
    generation and whether the run was cancelled; every signal carries the generation, so the
    controller drops the late ones of an abandoned run."""

    engine_ready = Signal(int, object, object)  # generation, providers (list[str]), fallback note

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation
        self._abort = threading.Event()

    def abort(self) -> None:
        """Ask the run to stop (from any thread)."""
        self._abort.set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def open_models(self, sessions: RunSessions, notes: tuple[str, ...] = ()) -> Models:
        """The sessions of a run (cached by the core, the missing ones built side by side); ``engine_ready``
        tells of the SR3 one."""
        extra = [p for p in (sessions.regression_model, sessions.onepass_model) if p]
        sr3, *others = get_denoisers([sessions.sr3_model, *extra], sessions.device)
        self.engine_ready.emit(self.generation, list(sr3.providers), sr3.fallback_note)
        opened = dict(zip(extra, others, strict=True))
        regression = opened[sessions.regression_model] if sessions.regression_model else None
        onepass = opened[sessions.onepass_model] if sessions.onepass_model else None
        return Models(sr3=sr3, regression=regression, notes=notes, onepass=onepass)

    def run(self) -> None:
        raise NotImplementedError


def start_in_thread(worker: AbortableWorker, name: str) -> QThread:
    """Move ``worker`` into a new QThread that calls ``worker.run`` and quits when it finishes.

    The quit is a direct call from the worker's thread (``QThread.quit`` is thread-safe): queued to
    the thread object's owner instead, it would wait for that thread's event loop, and a caller that
    stops its loop on ``worker.finished`` and then waits for the thread would wait for ever."""
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)  # type: ignore[attr-defined]
    thread.start()
    return thread
