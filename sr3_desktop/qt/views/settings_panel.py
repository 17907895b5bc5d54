"""Run settings: preset or custom steps, strength, seed, samples K, output scale, tile, device, output folder and
format, and the estimated time of a run."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

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

from sr3_desktop.core.imageio import OUTPUT_FORMATS
from sr3_desktop.core.model_files.card import COMPRESSED_QUALITY, ModelCard
from sr3_desktop.core.model_files.denoiser import DEVICE_LABELS, DEVICES, plan_providers
from sr3_desktop.core.upscale.self_ensemble import ENSEMBLE_SIZES
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
        self._add_sampling_rows(form)
        self._add_run_rows(form)
        self._add_output_rows(form)
        self._show_lock(False)

    # --- the form, row by row ---------------------------------------------------------------------
    def _add_sampling_rows(self, form: QFormLayout) -> None:
        """Preset (and its hint), steps, strength, seed (with its dice and lock), samples K."""
        self.preset = _tipped(QComboBox(), "Sampling recipe from the model card; quality is the paper's full "
                                           "chain from noise")
        self.preset.currentIndexChanged.connect(self._preset_changed)
        self.preset_hint = _hint()
        self.steps = self._spin(1, 2000, "Refinement steps (network evaluations). Choose “Custom steps” to edit")
        self.steps.setEnabled(False)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.strength.setSpecialValueText("Preset")
        self.strength.setToolTip("Where the chain starts, as a fraction of the training chain: 1 starts from pure "
                                 "noise (the paper); lower values start from a noised estimate and keep more of it")
        self.strength.valueChanged.connect(self._emit_changed)
        self.detail = self._factor(0.0, 0.05, "How much of SR3's fine texture to keep: it is amplified up to this "
                                   "factor where the image has structure, never on flat areas (sky, skin); below 1 "
                                   "it is damped")
        self.grain = self._factor(-0.25, 0.25, "Photo grain on smooth areas (sky, skin) where the result is smoother "
                                  "than the input's own noise, up to this many times that noise; 0 adds none")
        # (the grain's minimum reads "Preset", so that 0 can mean no grain)
        self.seed = self._spin(0, MAX_SEED, "Random seed: the same seed and settings give the same image")
        self.randomise = _icon_button("dice", "Draw a new random seed", self.randomise_seed)
        self.lock = _icon_button("unlock", "Lock the seed. Unlocked, every run draws a new one")
        self.lock.setCheckable(True)
        self.lock.toggled.connect(self._show_lock)
        self.lock.toggled.connect(self._emit_changed)
        self.samples = self._spin(1, 16, "K samples with different seeds are averaged; K > 1 also shows an "
                                         "uncertainty image")
        form.addRow("Preset", self.preset)
        form.addRow("", self.preset_hint)
        form.addRow("Steps", self.steps)
        form.addRow("Strength", self.strength)
        form.addRow("Detail", self.detail)
        form.addRow("Grain", self.grain)
        form.addRow("Seed", _row(self.seed, self.randomise, self.lock))
        form.addRow("Samples (K)", self.samples)

    def _add_run_rows(self, form: QFormLayout) -> None:
        """Scale, tile, device and how often the live preview is drawn."""
        self.scale = self._combo("The results' size. The model always runs at its own scale; a smaller scale is "
                                 "its result resampled down (antialiased)")
        self.tile = self._spin(0, 4096, "Tile side in output pixels; Auto picks it from a memory budget")
        self.tile.setSingleStep(64)
        self.tile.setSpecialValueText("Auto")
        self.tile.setSuffix(" px")
        self.device = self._combo("Where the model runs; the status bar shows what really runs")
        self.ensemble = self._combo("Self-ensemble: the regression network (SR3's anchor, the Regression pane) "
                                    "and a one-pass model run on flipped and transposed copies of the image, "
                                    "averaged. Sharper structure and fewer artefacts, at that many passes")
        for size in ENSEMBLE_SIZES:
            self.ensemble.addItem("Off" if size == 1 else f"{size}× (slower)", size)
        self.preview_every = self._spin(1, 100, "")
        self.preview_every.setPrefix("every ")
        self.preview_every.setSuffix(" step(s)")
        form.addRow("Scale", self.scale)
        form.addRow("Tile", self.tile)
        form.addRow("Device", self.device)
        form.addRow("Self-ensemble", self.ensemble)
        form.addRow("Live preview", self.preview_every)

    def _add_output_rows(self, form: QFormLayout) -> None:
        """Output folder (with its browse button), format, the compare methods and the estimate."""
        self.output_dir = QLineEdit()
        self.output_dir.setPlaceholderText("Pictures/SR3 Desktop")
        self.output_dir.editingFinished.connect(self._emit_changed)
        browse = _icon_button("folder", "Choose the output folder", self._browse_output)
        self.output_format = self._combo("")
        for kind in OUTPUT_FORMATS:
            self.output_format.addItem(kind.label, kind.name)
        self.auto_compare = _tipped(QCheckBox("Also run the other methods"),
                                    "Runs bicubic, the regression model and an imported one-pass model (if any) "
                                    "with every run, for the compare view and the metrics")
        self.auto_compare.toggled.connect(self._emit_changed)
        self.estimate = _tipped(_hint(), "From this computer's measured speed with the chosen model and device")
        form.addRow("Output folder", _row(self.output_dir, browse))
        form.addRow("Format", self.output_format)
        form.addRow("", self.auto_compare)
        form.addRow("Estimate", self.estimate)

    def _factor(self, minimum: float, step: float, tip: str) -> QDoubleSpinBox:
        """A multiplier up to 3x whose minimum reads "Preset" (the preset's own value)."""
        box = QDoubleSpinBox()
        box.setRange(minimum, 3.0)
        box.setSingleStep(step)
        box.setDecimals(2)
        box.setSuffix("×")
        box.setSpecialValueText("Preset")
        box.setToolTip(tip)
        box.valueChanged.connect(self._emit_changed)
        return box

    def _spin(self, low: int, high: int, tip: str) -> QSpinBox:
        """An integer field whose every edit emits ``changed``."""
        spin = _tipped(QSpinBox(), tip)
        spin.setRange(low, high)
        spin.valueChanged.connect(self._emit_changed)
        return spin

    def _combo(self, tip: str) -> QComboBox:
        """A choice whose every change emits ``changed``."""
        combo = _tipped(QComboBox(), tip)
        combo.currentIndexChanged.connect(self._emit_changed)
        return combo

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
        self.detail.setValue(settings.detail)
        self.grain.setValue(settings.grain if settings.grain >= 0.0 else self.grain.minimum())
        self.seed.setValue(min(MAX_SEED, max(0, settings.seed)))
        self.lock.setChecked(settings.seed_locked)
        self.samples.setValue(settings.samples)
        self.tile.setValue(settings.tile)
        if self.scale.count() == 0:
            self._fill_scales(max(4, settings.output_scale))
        self._select(self.scale, settings.output_scale)
        self._select(self.device, settings.device)
        self._select(self.ensemble, settings.ensemble)
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
        settings.detail = round(self.detail.value(), 4)
        settings.grain = round(self.grain.value(), 4) if self.grain.value() >= 0.0 else -1.0
        settings.seed = self.seed.value()
        settings.seed_locked = self.lock.isChecked()
        settings.samples = self.samples.value()
        settings.tile = self.tile.value()
        settings.output_scale = int(self.scale.currentData() or 0)
        settings.device = self.device.currentData() or "auto"
        settings.ensemble = int(self.ensemble.currentData() or 1)
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
            self.detail.setSpecialValueText(f"Preset ({preset.texture_gain:.2f}×)")
            self.grain.setSpecialValueText(f"Preset ({preset.grain:.2f}×)")
            start = {"noise": "pure noise", "bicubic": "a noised bicubic image",
                     "regression": "a noised regression estimate"}.get(preset.start, preset.start)
            text = preset.description or f"{preset.steps} steps from {start}."
            if name == self._card.default_preset and self._card.compressed_preset:
                text += (f" A JPEG saved at quality {COMPRESSED_QUALITY} or less runs "
                         f"{self._card.compressed_preset.capitalize()} instead.")
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


_Tipped = TypeVar("_Tipped", bound=QWidget)


def _tipped(widget: _Tipped, tip: str) -> _Tipped:
    """``widget`` with its tool tip (none when ``tip`` is empty)."""
    if tip:
        widget.setToolTip(tip)
    return widget


def _hint() -> QLabel:
    """A wrapped, quieter label under or beside a field (the theme styles the "hint" name)."""
    label = QLabel("")
    label.setObjectName("hint")
    label.setWordWrap(True)
    return label


def _icon_button(icon: str, tip: str, clicked: Callable[[], object] | None = None) -> QToolButton:
    button = _tipped(QToolButton(), tip)
    icons.set_icon(button, icon)
    if clicked is not None:
        button.clicked.connect(clicked)
    return button


def _row(field: QWidget, *buttons: QWidget) -> QHBoxLayout:
    """One form row of ``field`` (stretched) followed by small ``buttons``."""
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(field, 1)
    for button in buttons:
        row.addWidget(button)
    return row
