"""The batch list: one row per input with its status, output or error, and a summary line."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sr3_desktop.qt import icons
from sr3_desktop.qt.view_data import BatchItem

STATUS_TEXT = {"pending": "Waiting", "running": "Refining…", "done": "Done", "skipped": "Skipped",
               "error": "Error", "cancelled": "Cancelled"}


class BatchView(QWidget):
    run_clicked = Signal()
    cancel_clicked = Signal()
    clear_clicked = Signal()
    item_activated = Signal(str)  # the input path of a double-clicked row

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Batch")
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setWeight(font.Weight.DemiBold)
        self.title.setFont(font)
        self.folder_label = QLabel()
        self.folder_label.setObjectName("hint")
        self.folder_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Input", "Status", "Output / message"])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(0, 260)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.cellDoubleClicked.connect(self._activated)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.run_button = QPushButton("Start batch")
        icons.set_icon(self.run_button, "run", "#ffffff")
        self.run_button.setObjectName("primary")
        self.run_button.setToolTip("Ctrl+Enter")
        self.run_button.clicked.connect(self.run_clicked.emit)
        self.cancel_button = QPushButton("Cancel")
        icons.set_icon(self.cancel_button, "cancel")
        self.cancel_button.setToolTip("Esc")
        self.cancel_button.clicked.connect(self.cancel_clicked.emit)
        self.clear_button = QPushButton("Clear")
        icons.set_icon(self.clear_button, "clear")
        self.clear_button.clicked.connect(self.clear_clicked.emit)
        top = QHBoxLayout()
        top.addWidget(self.title)
        top.addWidget(self.folder_label, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.summary, 1)
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self._items: list[BatchItem] = []
        self.set_running(False)

    def set_items(self, items: list[BatchItem], output_folder: str) -> None:
        self._items = list(items)
        self.table.setRowCount(len(items))
        for row, item in enumerate(items):
            name = QTableWidgetItem(item.label)
            name.setToolTip(str(item.source))
            self.table.setItem(row, 0, name)
            self.update_item(row, item)
        self.title.setText(f"Batch · {len(items)} image{'s' if len(items) != 1 else ''}")
        self.folder_label.setText(f"→ {output_folder}")
        self.folder_label.setToolTip(output_folder)
        self.summary.setText("Outputs that already exist are skipped. Errors are listed and the batch goes on.")

    def update_item(self, row: int, item: BatchItem) -> None:
        status = QTableWidgetItem(icons.status_icon(item.status), STATUS_TEXT.get(item.status, item.status))
        self.table.setItem(row, 1, status)
        detail = item.message or (str(item.output) if item.status in ("pending", "running", "done") else "")
        cell = QTableWidgetItem(detail)
        cell.setToolTip(detail)
        self.table.setItem(row, 2, cell)
        if item.status == "running":
            self.table.scrollToItem(status)

    def status_text(self, row: int) -> str:
        item = self.table.item(row, 1)
        return item.text() if item else ""

    def set_summary(self, text: str) -> None:
        self.summary.setText(text)

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.clear_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _activated(self, row: int, _column: int) -> None:
        if 0 <= row < len(self._items):
            self.item_activated.emit(str(self._items[row].source))
