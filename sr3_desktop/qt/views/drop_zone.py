"""The empty state: a large target for dropped files and folders, with Open and Paste buttons."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDropEvent, QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from sr3_desktop.qt import icons


def paths_from_mime(mime: QMimeData) -> list[str]:
    """Local files and folders carried by a drag (file-manager URLs)."""
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile() and url.toLocalFile()]


class DropZone(QFrame):
    """Accepts files and folders (and image data) dropped onto it; emits their paths."""

    paths_dropped = Signal(list)
    open_clicked = Signal()
    open_folder_clicked = Signal()
    paste_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dropZone")
        self.setAcceptDrops(True)
        self._set_highlight(False)
        glyph = QLabel()
        glyph.setAlignment(Qt.AlignmentFlag.AlignCenter)
        ratio = self.devicePixelRatioF()
        pixmap: QPixmap = icons.app_icon().pixmap(96, 96) if not icons.app_icon().isNull() \
            else icons.icon("drop").pixmap(96, 96)
        pixmap.setDevicePixelRatio(max(ratio, pixmap.devicePixelRatio()))
        glyph.setPixmap(pixmap)
        title = QLabel("Drop images or folders here")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setWeight(font.Weight.DemiBold)
        title.setFont(font)
        hint = QLabel("PNG, JPEG, WebP, TIFF, BMP or GIF. One image opens for refining and comparing;\n"
                      "several images or a folder become a batch.")
        hint.setObjectName("hint")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for text, glyph_name, signal, tip in (
            ("Open image…", "open", self.open_clicked, "Ctrl+O"),
            ("Open folder…", "open_folder", self.open_folder_clicked, "Ctrl+Shift+O"),
            ("Paste", "paste", self.paste_clicked, "Ctrl+V"),
        ):
            button = QPushButton(text)
            icons.set_icon(button, glyph_name)
            button.setToolTip(tip)
            button.clicked.connect(signal.emit)
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(2)
        layout.addWidget(glyph)
        layout.addSpacing(8)
        layout.addWidget(title)
        layout.addWidget(hint)
        layout.addSpacing(16)
        layout.addLayout(buttons)
        layout.addStretch(3)

    def _set_highlight(self, on: bool) -> None:
        colour = "palette(highlight)" if on else "palette(mid)"
        self.setStyleSheet(
            f"QFrame#dropZone {{ border: 2px dashed {colour}; border-radius: 14px; margin: 18px; }}"
        )

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if paths_from_mime(event.mimeData()):
            self._set_highlight(True)
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self._set_highlight(False)

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_highlight(False)
        paths = paths_from_mime(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.paths_dropped.emit(paths)
        else:
            event.ignore()
