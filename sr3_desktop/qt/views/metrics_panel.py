"""Scores per method (consistency always; PSNR, SSIM, GMSD, grain, spectral gap and detail fidelity with a
reference, the numbers a person sees, never sharpness, which noise raises too) and the uncertainty image."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sr3_desktop.qt import icons
from sr3_desktop.qt.view_data import METHOD_LABELS, PAPER_NOTE, RESULT_METHODS, MetricsRow
from sr3_desktop.qt.views.image_panes import ImagePane, ViewSync
from sr3_desktop.qt.views.qimage import heatmap_rgb

METRICS = ("Consistency", "PSNR-Y", "SSIM-Y", "GMSD", "Grain", "Spectral gap", "Detail")
TIPS = (
    "MSE between the result shrunk back to the input size and the input, in units of 1e-5 (the paper's "
    "Table 2): does the result agree with what was given? Lower is better",
    "PSNR on luma against the reference (dB); higher is better",
    "SSIM on luma against the reference; higher is better",
    "Gradient magnitude similarity deviation (Xue et al. 2014): is the structure of the reference there? "
    "Lower is better",
    "Fine detail on the reference's smoothest areas, relative to the reference: 1 = as in the photo, above 1 = "
    "grain or noise that the photo does not have, below 1 = smoothed",
    "How far the result's fine-band power is from the reference's (log10, averaged over 1/4 to 1 of Nyquist): "
    "the band a 4x upscale must invent; lower is better",
    "Correlation of the result's fine detail with the reference's: 1 = the photo's own detail in its place",
)
ROW_LABELS = ("Consistency ↓", "PSNR-Y ↑", "SSIM-Y ↑", "GMSD ↓", "Grain →1", "Spectral gap ↓", "Detail ↑")
ATTRIBUTES = ("consistency", "psnr", "ssim", "gmsd", "grain", "spectral_gap", "detail_fidelity")
FORMATS = ("{:.2f}", "{:.2f} dB", "{:.4f}", "{:.4f}", "{:.2f}", "{:.3f}", "{:.3f}")
GOODNESS = {"consistency": lambda v: -v, "psnr": lambda v: v, "ssim": lambda v: v, "gmsd": lambda v: -v,
            "grain": lambda v: -abs(v - 1.0), "spectral_gap": lambda v: -v, "detail_fidelity": lambda v: v}
"""Higher is better for each metric (grain: nearer 1), to mark the best method in bold."""
ROW_HEIGHT = 28


class MetricsPanel(QWidget):
    reference_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # One column per method, one row per metric: fits a narrow dock.
        self.table = QTableWidget(len(METRICS), len(RESULT_METHODS))
        self.table.setHorizontalHeaderLabels([METHOD_LABELS[m] for m in RESULT_METHODS])
        self.table.setVerticalHeaderLabels(list(ROW_LABELS))
        for row, tip in enumerate(TIPS):
            header = self.table.verticalHeaderItem(row)
            if header:
                header.setToolTip(tip)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + len(METRICS) * ROW_HEIGHT + 4)
        self.reference_button = QPushButton("Load reference…")
        icons.set_icon(self.reference_button, "reference")
        self.reference_button.setToolTip("A high-resolution original of this image, for PSNR, SSIM, GMSD, grain, "
                                         "spectral gap and detail")
        self.reference_button.clicked.connect(self.reference_clicked.emit)
        self.reference_label = QLabel("No reference loaded")
        self.reference_label.setObjectName("hint")
        self.reference_label.setWordWrap(True)
        self.note = QLabel(PAPER_NOTE)
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        self.uncertainty_title = QLabel("Uncertainty")
        font = self.uncertainty_title.font()
        font.setWeight(font.Weight.DemiBold)
        self.uncertainty_title.setFont(font)
        self.uncertainty_hint = QLabel()
        self.uncertainty_hint.setObjectName("hint")
        self.uncertainty_hint.setWordWrap(True)
        self.uncertainty_sync = ViewSync()
        self.uncertainty = ImagePane(self.uncertainty_sync, "")
        self.uncertainty.setMinimumSize(QSize(160, 160))
        self.uncertainty.set_placeholder("Set Samples (K) above 1 to see where the samples disagree")
        buttons = QHBoxLayout()
        buttons.addWidget(self.reference_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.reference_label)
        layout.addWidget(self.note)
        layout.addSpacing(8)
        layout.addWidget(self.uncertainty_title)
        layout.addWidget(self.uncertainty_hint)
        layout.addWidget(self.uncertainty, 1)
        self.clear()

    def set_title(self, method: str, title: str) -> None:
        """Rename a method's column (the one-pass model's: its name)."""
        header = self.table.horizontalHeaderItem(RESULT_METHODS.index(method))
        if header is not None:
            header.setText(title)

    def clear(self) -> None:
        self.clear_scores()
        self.set_uncertainty(None, 1)

    def set_rows(self, rows: list[MetricsRow], has_reference: bool) -> None:
        self.clear_scores()
        for entry in rows:
            if entry.method not in RESULT_METHODS:
                continue
            column = RESULT_METHODS.index(entry.method)
            for row, (attribute, fmt) in enumerate(zip(ATTRIBUTES, FORMATS, strict=True)):
                value = getattr(entry, attribute)
                self._set_cell(row, column, fmt.format(value) if value is not None else "—")
        self._highlight_best(rows)
        self.note.setVisible(has_reference)

    def clear_scores(self) -> None:
        for row in range(len(METRICS)):
            for column in range(len(RESULT_METHODS)):
                self._set_cell(row, column, "—")

    def set_reference(self, label: str | None) -> None:
        self.reference_label.setText(f"Reference: {label}" if label else "No reference loaded")
        self.note.setVisible(bool(label))

    def set_uncertainty(self, std: np.ndarray | None, samples: int) -> None:
        """Per-pixel standard deviation over K samples, shown as a heat map (brighter = less certain)."""
        if std is None:
            self.uncertainty.set_image(None)
            self.uncertainty_hint.setText("")
            return
        self.uncertainty_sync.set_frame(QSize(std.shape[1], std.shape[0]))
        self.uncertainty_sync.set_fit()
        self.uncertainty.set_image(heatmap_rgb(std))
        self.uncertainty_hint.setText(
            f"Per-pixel spread over K = {samples} samples (brighter = the samples disagree more; max "
            f"{float(np.max(std)):.3f})."
        )

    def value(self, method: str, metric: str) -> str:
        item = self.table.item(METRICS.index(metric), RESULT_METHODS.index(method))
        return item.text() if item else ""

    def _set_cell(self, row: int, column: int, text: str) -> None:
        item = QTableWidgetItem(text)
        item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        self.table.setItem(row, column, item)

    def _highlight_best(self, rows: list[MetricsRow]) -> None:
        for row, attribute in enumerate(ATTRIBUTES):
            scored = [(GOODNESS[attribute](getattr(r, attribute)), r.method) for r in rows
                      if getattr(r, attribute) is not None]
            if len(scored) < 2:
                continue
            best = max(scored)[1]
            item = self.table.item(row, RESULT_METHODS.index(best))
            if item:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
