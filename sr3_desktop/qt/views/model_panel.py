"""Model chooser (bundled + imported), Import…, and a details pane rendering the model card."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.registry import ModelEntry
from sr3_desktop.qt import icons


class ModelPanel(QWidget):
    sr3_selected = Signal(str)
    regression_selected = Signal(str)
    import_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cards: dict[str, ModelCard] = {}
        self.sr3_combo = QComboBox()
        self.sr3_combo.setToolTip("The SR3 (diffusion) model that refines the image")
        self.regression_combo = QComboBox()
        self.regression_combo.setToolTip("The regression model shown in the compare view (one pass, no sampling)")
        for combo in (self.sr3_combo, self.regression_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self.import_button = QPushButton("Import model…")
        icons.set_icon(self.import_button, "import")
        self.import_button.setToolTip("Check an exported .onnx model and add it to your models")
        self.import_button.clicked.connect(self.import_clicked.emit)
        self.details = QTextBrowser()
        self.details.setOpenExternalLinks(True)
        self.details.setMinimumHeight(160)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("SR3", self.sr3_combo)
        form.addRow("Regression", self.regression_combo)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.details, 1)
        self.sr3_combo.currentIndexChanged.connect(self._sr3_changed)
        self.regression_combo.currentIndexChanged.connect(self._regression_changed)

    def set_models(self, entries: Sequence[ModelEntry], sr3: str, regression: str) -> None:
        """Fill both choosers from ``ModelEntry`` objects; select the named ones."""
        self._cards = {e.name: e.card for e in entries}
        for combo, kind, wanted in ((self.sr3_combo, "sr3", sr3), (self.regression_combo, "regression", regression)):
            combo.blockSignals(True)
            combo.clear()
            for entry in entries:
                if entry.card.kind != kind:
                    continue
                origin = "bundled" if entry.bundled else "imported"
                combo.addItem(icons.icon("model"), f"{entry.name}  ({origin}, ×{entry.card.scale})", entry.name)
            if combo.count() == 0:
                combo.addItem(f"No {kind} model installed", "")
            index = combo.findData(wanted)
            combo.setCurrentIndex(max(0, index))
            combo.blockSignals(False)
        self._show_card(self.sr3_combo.currentData())

    def selected_sr3(self) -> str:
        return self.sr3_combo.currentData() or ""

    def selected_regression(self) -> str:
        return self.regression_combo.currentData() or ""

    def _sr3_changed(self) -> None:
        self._show_card(self.selected_sr3())
        self.sr3_selected.emit(self.selected_sr3())

    def _regression_changed(self) -> None:
        self._show_card(self.selected_regression())
        self.regression_selected.emit(self.selected_regression())

    def _show_card(self, name: str | None) -> None:
        card = self._cards.get(name or "")
        self.details.setHtml(card_html(card) if card else "<p>Import an exported SR3 model to begin.</p>")


def card_html(card: ModelCard) -> str:
    """The model card as a short HTML document for the details pane."""
    esc = html.escape
    parts = [f"<h3 style='margin-bottom:2px'>{esc(card.name)}</h3>",
             f"<p><b>{esc(card.kind.upper())}</b> · ×{card.scale} · predicts {esc(card.prediction)}"
             f" · target {esc(card.target)}</p>"]
    if card.description:
        parts.append(f"<p>{esc(card.description)}</p>")
    if card.inference_presets:
        parts.append("<p><b>Presets</b></p><ul style='margin-top:0'>")
        for name in card.preset_names():
            preset = card.inference_presets[name]
            default = f" ({role})" if (role := card.preset_role(name)) else ""
            detail = (f"{preset.steps} steps, {preset.sampler.upper()}, starts from {preset.start}"
                      f" at strength {preset.strength:.2f}")
            if preset.texture_cap:
                detail += f", texture capped at {preset.texture_cap:g}× on flat areas"
            if preset.deblock:
                detail += ", detail smoothed across the network's pixel cells"
            if preset.texture_gain != 1.0:
                detail += f", detail amplified up to {preset.texture_gain:g}×"
            if preset.grain:
                detail += f", grain up to {preset.grain:g}× the input's noise on smooth areas"
            if preset.back_projection:
                detail += f", {preset.back_projection}× back-projection"
            text = f" — {esc(preset.description)}" if preset.description else ""
            scores = ", ".join(f"{esc(k)} {v:.3g}" for k, v in preset.scores.items())
            scores = f"<br/><small>{scores}</small>" if scores else ""
            parts.append(f"<li><b>{esc(name)}</b>{default}: {esc(detail)}{text}{scores}</li>")
        parts.append("</ul>")
    if card.training:
        parts.append("<p><b>Training</b></p>" + _mapping_html(card.training))
    if card.metrics:
        parts.append("<p><b>Metrics</b></p>" + _mapping_html(card.metrics))
    return "".join(parts)


def _mapping_html(data: dict[str, Any], depth: int = 0) -> str:
    rows = []
    for key, value in data.items():
        if isinstance(value, dict) and depth < 2:
            rows.append(f"<li>{html.escape(str(key))}:{_mapping_html(value, depth + 1)}</li>")
        else:
            if isinstance(value, float):
                text = f"{value:.4g}"
            elif isinstance(value, (list, tuple)):
                text = ", ".join(str(v) for v in value)
            else:
                text = str(value)
            rows.append(f"<li>{html.escape(str(key))}: {html.escape(text)}</li>")
    return "<ul style='margin-top:0'>" + "".join(rows) + "</ul>"
