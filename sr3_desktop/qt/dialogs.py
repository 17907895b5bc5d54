"""The one place that shows a message box. Dialogs are window-modal and never block the caller."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

log = logging.getLogger(__name__)
ERROR_DIALOG_NAME = "sr3-error-dialog"
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
