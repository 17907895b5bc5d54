"""The app's log file, and hooks that turn uncaught exceptions into a logged dialog."""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from sr3_desktop.qt.paths import log_dir

LOG_FILE_NAME = "sr3-desktop.log"
_HANDLER_NAME = "sr3-desktop-file"
log = logging.getLogger("sr3_desktop")


def setup_logging(folder: Path | None = None) -> Path:
    """Log INFO and above to a rotating file in the per-user log folder; returns the file path."""
    folder = folder or log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_FILE_NAME
    root = logging.getLogger()
    for handler in list(root.handlers):  # one file handler, even when a test builds several windows
        if handler.get_name() == _HANDLER_NAME:
            if Path(getattr(handler, "baseFilename", "")) == path:
                return path
            root.removeHandler(handler)
            handler.close()
    handler = RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3, encoding="utf-8")
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return path


def current_log_file() -> Path | None:
    for handler in logging.getLogger().handlers:
        if handler.get_name() == _HANDLER_NAME:
            return Path(getattr(handler, "baseFilename", ""))
    return None


ErrorShower = Callable[[str, str, str], None]


def install_excepthook(show: ErrorShower) -> None:
    """Log every uncaught exception and show ``show(title, message, details)`` instead of a traceback.

    Exceptions raised in Qt slots reach ``sys.excepthook`` too. ``show`` runs on the UI thread only:
    errors of other threads are logged and forwarded by the caller's own signals.
    """

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        details = "".join(traceback.format_exception(kind, value, tb))
        log.error("uncaught exception\n%s", details)
        if threading.current_thread() is not threading.main_thread():
            return
        from sr3_desktop.core.errors import SR3Error

        if isinstance(value, SR3Error):
            show("SR3 Desktop", str(value), "")
            return
        where = current_log_file()
        message = f"Something went wrong: {value or kind.__name__}.\n\nThe app can keep running."
        if where:
            message += f" Details are in the log file:\n{where}"
        show("Unexpected error", message, details)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        details = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        log.error("uncaught exception in thread %s\n%s", getattr(args.thread, "name", "?"), details)

    sys.excepthook = hook
    threading.excepthook = thread_hook
