"""The one run (single image or batch) of the current generation, and the threads of older runs.

A new generation abandons the run: it is told to stop and its late signals are dropped by
generation. Its thread is kept until it has finished, then reaped.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QThread, QTimer

from sr3_desktop.qt.abortable_worker import start_in_thread
from sr3_desktop.qt.batch_worker import BatchWorker
from sr3_desktop.qt.controllers.context import AppContext
from sr3_desktop.qt.refine_worker import RefineWorker

RunWorker = RefineWorker | BatchWorker


class RunSlot(QObject):
    def __init__(self, ctx: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.worker: RunWorker | None = None
        self._threads: list[tuple[QThread, RunWorker]] = []
        ctx.model.on_new_generation(lambda _old: self.abandon())

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def thread_count(self) -> int:
        """Worker threads not yet reaped (tests: must fall back to 0)."""
        return len(self._threads)

    def launch(self, worker: RunWorker, name: str) -> None:
        """Run ``worker`` in its own thread as the current generation's run."""
        thread = start_in_thread(worker, name)
        thread.finished.connect(lambda: QTimer.singleShot(0, self._reap))
        self._threads.append((thread, worker))
        self.worker = worker

    def cancel(self) -> bool:
        """Ask the current run to stop (it reports back as cancelled); False when none runs."""
        if self.worker is None:
            return False
        self.worker.abort()
        return True

    def finish(self) -> None:
        """The current run's worker has finished."""
        self.worker = None

    def abandon(self) -> None:
        """The user moved on: stop the current run without waiting for it."""
        if self.worker is not None:
            self.worker.abort()
            self.worker = None
            self.ctx.view.set_running(False, batch=self.ctx.model.mode == "batch")

    def shutdown(self, timeout_ms: int) -> None:
        """Stop every run and wait for its thread."""
        self.worker = None
        for thread, worker in list(self._threads):
            worker.abort()
            thread.quit()
            thread.wait(timeout_ms)
        self._threads.clear()

    def _reap(self) -> None:
        for pair in list(self._threads):
            thread = pair[0]
            if thread.isFinished():
                thread.wait()
                self._threads.remove(pair)
