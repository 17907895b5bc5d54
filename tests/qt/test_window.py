"""The real window, driven like a user would: drop, run, compare, save, cancel, errors, settings."""

from __future__ import annotations

import hashlib
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl, qVersion
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication, QMessageBox, QTextBrowser
from qt_helpers import visible_message_boxes, write_image

from sr3_desktop.qt.about import APP_LICENCE, NOTICES
from sr3_desktop.qt.main_window import PAGE_BATCH, PAGE_EMPTY, PAGE_SINGLE

REPO = Path(__file__).resolve().parents[2]


def drop_files(widget: Any, paths: list[Path]) -> None:
    """Drag-enter then drop real file URLs on ``widget``'s handlers, as a file manager's drag does
    (offscreen Qt delivers drop events only inside a real drag, so the handlers are called directly)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    where = QPointF(widget.width() / 2, widget.height() / 2)
    enter = QDragEnterEvent(where.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    widget.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(where, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    widget.dropEvent(drop)
    assert drop.isAccepted()


def load(window: Any, qtbot: Any, path: Path) -> None:
    with qtbot.waitSignal(window.controller.image_loaded, timeout=10_000):
        drop_files(window.drop_zone, [path])


def wait_for_dialog(qtbot: Any) -> QMessageBox:
    qtbot.waitUntil(lambda: bool(visible_message_boxes()), timeout=10_000)
    return visible_message_boxes()[0]


def digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_dropping_a_file_and_running_shows_live_previews_then_the_result(window: Any, qtbot: Any,
                                                                         sample_image: Path) -> None:
    assert window.stack.currentIndex() == PAGE_EMPTY
    load(window, qtbot, sample_image)
    assert window.stack.currentIndex() == PAGE_SINGLE
    window.settings_panel.preset.setCurrentIndex(window.settings_panel.preset.findData("quality"))
    shown: list[str] = []
    sr3_pane = window.compare.panes["sr3"]
    window.preview_painted.connect(lambda _step: shown.append(digest(sr3_pane.layer.array)))
    # bicubic and regression results arrive first, so "simple" order: previews, then the SR3 result, then done
    with qtbot.waitSignals([window.controller.preview_shown, window.controller.result_shown,
                            window.controller.run_finished], order="simple", timeout=30_000):
        qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(set(shown)) >= 2, "the live preview should change while refining"
    result = window.controller.model.results["sr3"].image
    assert result.shape == (64, 96, 3)
    assert digest(sr3_pane.layer.array) == digest(result)  # the pane ends on the result
    assert "Step" in window.progress.label.text() and "it/s" in window.progress.label.text()
    assert window.engine_label.text().startswith("Running on ") and "ExecutionProvider" in window.engine_label.text()
    assert window.save_action.isEnabled()


def test_signals_of_a_run_come_in_strict_order(window: Any, qtbot: Any, sample_image: Path) -> None:
    load(window, qtbot, sample_image)
    window.settings_panel.auto_compare.setChecked(False)  # SR3 only
    window.settings_panel.preview_every.setValue(2)  # fast = 4 steps: one preview (step 2), then the result
    c = window.controller
    with qtbot.waitSignals([c.preview_shown, c.result_shown, c.run_finished], order="strict", timeout=30_000,
                           check_params_cbs=[lambda step: step == 2, lambda m: m == "sr3", lambda x: x is False]):
        window.run_action.trigger()
    assert list(c.model.results) == ["sr3"]
    assert "Turned off" in window.compare.panes["regression"].placeholder


def test_the_preview_toggle_switches_between_noisy_and_predicted_images(window: Any, qtbot: Any,
                                                                        sample_image: Path) -> None:
    load(window, qtbot, sample_image)
    window.settings_panel.preset.setCurrentIndex(window.settings_panel.preset.findData("quality"))
    captions: list[str] = []
    window.preview_painted.connect(lambda _s: captions.append(window.compare.panes["sr3"].caption))
    qtbot.keyClick(window, Qt.Key.Key_T)  # y_t
    assert window.controller.model.settings.preview_kind == "y_t"
    with qtbot.waitSignal(window.controller.run_finished, timeout=30_000):
        window.run_action.trigger()
    assert captions and all("yₜ" in c for c in captions)


def test_compare_view_shows_bicubic_regression_and_sr3(window: Any, qtbot: Any, sample_image: Path) -> None:
    load(window, qtbot, sample_image)
    with qtbot.waitSignal(window.controller.run_finished, timeout=30_000):
        window.run_action.trigger()
    qtbot.keyClick(window, Qt.Key.Key_4)  # all four panes
    assert window.compare.mode == "side"
    panes = window.compare.panes
    for method in ("input", "bicubic", "regression", "sr3"):
        assert panes[method].isVisible() and panes[method].has_image(), method
    arrays = {m: panes[m].layer.array for m in ("bicubic", "regression", "sr3")}
    assert all(a.shape == (64, 96, 3) for a in arrays.values())
    assert len({digest(a) for a in arrays.values()}) == 3  # three different methods
    assert panes["input"].layer.nearest and panes["input"].layer.array.shape == (16, 24, 3)
    window.compare.set_visible_panes(["bicubic", "sr3"])
    assert [m for m in panes if panes[m].isVisible()] == ["bicubic", "sr3"]
    qtbot.waitUntil(lambda: window.metrics_panel.value("sr3", "Consistency") != "—", timeout=10_000)
    qtbot.keyClick(window, Qt.Key.Key_3)  # wipe
    assert window.compare.mode == "wipe" and window.compare.wipe.isVisible()
    assert window.compare.wipe.left.array is not None and window.compare.wipe.right.array is not None


def test_panes_share_zoom_and_pan(window: Any, qtbot: Any, sample_image: Path) -> None:
    load(window, qtbot, sample_image)
    window.compare.show_all_panes()
    input_pane, bicubic = window.compare.panes["input"], window.compare.panes["bicubic"]
    qtbot.keyClick(window, Qt.Key.Key_0)  # 100%
    assert not window.compare.sync.fit and window.compare.sync.zoom == 1.0
    assert input_pane.device_zoom() == bicubic.device_zoom() == 1.0
    start = bicubic.frame_rect()  # (five panes in a 3 x 2 grid: the columns may differ by a pixel)
    qtbot.mousePress(input_pane, Qt.MouseButton.LeftButton, pos=QPoint(50, 50))
    qtbot.mouseMove(input_pane, QPoint(70, 60))
    qtbot.mouseRelease(input_pane, Qt.MouseButton.LeftButton, pos=QPoint(70, 60))
    moved = bicubic.frame_rect()  # the other pane moved too
    assert (moved.left() - start.left(), moved.top() - start.top()) == pytest.approx((20, 10))
    input_pane.zoom_at(QPointF(40, 40), 2.0)
    assert bicubic.device_zoom() == pytest.approx(2.0)
    qtbot.keyClick(window, Qt.Key.Key_F)
    assert window.compare.sync.fit


def test_save_writes_a_valid_file_and_never_the_input(window: Any, qtbot: Any, sample_image: Path,
                                                      tmp_path: Path) -> None:
    load(window, qtbot, sample_image)
    before = sample_image.read_bytes()
    with qtbot.waitSignal(window.controller.run_finished, timeout=30_000):
        window.run_action.trigger()
    with qtbot.waitSignal(window.controller.saved, timeout=10_000) as saved:
        qtbot.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    path = Path(saved.args[0])
    assert path.parent == tmp_path / "out" and path.name == "sample_x4_sr3.png"
    with Image.open(path) as image:
        assert image.size == (96, 64) and image.mode == "RGB"
        pixels = np.asarray(image)
    expected = np.round(window.controller.model.results["sr3"].image * 255)
    assert np.abs(pixels.astype(np.float64) - expected).max() <= 1
    for fmt in ("jpg", "webp", "tiff"):  # Save As to the other formats
        target = tmp_path / "out" / f"copy.{fmt}"
        with qtbot.waitSignal(window.controller.saved, timeout=10_000):
            window.controller.saver.save(target, overwrite=True)
        with Image.open(target) as image:
            assert image.size == (96, 64)
    window.controller.saver.save(sample_image, overwrite=True)  # Save As onto the input is refused
    box = wait_for_dialog(qtbot)
    assert "input" in box.text().lower()
    box.done(0)
    assert sample_image.read_bytes() == before
    assert not list((tmp_path / "out").glob(".sr3tmp-*"))


def test_cancel_stops_the_run_and_leaves_no_file(window: Any, qtbot: Any, sample_image: Path,
                                                 tmp_path: Path) -> None:
    load(window, qtbot, sample_image)
    window.settings_panel.preset.setCurrentIndex(window.settings_panel.preset.findData("custom"))
    window.settings_panel.steps.setValue(400)
    with qtbot.waitSignal(window.controller.preview_shown, timeout=30_000):
        window.run_action.trigger()
    assert window.cancel_action.isEnabled()
    with qtbot.waitSignal(window.controller.run_finished, timeout=10_000) as finished:
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert finished.args == [True]
    assert "sr3" not in window.controller.model.results
    qtbot.waitUntil(lambda: window.controller.slot.thread_count() == 0, timeout=10_000)
    assert window.run_action.isEnabled() and not window.cancel_action.isEnabled()
    assert not window.save_action.isEnabled()
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())


def test_a_corrupt_image_gives_a_dialog_not_a_crash(window: Any, qtbot: Any, tmp_path: Path) -> None:
    bad = tmp_path / "inputs" / "photo.png"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("this is a text file named .png")
    drop_files(window.drop_zone, [bad])
    box = wait_for_dialog(qtbot)
    assert box.windowTitle() == "Cannot open image" and "photo.png" in box.text()
    assert "Traceback" not in box.text()
    box.done(0)
    assert window.stack.currentIndex() == PAGE_EMPTY and window.controller.model.image is None


def test_an_invalid_model_gives_a_dialog_and_nothing_is_imported(window: Any, qtbot: Any, invalid_model: Path,
                                                                 isolated_user_folders: Path) -> None:
    models_dir = isolated_user_folders / "models"
    before = sorted(p.name for p in models_dir.iterdir())
    window.controller.models.import_model(invalid_model)
    box = wait_for_dialog(qtbot)
    assert box.windowTitle() == "Model not imported" and "broken.onnx" in box.text()
    box.done(0)
    assert sorted(p.name for p in models_dir.iterdir()) == before
    assert window.model_panel.sr3_combo.count() == 1


def test_importing_a_model_lists_it_and_shows_its_card(make_window: Any, model_files: tuple[Path, Path],
                                                       qtbot: Any) -> None:
    window = make_window()
    assert window.model_panel.sr3_combo.currentData() == ""  # nothing installed yet
    with qtbot.waitSignal(window.controller.models_changed, timeout=10_000):
        window.controller.models.import_model(model_files[0])
    assert window.model_panel.selected_sr3() == "qt-test-sr3"
    html = window.model_panel.details.toPlainText()
    for text in ("qt-test-sr3", "SR3", "×4", "fast", "balanced", "quality", "The paper's chain",
                 "synthetic gradients", "psnr_y"):
        assert text in html, text
    presets = [window.settings_panel.preset.itemData(i) for i in range(window.settings_panel.preset.count())]
    assert presets == ["fast", "balanced", "quality", "compressed", "custom"]


def test_the_detail_box_names_the_presets_own_gain(window: Any) -> None:
    """At 0 the Detail box shows the selected preset's gain ("Preset (1.25×)"), so a user sees what runs.
    Mutation caught: the special text not following the preset."""
    panel = window.settings_panel
    card = window.controller.model.sr3_entry().card
    for name in ("fast", "quality"):
        panel.preset.setCurrentIndex(panel.preset.findData(name))
        assert panel.detail.value() == 0.0
        assert panel.detail.specialValueText() == f"Preset ({card.preset(name).texture_gain:.2f}×)"


def test_settings_persist_across_windows(make_window: Any, installed_models: Any, settings_path: Path,
                                         tmp_path: Path) -> None:
    first = make_window()
    panel = first.settings_panel
    panel.preset.setCurrentIndex(panel.preset.findData("custom"))
    panel.steps.setValue(37)
    panel.strength.setValue(0.45)
    panel.detail.setValue(1.3)
    panel.seed.setValue(1234)
    panel.lock.setChecked(True)
    panel.samples.setValue(3)
    panel.tile.setValue(256)
    panel.output_dir.setText(str(tmp_path / "elsewhere"))
    panel.output_dir.editingFinished.emit()
    panel.output_format.setCurrentIndex(panel.output_format.findData("webp"))
    panel.auto_compare.setChecked(False)
    first.close()
    assert settings_path.is_file()
    second = make_window()
    panel = second.settings_panel
    assert panel.preset.currentData() == "custom" and panel.steps.value() == 37
    assert panel.strength.value() == pytest.approx(0.45) and panel.detail.value() == pytest.approx(1.3)
    assert (panel.seed.value(), panel.lock.isChecked(), panel.samples.value(), panel.tile.value()) == (
        1234, True, 3, 256)
    assert panel.output_dir.text() == str(tmp_path / "elsewhere")
    assert panel.output_format.currentData() == "webp" and not panel.auto_compare.isChecked()
    options = second.controller.runs.refine_options(second.controller.model.sr3_entry().card, panel.seed.value())
    assert (options.steps, options.strength, options.samples, options.tile) == (37, 0.45, 3, 256)


def test_batch_keeps_the_folder_structure_skips_existing_outputs_and_lists_errors(
        window: Any, qtbot: Any, tmp_path: Path) -> None:
    folder = tmp_path / "holiday"
    write_image(folder / "a.png", (16, 12), seed=1)
    write_image(folder / "day2" / "b.jpg", (20, 8), seed=2)
    write_image(folder / "day2" / "c.png", (12, 12), seed=3)
    (folder / "day2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "notes.txt").write_text("not an image")
    existing = tmp_path / "out" / "holiday" / "day2" / "c.png"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"keep me")
    with qtbot.waitSignal(window.controller.batch_ready, timeout=10_000):
        drop_files(window.drop_zone, [folder])
    assert window.stack.currentIndex() == PAGE_BATCH
    assert window.batch_view.table.rowCount() == 4
    with qtbot.waitSignal(window.controller.batch_finished, timeout=60_000) as finished:
        qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    statuses = {item.label: item.status for item in window.controller.model.batch.items}
    assert statuses == {"holiday/a.png": "done", "holiday/day2/b.jpg": "done", "holiday/day2/broken.png": "error",
                        "holiday/day2/c.png": "skipped"}
    with Image.open(tmp_path / "out" / "holiday" / "a.png") as image:
        assert image.size == (64, 48)
    with Image.open(tmp_path / "out" / "holiday" / "day2" / "b.png") as image:
        assert image.size == (80, 32)
    assert existing.read_bytes() == b"keep me"
    summary = finished.args[0]
    assert summary.startswith("Batch finished") and "2 done" in summary and "1 failed" in summary
    assert window.batch_view.summary.text() == finished.args[0]
    broken_row = [i.label for i in window.controller.model.batch.items].index("holiday/day2/broken.png")
    assert window.batch_view.status_text(broken_row) == "Error"
    assert "broken.png" in window.batch_view.table.item(broken_row, 2).text()
    assert not list((tmp_path / "out").rglob(".sr3tmp-*"))


def test_open_with_files_and_recent_files(installed_models: Any, qtbot: Any, sample_image: Path,
                                          settings_path: Path) -> None:
    from sr3_desktop.qt.app import create_window
    from sr3_desktop.qt.settings import SettingsStore

    window = create_window([str(sample_image)], SettingsStore(settings_path))
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: window.controller.model.image is not None, timeout=10_000)
        assert window.stack.currentIndex() == PAGE_SINGLE
        assert [a.toolTip() for a in window.recent_menu.actions()] == [str(sample_image)]
        assert window.windowTitle().startswith("sample.png")
    finally:
        window.controller.shutdown()
        window.close()


def test_paste_an_image_from_the_clipboard(window: Any, qtbot: Any) -> None:
    image = QImage(20, 12, QImage.Format.Format_RGB888)
    image.fill(Qt.GlobalColor.darkCyan)
    QGuiApplication.clipboard().setImage(image)
    with qtbot.waitSignal(window.controller.image_loaded, timeout=10_000):
        qtbot.keyClick(window, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert window.controller.model.image.size == (20, 12)
    assert window.controller.saver.default_output_path().name == "clipboard_x4_sr3.png"
    assert window.controller.model.settings.recent_files == []  # a temp file is no recent file


def test_uncertainty_and_reference_metrics(window: Any, qtbot: Any, tmp_path: Path) -> None:
    hr_path = write_image(tmp_path / "hr.png", (96, 64), seed=9)
    with Image.open(hr_path) as hr:
        small = hr.resize((24, 16), Image.Resampling.BICUBIC)
        small.save(tmp_path / "lr.png")
    load(window, qtbot, tmp_path / "lr.png")
    window.settings_panel.samples.setValue(3)
    with qtbot.waitSignal(window.controller.run_finished, timeout=30_000):
        window.run_action.trigger()
    assert window.metrics_panel.uncertainty.has_image()
    assert "K = 3" in window.metrics_panel.uncertainty_hint.text()
    window.controller.metrics.load_reference(hr_path)
    qtbot.waitUntil(lambda: window.metrics_panel.value("regression", "PSNR-Y") != "—", timeout=10_000)
    qtbot.waitUntil(lambda: all(window.metrics_panel.value(m, "SSIM-Y") != "—"
                                for m in ("bicubic", "regression", "sr3")), timeout=10_000)
    assert window.metrics_panel.value("sr3", "PSNR-Y").endswith("dB")
    assert window.metrics_panel.note.isVisible()
    assert "Saharia" in window.metrics_panel.note.text()
    window.controller.metrics.load_reference(tmp_path / "lr.png")  # wrong size: explained, not crashed
    box = wait_for_dialog(qtbot)
    assert "96×64" in box.text()
    box.done(0)


def test_about_dialog_lists_versions_and_licences(window: Any, qtbot: Any) -> None:
    """The dialog shows the versions installed (as their distributions' metadata says) and the full text of
    every licence file shipped in resources/licenses/ (the project's own from the top-level LICENSE).
    Mutations caught: a version typed in by hand (a stale one) or a bundled distribution left out; a
    notice whose file is not shipped, or is not read into the dialog; a shipped file the dialog omits."""
    window.about_action.trigger()
    qtbot.waitUntil(lambda: any(w.windowTitle() == "About SR3 Desktop" and w.isVisible()
                                for w in QApplication.topLevelWidgets()), timeout=5000)
    dialog = next(w for w in QApplication.topLevelWidgets() if w.windowTitle() == "About SR3 Desktop")
    text = dialog.findChild(QTextBrowser, "about_text").toPlainText()
    dialog.close()
    runtime = [name for name in ("onnxruntime", "onnxruntime-gpu") if _installed(name)]
    for name in ("PySide6-Essentials", "shiboken6", "numpy", "pillow", "onnx", "qtawesome", "platformdirs", *runtime):
        assert re.search(rf"^{re.escape(name)}\s+{re.escape(metadata.version(name))}$", text, re.M), name
    assert re.search(rf"^Qt\s+{re.escape(qVersion())}$", text, re.M) and "Saharia" in text
    shipped = REPO / "resources" / "licenses"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(n.file for n in NOTICES if n.file != APP_LICENCE)
    flat = " ".join(text.split())
    for notice in NOTICES:
        source = REPO / "LICENSE" if notice.file == APP_LICENCE else shipped / notice.file
        licence = " ".join(source.read_text(encoding="utf-8").split())
        assert len(licence) > 900 and licence in flat, notice.file  # a whole licence, not a one-line mention


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_cancelling_a_batch_keeps_finished_outputs_and_marks_the_rest(window: Any, qtbot: Any,
                                                                       tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for index in range(6):
        write_image(folder / f"img{index}.png", (24, 16), seed=index)
    window.settings_panel.preset.setCurrentIndex(window.settings_panel.preset.findData("custom"))
    window.settings_panel.steps.setValue(200)
    with qtbot.waitSignal(window.controller.batch_ready, timeout=10_000):
        window.controller.open_paths([folder])
    c = window.controller
    with qtbot.waitSignal(c.batch_finished, timeout=60_000):
        window.run_action.trigger()
        qtbot.waitUntil(lambda: c.model.batch.items[0].status == "done", timeout=30_000)
        window.cancel_action.trigger()
    statuses = [item.status for item in c.model.batch.items]
    assert statuses[0] == "done" and "cancelled" in statuses and "pending" not in statuses
    written = sorted(p.name for p in (tmp_path / "out" / "many").iterdir())
    assert written == [item.output.name for item in c.model.batch.items if item.status == "done"]  # no partial files
    qtbot.waitUntil(lambda: c.slot.thread_count() == 0, timeout=10_000)
    window.batch_view.clear_button.click()
    assert window.stack.currentIndex() == PAGE_EMPTY and c.model.mode == "empty" and not window.run_action.isEnabled()


def test_desktop_file_and_app_icon_ship_with_the_package(qapp: Any) -> None:
    import configparser

    from sr3_desktop.qt import icons

    desktop = Path(icons.app_icon_path("x")).parent.parent / "sr3-desktop.desktop"
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(desktop, encoding="utf-8")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Exec"] == "sr3-desktop %F" and entry["Icon"] == "sr3-desktop"
    assert "image/png" in entry["MimeType"] and "Graphics" in entry["Categories"]
    for name, side in (("sr3-desktop.png", 256), ("sr3-desktop@2x.png", 512)):
        with Image.open(icons.app_icon_path(name)) as image:
            assert image.size == (side, side) and image.mode == "RGBA"
    assert icons.app_icon_path("sr3-desktop.svg").read_text().lstrip().startswith("<?xml")
    assert not icons.app_icon().isNull()


def test_a_folder_without_images_is_explained(window: Any, qtbot: Any, tmp_path: Path) -> None:
    empty = tmp_path / "documents"
    empty.mkdir()
    (empty / "letter.txt").write_text("no images here")
    drop_files(window.drop_zone, [empty])
    box = wait_for_dialog(qtbot)
    assert box.windowTitle() == "No images found" and "documents" in box.text()
    box.done(0)
    assert window.stack.currentIndex() == PAGE_EMPTY and window.controller.model.mode == "empty"


def test_dropping_on_the_window_and_reopening_a_recent_file(window: Any, qtbot: Any, sample_image: Path,
                                                            tmp_path: Path) -> None:
    load(window, qtbot, sample_image)
    other = write_image(tmp_path / "inputs" / "other.png", (20, 12), seed=3)
    with qtbot.waitSignal(window.controller.image_loaded, timeout=10_000):
        drop_files(window, [other])  # anywhere on the window, not only the empty-state drop zone
    assert window.controller.model.image.size == (20, 12)
    recent = window.recent_menu.actions()
    assert [a.toolTip() for a in recent] == [str(other), str(sample_image)]
    with qtbot.waitSignal(window.controller.image_loaded, timeout=10_000):
        recent[1].trigger()
    assert window.controller.model.image.size == (24, 16) and window.windowTitle().startswith("sample.png")
