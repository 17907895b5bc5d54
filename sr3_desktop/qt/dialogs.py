"""The one place that shows a message box. Dialogs are window-modal and never block the caller."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QMessageBox, QWidget

log = logging.getLogger(__name__)
ERROR_DIALOG_NAME = "sr3-error-dialog"
LONG_RUN_DIALOG_NAME = "sr3-long-run-dialog"
CANCEL = "cancel"
_open_boxes: set[QMessageBox] = set()  # a parentless box needs a Python reference while it is shown


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> QMessageBox:
    """Show ``message`` (a sentence a user can act on) in a warning box; ``details`` go behind a button."""
    log.warning("%s: %s", title, message)
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName(ERROR_DIALOG_NAME)
    box.setTextFormat(Qt.TextFormat.PlainText)
    if details:
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.WindowModal if parent else Qt.WindowModality.ApplicationModal)
    _open_boxes.add(box)
    box.finished.connect(lambda _result: _open_boxes.discard(box))
    box.open()
    return box


def ask_long_run(parent: QWidget | None, message: str, choices: list[tuple[str, str]],
                 answer: Callable[[str], None]) -> QMessageBox:
    """Ask before a long run: one button per (key, label) in ``choices`` (the first is the default), and
    Cancel. ``answer(key)`` is called with the key of the button pressed (``CANCEL`` when dismissed)."""
    box = QMessageBox(QMessageBox.Icon.Question, "This run will take a while", message,
                      QMessageBox.StandardButton.NoButton, parent)
    box.setObjectName(LONG_RUN_DIALOG_NAME)
    box.setTextFormat(Qt.TextFormat.PlainText)
    keys: dict[QAbstractButton, str] = {}
    for index, (key, label) in enumerate(choices):
        button = box.addButton(label, QMessageBox.ButtonRole.AcceptRole if index == 0
                               else QMessageBox.ButtonRole.ActionRole)
        button.setObjectName(f"choice-{key}")
        keys[button] = key
        if index == 0:
            box.setDefaultButton(button)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    cancel.setObjectName(f"choice-{CANCEL}")
    keys[cancel] = CANCEL
    box.setEscapeButton(cancel)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.WindowModal if parent else Qt.WindowModality.ApplicationModal)
    chosen: list[str] = []
    box.buttonClicked.connect(lambda button: chosen.append(keys.get(button, CANCEL)))
    _open_boxes.add(box)

    def finished(_result: int) -> None:
        _open_boxes.discard(box)
        answer(chosen[0] if chosen else CANCEL)

    box.finished.connect(finished)
    box.open()
    return box
