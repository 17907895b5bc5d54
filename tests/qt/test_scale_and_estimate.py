"""Issue 11 in the app, with real widgets: the Scale choice changes the output size; the estimate is shown
before a run, and a run estimated over two minutes asks first, offering the fastest preset or regression."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QMessageBox
from qt_helpers import visible_message_boxes
from test_window import load

from sr3_desktop.core.upscale import estimate
from sr3_desktop.qt.dialogs import LONG_RUN_DIALOG_NAME


def press_run(window: Any, qtbot: Any) -> None:
    """Ctrl+Return, as a user presses it (the window is active again once a dialog has closed)."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def run_and_wait(window: Any, qtbot: Any) -> None:
    with qtbot.waitSignal(window.controller.run_finished, timeout=30_000):
        press_run(window, qtbot)


def long_run_dialog(qtbot: Any) -> QMessageBox:
    qtbot.waitUntil(lambda: any(b.objectName() == LONG_RUN_DIALOG_NAME for b in visible_message_boxes()),
                    timeout=10_000)
    return next(b for b in visible_message_boxes() if b.objectName() == LONG_RUN_DIALOG_NAME)


def press(qtbot: Any, box: QMessageBox, key: str) -> None:
    button = next(b for b in box.buttons() if b.objectName() == f"choice-{key}")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def slow_computer(paths: tuple[Path, Path], sr3_seconds_per_pixel: float = 2e-3) -> None:
    """Remember speeds as a slow computer would have measured them (per pixel and evaluation, on "auto")."""
    sr3, regression = paths
    estimate.store_speed(sr3, "auto", estimate.Speed(sr3_seconds_per_pixel, 512 * 512, "CPUExecutionProvider",
                                                     "calibration"))
    estimate.store_speed(regression, "auto", estimate.Speed(1e-5, 512 * 512, "CPUExecutionProvider", "calibration"))


def test_scale_changes_the_output_size(window: Any, qtbot: Any, sample_image: Path) -> None:
    load(window, qtbot, sample_image)  # 24 x 16, the models are 4x
    assert window.compare.sync.frame == QSize(96, 64)
    scale = window.settings_panel.scale
    assert [scale.itemText(i) for i in range(scale.count())] == ["4× (model)", "3×", "2×"]
    scale.setCurrentIndex(scale.findData(2))  # the user picks 2x
    qtbot.waitUntil(lambda: window.compare.sync.frame == QSize(48, 32), timeout=5000)
    run_and_wait(window, qtbot)
    results = window.controller.model.results
    assert {m: r.image.shape for m, r in results.items()} == {m: (32, 48, 3) for m in ("bicubic", "regression", "sr3")}
    with qtbot.waitSignal(window.controller.saved, timeout=10_000) as saved:
        window.save_action.trigger()
    path = saved.args[0]
    assert path.name == "sample_x2_sr3.png"
    with Image.open(path) as written:
        assert written.size == (48, 32)
    assert window.controller.model.settings.output_scale == 2  # remembered
    scale.setCurrentIndex(scale.findData(0))  # back to the model's own scale
    qtbot.waitUntil(lambda: window.compare.sync.frame == QSize(96, 64), timeout=5000)
    assert window.controller.model.results == {}  # results of the other scale are gone


def test_a_short_run_shows_its_estimate_and_starts_without_asking(window: Any, qtbot: Any,
                                                                  sample_image: Path) -> None:
    load(window, qtbot, sample_image)
    qtbot.waitUntil(lambda: window.settings_panel.estimate.text().startswith("About"), timeout=15_000)
    assert "under a second" in window.settings_panel.estimate.text()  # measured here, at start-up
    run_and_wait(window, qtbot)
    assert not any(b.objectName() == LONG_RUN_DIALOG_NAME for b in visible_message_boxes())
    assert "sr3" in window.controller.model.results


def test_a_long_run_asks_first_and_offers_the_fast_preset_or_regression(window: Any, qtbot: Any, sample_image: Path,
                                                                         installed_models: tuple[Path, Path]) -> None:
    load(window, qtbot, sample_image)
    panel, c = window.settings_panel, window.controller
    panel.preset.setCurrentIndex(panel.preset.findData("quality"))  # 20 steps over 96 x 64: 245 s at 2 ms / px
    qtbot.waitUntil(lambda: c.tasks.pending == 0, timeout=15_000)  # the start-up measurement is done
    slow_computer(installed_models)
    panel.seed.setValue(panel.seed.value())  # any edit refreshes the estimate
    panel.samples.setValue(2)
    panel.samples.setValue(1)
    assert panel.estimate.text().startswith("About 4 min")

    press_run(window, qtbot)
    box = long_run_dialog(qtbot)
    assert not c.slot.busy and c.model.results == {}  # nothing started while it asks
    assert "estimated to take about 4 min" in box.text() and "quality preset (20 steps)" in box.text()
    labels = {b.objectName(): b.text() for b in box.buttons()}
    assert labels["choice-fast"].startswith("Use the fast preset (about 49 s")
    assert labels["choice-regression"].startswith("Regression only")
    press(qtbot, box, "cancel")
    qtbot.waitUntil(lambda: not visible_message_boxes(), timeout=5000)
    assert not c.slot.busy and c.model.results == {} and window.status_label.text() == "Not started."

    press_run(window, qtbot)
    with qtbot.waitSignal(c.run_finished, timeout=30_000):
        press(qtbot, long_run_dialog(qtbot), "fast")
    assert c.model.results["sr3"].steps == 4 and c.model.results["sr3"].preset == "fast"
    assert panel.preset.currentData() == "fast" and c.model.settings.preset == "fast"

    slow_computer(installed_models, 1e-2)  # even the fast preset is long now (the run refreshed the speed)
    press_run(window, qtbot)
    with qtbot.waitSignal(c.run_finished, timeout=30_000):
        press(qtbot, long_run_dialog(qtbot), "regression")
    assert set(c.model.results) == {"bicubic", "regression"}
    assert "regression model instead" in window.compare.panes["sr3"].placeholder
    with qtbot.waitSignal(c.saved, timeout=10_000) as saved:
        window.save_action.trigger()  # Save writes the result the user chose
    assert saved.args[0].name == "sample_x4_regression.png"
    with Image.open(saved.args[0]) as written:
        pixels = np.asarray(written.convert("RGB"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(pixels, c.model.results["regression"].image, atol=1 / 255 + 1e-6)
