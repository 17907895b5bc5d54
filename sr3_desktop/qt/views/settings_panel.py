"""Run settings: preset or custom steps, strength, seed, samples K, output scale, tile, device, output folder and
format, and the estimated time of a run."""

from __future__ import annotations

import random

import onnxruntime
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from sr3_desktop.core.denoiser import DEVICE_LABELS, DEVICES, plan_providers
from sr3_desktop.core.imageio import OUTPUT_FORMATS
from sr3_desktop.core.model_card import ModelCard
from sr3_desktop.qt import icons
from sr3_desktop.qt.settings import CUSTOM_PRESET, MAX_SEED, AppSettings


def device_choices(available: list[str] | None = None) -> list[tuple[str, str]]:
    """(label, device) for the core's devices that this onnxruntime build can run: those for which
    the core's provider plan needs no fall-back note (``available``: the build's providers)."""
    providers = onnxruntime.get_available_providers() if available is None else available
    return [("Automatic" if device == "auto" else DEVICE_LABELS.get(device, device), device) for device in DEVICES
            if plan_providers(device, providers, nvidia_present=True)[1] is None]


class SettingsPanel(QWidget):
    """Edits an :class:`AppSettings`; emits ``changed`` after every user edit."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._card: ModelCard | None = None
        self._loading = False
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.preset = QComboBox()
        self.preset.setToolTip("Sampling recipe from the model card; quality is the paper's full chain from noise")
        self.preset_hint = QLabel()
        self.preset_hint.setObjectName("hint")
        self.preset_hint.setWordWrap(True)
        self.steps = QSpinBox()
        self.steps.setRange(1, 2000)
        self.steps.setEnabled(False)
        self.steps.setToolTip("Refinement steps (network evaluations). Choose “Custom steps” to edit")
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.strength.setSpecialValueText("Preset")
        self.strength.setToolTip("Where the chain starts, as a fraction of the training chain: 1 starts from pure "
                                 "noise (the paper); lower values start from a noised estimate and keep more of it")

        self.seed = QSpinBox()
        self.seed.setRange(0, MAX_SEED)
        self.seed.setToolTip("Random seed: the same seed and settings give the same image")
        self.randomise = QToolButton()
        icons.set_icon(self.randomise, "dice")
        self.randomise.setToolTip("Draw a new random seed")
        self.randomise.clicked.connect(self.randomise_seed)
        self.lock = QToolButton()
        self.lock.setCheckable(True)
        self.lock.setToolTip("Lock the seed. Unlocked, every run draws a new one")
        self.lock.toggled.connect(self._show_lock)
        seed_row = QHBoxLayout()
        seed_row.setContentsMargins(0, 0, 0, 0)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.randomise)
        seed_row.addWidget(self.lock)

        self.samples = QSpinBox()
        self.samples.setRange(1, 16)
        self.samples.setToolTip("K samples with different seeds are averaged; K > 1 also shows an uncertainty image")
        self.scale = QComboBox()
        self.scale.setToolTip("The results' size. The model always runs at its own scale; a smaller scale is its "
                              "result resampled down (antialiased)")
        self.tile = QSpinBox()
        self.tile.setRange(0, 4096)
        self.tile.setSingleStep(64)
        self.tile.setSpecialValueText("Auto")
        self.tile.setSuffix(" px")
        self.tile.setToolTip("Tile side in output pixels; Auto picks it from a memory budget")
        self.device = QComboBox()
        self.device.setToolTip("Where the model runs; the status bar shows what really runs")
        self.preview_every = QSpinBox()
        self.preview_every.setRange(1, 100)
        self.preview_every.setPrefix("every ")
        self.preview_every.setSuffix(" step(s)")

        self.output_dir = QLineEdit()
        self.output_dir.setPlaceholderText("Pictures/SR3 Desktop")
        browse = QToolButton()
        icons.set_icon(browse, "folder")
        browse.setToolTip("Choose the output folder")
        browse.clicked.connect(self._browse_output)
        output_row = QHBoxLayout()
        output_row.setContentsMargins(0, 0, 0, 0)
        output_row.addWidget(self.output_dir, 1)
        output_row.addWidget(browse)
        self.output_format = QComboBox()
        for kind in OUTPUT_FORMATS:
            self.output_format.addItem(kind.label, kind.name)
        self.estimate = QLabel("")
        self.estimate.setObjectName("hint")
        self.estimate.setWordWrap(True)
        self.estimate.setToolTip("From this computer's measured speed with the chosen model and device")
        self.auto_compare = QCheckBox("Also run the other methods")
        self.auto_compare.setToolTip("Runs bicubic, the regression model and an imported one-pass model (if any) "
                                     "with every run, for the compare view and the metrics")

        form.addRow("Preset", self.preset)
        form.addRow("", self.preset_hint)
        form.addRow("Steps", self.steps)
        form.addRow("Strength", self.strength)
        form.addRow("Seed", seed_row)
        form.addRow("Samples (K)", self.samples)
        form.addRow("Scale", self.scale)
        form.addRow("Tile", self.tile)
        form.addRow("Device", self.device)
        form.addRow("Live preview", self.preview_every)
        form.addRow("Output folder", output_row)
        form.addRow("Format", self.output_format)
        form.addRow("", self.auto_compare)
        form.addRow("Estimate", self.estimate)

        self.preset.currentIndexChanged.connect(self._preset_changed)
        for spin in (self.steps, self.seed, self.samples, self.tile, self.preview_every):
            spin.valueChanged.connect(self._emit_changed)
        self.strength.valueChanged.connect(self._emit_changed)
        self.lock.toggled.connect(self._emit_changed)
        self.device.currentIndexChanged.connect(self._emit_changed)
        self.scale.currentIndexChanged.connect(self._emit_changed)
        self.output_format.currentIndexChanged.connect(self._emit_changed)
        self.output_dir.editingFinished.connect(self._emit_changed)
        self.auto_compare.toggled.connect(self._emit_changed)
        self._show_lock(False)

    # --- filling --------------------------------------------------------------------------------
    def set_model_card(self, card: ModelCard | None, selected: str = "") -> None:
        """List the card's presets (plus Custom steps) and keep ``selected`` if it is one of them."""
        self._card = card
        self._loading = True
        self.preset.clear()
        names = card.preset_names() if card else []
        for name in names:
            self.preset.addItem(name.capitalize(), name)
        self.preset.addItem("Custom steps", CUSTOM_PRESET)
        wanted = selected or (card.default_preset if card else CUSTOM_PRESET)
        index = self.preset.findData(wanted)
        self.preset.setCurrentIndex(index if index >= 0 else 0)
        self._fill_scales(card.scale if card else 4)
        self._preset_changed()
        self._loading = False

    def _fill_scales(self, native: int) -> None:
        """The model's own scale ("4× (model)", stored as 0) and the smaller integer scales."""
        current = self.scale.currentData()
        self.scale.clear()
        self.scale.addItem(f"{native}× (model)", 0)
        for value in range(native - 1, 1, -1):
            self.scale.addItem(f"{value}×", value)
        self._select(self.scale, current if current is not None else 0)

    def show_estimate(self, text: str) -> None:
        self.estimate.setText(text)

    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        """(label, value) pairs, e.g. ("Automatic", "auto"), ("CPU", "cpu")."""
        current = self.device.currentData()
        self._loading = True
        self.device.clear()
        for label, value in devices:
            self.device.addItem(label, value)
        self._select(self.device, current or "auto")
        self._loading = False

    def apply(self, settings: AppSettings) -> None:
        """Show ``settings`` without emitting ``changed``."""
        self._loading = True
        self._select(self.preset, settings.preset or (self._card.default_preset if self._card else CUSTOM_PRESET))
        self._custom_steps = settings.custom_steps
        self.strength.setValue(settings.strength)
        self.seed.setValue(min(MAX_SEED, max(0, settings.seed)))
        self.lock.setChecked(settings.seed_locked)
        self.samples.setValue(settings.samples)
        self.tile.setValue(settings.tile)
        if self.scale.count() == 0:
            self._fill_scales(max(4, settings.output_scale))
        self._select(self.scale, settings.output_scale)
        self._select(self.device, settings.device)
        self.preview_every.setValue(settings.preview_every)
        self.output_dir.setText(settings.output_dir)
        self._select(self.output_format, settings.output_format)
        self.auto_compare.setChecked(settings.auto_compare)
        self._preset_changed()
        self._loading = False

    def collect(self, settings: AppSettings) -> None:
        """Write the widgets' values into ``settings``."""
        preset = self.preset.currentData()
        settings.preset = preset or ""
        if preset == CUSTOM_PRESET:
            settings.custom_steps = self.steps.value()
        settings.strength = round(self.strength.value(), 4)
        settings.seed = self.seed.value()
        settings.seed_locked = self.lock.isChecked()
        settings.samples = self.samples.value()
        settings.tile = self.tile.value()
        settings.output_scale = int(self.scale.currentData() or 0)
        settings.device = self.device.currentData() or "auto"
        settings.preview_every = self.preview_every.value()
        settings.output_dir = self.output_dir.text().strip()
        settings.output_format = self.output_format.currentData() or "png"
        settings.auto_compare = self.auto_compare.isChecked()

    # --- seed -----------------------------------------------------------------------------------
    def randomise_seed(self) -> int:
        self.seed.setValue(random.randint(0, MAX_SEED))
        return self.seed.value()

    def set_seed(self, seed: int) -> None:
        self._loading = True
        self.seed.setValue(seed)
        self._loading = False

    def _show_lock(self, locked: bool) -> None:
        icons.set_icon(self.lock, "lock" if locked else "unlock")
        self.lock.setToolTip("Seed locked: every run uses it" if locked
                             else "Seed unlocked: every run draws a new one. Click to lock")

    # --- internals ------------------------------------------------------------------------------
    _custom_steps = 25

    def _preset_changed(self) -> None:
        name = self.preset.currentData()
        custom = name == CUSTOM_PRESET
        self.steps.setEnabled(custom)
        self._loading, was_loading = True, self._loading
        if custom:
            self.steps.setValue(self._custom_steps)
            self.preset_hint.setText("Your own number of steps, spaced over the preset's chain.")
        elif self._card and name in self._card.inference_presets:
            preset = self._card.inference_presets[name]
            self.steps.setValue(preset.steps)
            self.strength.setSpecialValueText(f"Preset ({preset.strength:.2f})")
            start = {"noise": "pure noise", "bicubic": "a noised bicubic image",
                     "regression": "a noised regression estimate"}.get(preset.start, preset.start)
            text = preset.description or f"{preset.steps} steps from {start}."
            self.preset_hint.setText(text)
        else:
            self.preset_hint.setText("")
        self._loading = was_loading
        self._emit_changed()

    def _emit_changed(self) -> None:
        if self._loading:
            return
        if self.steps.isEnabled():
            self._custom_steps = self.steps.value()
        self.changed.emit()

    def _browse_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.output_dir.text())
        if folder:
            self.output_dir.setText(folder)
            self._emit_changed()

    @staticmethod
    def _select(combo: QComboBox, value: object) -> None:
        index = combo.findData(value)
        if index >= 0:
            combo.setCurrentIndex(index)
