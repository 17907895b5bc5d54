"""Issue 11: the photo is on screen the moment it opens (drop, File ▸ Open, paste, the command line),
before any run; the bicubic pane fills in at once and the SR3 pane fills in live when a run starts.

Every check reads the pixels of the rendered pane (``QWidget.grab``), not a flag.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QFileDialog
from test_window import drop_files

from sr3_desktop.core.imageio import SUPPORTED_EXTENSIONS
from sr3_desktop.core.imageio.resample import upscale
from sr3_desktop.qt.main_window import PAGE_SINGLE
from sr3_desktop.qt.views.image_panes import ImagePane
from sr3_desktop.qt.views.qimage import qimage_to_rgb

MIN_SAMPLES = 40


def file_pixels(path: Path) -> np.ndarray:
    """The file's RGB pixels read with Pillow alone (not through the app's loader)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def to_u8(rgb: np.ndarray) -> np.ndarray:
    """[0, 1] floats as the view turns them into pixels (round half up)."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def assert_pane_shows(pane: ImagePane, image: np.ndarray) -> None:
    """The rendered pane shows ``image`` (uint8 HWC) stretched over the frame, pixel for pixel.

    Samples a grid over the middle of the frame (clear of the title and caption chips), skipping
    screen pixels that lie within 20 % of a cell edge of ``image`` (rounding at the seams)."""
    rendered = qimage_to_rgb(pane.grab().toImage())
    frame = pane.sync.frame
    cell_x, cell_y = frame.width() / image.shape[1], frame.height() / image.shape[0]
    rect = pane.frame_rect()
    assert rect.width() > 2 * image.shape[1], "the frame is too small on screen to sample"
    checked = 0
    for fy in np.linspace(0.3, 0.7, 15):
        for fx in np.linspace(0.3, 0.7, 15):
            x, y = int(rect.left() + fx * rect.width()), int(rect.top() + fy * rect.height())
            at = pane.to_frame(QPointF(x + 0.5, y + 0.5))
            u, v = at.x() / cell_x, at.y() / cell_y
            if min(u % 1, 1 - u % 1, v % 1, 1 - v % 1) < 0.2:
                continue
            expected = image[math.floor(v), math.floor(u)]
            assert tuple(rendered[y, x]) == tuple(expected), f"screen ({x}, {y}) -> image ({u:.2f}, {v:.2f})"
            checked += 1
    assert checked >= MIN_SAMPLES


def assert_opened_without_a_run(window: Any) -> None:
    c = window.controller
    assert window.stack.currentIndex() == PAGE_SINGLE and window.compare.mode == "single"
    assert not c.slot.busy and c.model.results == {}
    assert window.compare.panes["sr3"].isVisible()  # Single mode shows the SR3 pane...


def test_a_dropped_photo_is_on_screen_at_once(window: Any, qtbot: Any, sample_image: Path) -> None:
    with qtbot.waitSignal(window.controller.image_loaded, timeout=10_000):
        drop_files(window.drop_zone, [sample_image])
    assert_opened_without_a_run(window)
    assert_pane_shows(window.compare.panes["sr3"], file_pixels(sample_image))  # ...and in it, the photo


def test_a_photo_from_file_open_is_on_screen_at_once(window: Any, qtbot: Any, sample_image: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def dialog(_parent: Any, _title: str, _start: str, filters: str) -> tuple[list[str], str]:
        asked.append(filters)
        return [str(sample_image)], filters.split(";;")[0]

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(dialog))
    with qtbot.waitSignal(window.controller.image_loaded, timeout=10_000):
        window.open_action.trigger()
    images = asked[0].split(";;")[0]  # "Images (*.png *.apng ...)"
    offered = set(images[images.index("(") + 1:images.rindex(")")].split())
    assert offered == {f"*{extension}" for extension in SUPPORTED_EXTENSIONS}  # all the loader accepts
    assert {"*.apng", "*.jfif", "*.mpo", "*.dib"} <= offered
    assert_opened_without_a_run(window)
    assert_pane_shows(window.compare.panes["sr3"], file_pixels(sample_image))


def test_a_pasted_image_is_on_screen_at_once(window: Any, qtbot: Any, sample_image: Path) -> None:
    pixels = file_pixels(sample_image)
    height, width = pixels.shape[:2]
    clip = QImage(np.ascontiguousarray(pixels).data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    QGuiApplication.clipboard().setImage(clip)
    with qtbot.waitSignal(window.controller.image_loaded, timeout=10_000):
        qtbot.keyClick(window, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert_opened_without_a_run(window)
    assert_pane_shows(window.compare.panes["sr3"], pixels)


def test_a_photo_named_on_the_command_line_is_on_screen_at_once(installed_models: Any, qtbot: Any,
                                                                sample_image: Path, settings_path: Path) -> None:
    from sr3_desktop.qt.app import create_window
    from sr3_desktop.qt.settings import SettingsStore

    window = create_window([str(sample_image)], SettingsStore(settings_path))  # what main(argv) does
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: window.controller.model.image is not None, timeout=10_000)
        assert_opened_without_a_run(window)
        assert_pane_shows(window.compare.panes["sr3"], file_pixels(sample_image))
    finally:
        window.controller.shutdown()
        window.close()


def test_in_panes_mode_the_photo_and_its_bicubic_show_then_sr3_fills_in_live(window: Any, qtbot: Any,
                                                                            sample_image: Path) -> None:
    window.compare.set_mode("side")  # Panes: bicubic | SR3
    panes = window.compare.panes
    c = window.controller
    with qtbot.waitSignal(c.image_loaded, timeout=10_000):
        drop_files(window.drop_zone, [sample_image])
    assert [m for m in panes if panes[m].isVisible()] == ["bicubic", "sr3"]
    lr = file_pixels(sample_image)
    assert_pane_shows(panes["sr3"], lr)  # the input, at once
    if not panes["bicubic"].has_image():
        qtbot.waitSignal(c.bicubic_shown, timeout=10_000).wait()
    assert not c.slot.busy and c.model.results == {}  # still no run
    bicubic = to_u8(upscale(lr.astype(np.float32) / 255.0, 4))  # the core's bicubic, made here from the file
    assert bicubic.shape == (64, 96, 3)
    assert_pane_shows(panes["bicubic"], bicubic)
    assert_pane_shows(panes["sr3"], lr)

    window.settings_panel.preset.setCurrentIndex(window.settings_panel.preset.findData("quality"))
    with qtbot.waitSignal(window.preview_painted, timeout=30_000):
        window.run_action.trigger()
    preview = panes["sr3"].layer.array
    assert preview is not None and preview.shape == (64, 96, 3)
    assert_pane_shows(panes["sr3"], to_u8(preview))  # the live preview replaced the input
    assert not np.array_equal(to_u8(preview), np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1))
    qtbot.waitUntil(lambda: not c.slot.busy, timeout=30_000)
