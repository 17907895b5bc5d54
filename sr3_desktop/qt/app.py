"""Entry point of the window: ``python -m sr3_desktop [FILE...]`` calls :func:`main`."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QTimer
from PySide6.QtWidgets import QApplication

from sr3_desktop import __version__
from sr3_desktop.qt import dialogs, icons, theme
from sr3_desktop.qt.logs import install_excepthook, setup_logging
from sr3_desktop.qt.paths import APP_NAME, ORGANISATION
from sr3_desktop.qt.settings import SettingsStore

if TYPE_CHECKING:  # the window module itself is imported only when a window is made
    from sr3_desktop.qt.main_window import MainWindow

log = logging.getLogger(__name__)


def application() -> QApplication:
    """The QApplication, created once with our names, icon and theme."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    QCoreApplication.setOrganizationName(ORGANISATION)
    QCoreApplication.setApplicationName(APP_NAME)
    QCoreApplication.setApplicationVersion(__version__)
    app.setApplicationDisplayName("SR3 Desktop")
    app.setDesktopFileName("sr3-desktop")
    app.setWindowIcon(icons.app_icon())
    theme.apply_theme(app)
    return app


def create_window(files: list[str] | None = None, store: SettingsStore | None = None) -> MainWindow:
    """Build and show the main window (with ``files`` opened), after logging and the error hook."""
    from sr3_desktop.qt.main_window import MainWindow

    app = application()
    log_file = setup_logging()
    log.info("SR3 Desktop %s starting; log file %s", __version__, log_file)
    window = MainWindow(store or SettingsStore())

    def show(title: str, message: str, details: str) -> None:
        dialogs.show_error(app.activeWindow() or window, title, message, details)

    install_excepthook(show)
    window.show()
    if files:
        window.controller.open_paths([str(Path(f)) for f in files])
    return window


def main(files: list[str] | None = None) -> int:
    """Open the window (with ``files`` loaded, as "Open with" does) and run until it closes."""
    app = application()
    window = create_window(files)
    signal.signal(signal.SIGINT, lambda *_: window.close())  # Ctrl+C in a terminal closes the window
    heartbeat = QTimer()  # lets Python run its signal handlers while Qt's loop waits
    heartbeat.start(250)
    heartbeat.timeout.connect(lambda: None)
    code = app.exec()
    log.info("SR3 Desktop closed (exit code %d)", code)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
