"""What the app announces (tests, scripts and the window listen); the controllers emit these."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal


class AppEvents(QObject):
    """Signals of things that happened, each emitted on the UI thread after the view was updated."""

    image_loaded = Signal()
    bicubic_shown = Signal()
    preview_shown = Signal(int)  # step
    result_shown = Signal(str)  # method
    run_finished = Signal(bool)  # cancelled
    metrics_ready = Signal()
    saved = Signal(object)  # Path
    models_changed = Signal()
    batch_ready = Signal()
    batch_finished = Signal(str)  # summary
    error_shown = Signal(str)  # message
