"""Short background jobs (load an image, import a model, save, metrics) on a private thread pool.

Each job carries a kind (which handler of the controller's table takes its result) and a token
(the model's generation) so results that arrive after the user moved on can be dropped.
SR3Error messages go to the user as they are; anything else is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, get_args

from PySide6.QtCore import QObject, QThreadPool, Signal

from sr3_desktop.core.errors import SR3Error

log = logging.getLogger(__name__)
TaskKind = Literal["load", "bicubic", "plan", "reference", "metrics", "save", "models", "import", "cleanup",
                   "calibrate"]
TASK_KINDS: tuple[str, ...] = get_args(TaskKind)


class TaskRunner(QObject):
    """Runs callables off the UI thread; reports back on the UI thread through signals."""

    done = Signal(str, int, object)  # kind, token, result
    failed = Signal(str, int, str)  # kind, token, message for the user

    def __init__(self, parent: QObject | None = None, threads: int = 2) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self.pool.setExpiryTimeout(-1)  # keep the few threads: a fixed, known thread count
        self.pending = 0
        self.done.connect(self._count_finished)
        self.failed.connect(self._count_finished)

    def submit(self, kind: TaskKind, token: int, job: Callable[[], Any]) -> None:
        if kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind {kind!r}")
        self.pending += 1
        self.pool.start(lambda: self._run(kind, token, job))

    def _run(self, kind: str, token: int, job: Callable[[], Any]) -> None:
        try:
            result = job()
        except SR3Error as err:
            self.failed.emit(kind, token, str(err))
        except Exception as err:  # a bug: keep the app alive and say where the details are
            log.exception("background task %s failed", kind)
            self.failed.emit(kind, token, f"Something went wrong ({type(err).__name__}: {err}). "
                                          "Details are in the log file.")
        else:
            self.done.emit(kind, token, result)

    def _count_finished(self, *_args: object) -> None:
        self.pending -= 1

    def wait(self, msecs: int = 10_000) -> bool:
        return self.pool.waitForDone(msecs)
