"""Views and helpers on their own: image conversion, zoom maths, progress text, batch planning, panels."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, QSize, QUrl
from PySide6.QtGui import QImage
from qt_helpers import make_card, write_image

from sr3_desktop.qt.batch_worker import plan_batch, summary
from sr3_desktop.qt.view_data import RESULT_METHODS, BatchItem, MetricsRow
from sr3_desktop.qt.views.compare_view import CompareView
from sr3_desktop.qt.views.drop_zone import paths_from_mime
from sr3_desktop.qt.views.image_panes import ImagePane, ViewSync
from sr3_desktop.qt.views.metrics_panel import MetricsPanel
from sr3_desktop.qt.views.model_panel import card_html
from sr3_desktop.qt.views.progress_bar import ProgressClock, format_duration, format_progress
from sr3_desktop.qt.views.qimage import heatmap_rgb, qimage_to_rgb, rgb_to_qimage


def test_rgb_to_qimage_rounds_clips_and_owns_its_pixels(qapp: Any) -> None:
    rgb = np.array([[[0.0, 0.5, 1.0], [1.5, -0.2, 0.25]]], dtype=np.float32)
    image = rgb_to_qimage(rgb)
    rgb[:] = 0  # the QImage must not share the numpy buffer
    assert (image.width(), image.height()) == (2, 1)
    assert image.pixelColor(0, 0).getRgb()[:3] == (0, 128, 255)
    assert image.pixelColor(1, 0).getRgb()[:3] == (255, 0, 64)
    assert np.array_equal(qimage_to_rgb(image), np.array([[[0, 128, 255], [255, 0, 64]]], np.uint8))


def test_qimage_to_rgb_handles_padded_rows(qapp: Any) -> None:
    image = QImage(5, 3, QImage.Format.Format_ARGB32)  # 5 px wide: RGB888 rows get padded to 16 bytes
    image.fill(0xFF102030)
    pixels = qimage_to_rgb(image)
    assert pixels.shape == (3, 5, 3) and (pixels == [16, 32, 48]).all()


def test_heatmap_runs_dark_to_bright() -> None:
    ramp = heatmap_rgb(np.array([[0.0, 0.5, 1.0]], np.float32))
    brightness = ramp.astype(int).sum(axis=2)[0]
    assert ramp.dtype == np.uint8 and brightness[0] < brightness[1] < brightness[2]
    assert (heatmap_rgb(np.zeros((2, 2), np.float32)) == heatmap_rgb(np.zeros((1, 1), np.float32))[0, 0]).all()


def test_progress_text_and_clock() -> None:
    assert format_progress(12, 50, 3.44, 11.2) == "Step 12/50 · 3.4 it/s · ETA 0:11"
    assert format_progress(1, 4, None, None) == "Step 1/4 · – it/s · ETA –"
    assert format_duration(3725) == "1:02:05"
    clock = ProgressClock(now=0.0)
    assert clock.rate(1, now=0.5) == pytest.approx(2.0)
    assert clock.rate(5, now=1.5) == pytest.approx(4.0)  # measured from the first step on
    assert ProgressClock.eta(5, 25, 4.0) == pytest.approx(5.0)


def test_shared_view_zoom_is_in_device_pixels(qapp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sync = ViewSync()
    pane = ImagePane(sync, "SR3")
    pane.resize(400, 300)
    sync.set_frame(QSize(200, 100))
    sync.set_zoom(1.0)  # 100%: one image pixel per device pixel
    assert pane.frame_rect().width() == pytest.approx(200)
    monkeypatch.setattr(pane, "devicePixelRatioF", lambda: 2.0)  # a HiDPI screen
    assert pane.frame_rect().width() == pytest.approx(100)  # 100 logical = 200 device pixels
    sync.set_fit()
    assert pane.device_zoom() == pytest.approx(min((400 - 12) * 2 / 200, (300 - 12) * 2 / 100))


def test_zoom_keeps_the_point_under_the_cursor(qapp: Any) -> None:
    sync = ViewSync()
    pane = ImagePane(sync, "SR3")
    pane.resize(400, 300)
    sync.set_frame(QSize(400, 300))
    sync.set_zoom(1.0)
    anchor = QPointF(300, 100)
    before = pane.to_frame(anchor)
    pane.zoom_at(anchor, 2.0)
    after = pane.to_frame(anchor)
    assert (after.x(), after.y()) == pytest.approx((before.x(), before.y()))
    assert sync.zoom == pytest.approx(2.0)


def test_compare_view_shows_two_to_four_panes(qapp: Any) -> None:
    view = CompareView()
    view.set_mode("side")
    with pytest.raises(ValueError):
        view.set_visible_panes(["sr3"])
    view.set_visible_panes(["input", "regression", "sr3"])
    assert view.shown_methods() == ["input", "regression", "sr3"]
    view.pane_actions["sr3"].setChecked(False)
    view.pane_actions["input"].setChecked(False)  # would leave one pane: refused
    assert view.shown_methods() == ["input", "regression"] and view.pane_actions["input"].isChecked()
    view.set_mode("wipe")
    assert view.shown_methods() == ["bicubic", "sr3"]


def test_drop_mime_takes_only_local_files(qapp: Any) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile("/images/a.png"), QUrl("https://example.org/b.png")])
    assert paths_from_mime(mime) == ["/images/a.png"]
    assert paths_from_mime(QMimeData()) == []


def test_plan_batch_keeps_structure_and_avoids_collisions(tmp_path: Path) -> None:
    root = tmp_path / "shoot"
    for name in ("a.png", "a.jpg", "sub/b.webp", "sub/deeper/c.tif", ".hidden/d.png", "sub/.e.png"):
        write_image(root / name, (8, 8))
    (root / "readme.txt").write_text("x")
    loose = write_image(tmp_path / "loose.bmp", (8, 8))
    out = tmp_path / "out"
    items = plan_batch([root, loose], out, "png")
    outputs = {i.label: i.output.relative_to(out).as_posix() for i in items}
    assert outputs == {"shoot/a.jpg": "shoot/a.png", "shoot/a.png": "shoot/a_png.png",
                       "shoot/sub/b.webp": "shoot/sub/b.png", "shoot/sub/deeper/c.tif": "shoot/sub/deeper/c.png",
                       "loose.bmp": "loose.png"}


def test_plan_batch_ignores_its_own_output_folder(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_image(root / "a.png", (8, 8))
    write_image(root / "upscaled" / "photos" / "a.png", (32, 32))  # an earlier run's output inside the input
    items = plan_batch([root], root / "upscaled", "png")
    assert [i.label for i in items] == ["photos/a.png"]


def test_batch_summary_counts_each_status() -> None:
    items = [BatchItem(Path("a"), Path("b"), "a", status) for status in ("done", "done", "skipped", "error")]
    assert summary(items, 75) == "Batch finished in 1:15: 2 done, 1 skipped (output exists), 1 failed."


def test_metrics_panel_formats_and_marks_the_best(qapp: Any) -> None:
    panel = MetricsPanel()
    panel.set_rows([MetricsRow("bicubic", 3.0, 25.0, 0.7, 0.09, 0.3, 2.9, 0.25),
                    MetricsRow("regression", 2.0, 27.5, 0.8, 0.05, 0.4, 1.5, 0.45),
                    MetricsRow("sr3", 4.0, 24.0, 0.65, 0.06, 1.3, 0.6, 0.40)], has_reference=True)
    assert panel.value("regression", "PSNR-Y") == "27.50 dB" and panel.value("sr3", "SSIM-Y") == "0.6500"
    assert (panel.value("sr3", "Grain"), panel.value("sr3", "Spectral gap")) == ("1.30", "0.600")
    table = panel.table
    bold = {(r, c) for r in range(table.rowCount()) for c in range(table.columnCount())
            if table.item(r, c).font().bold()}
    # regression wins consistency, fidelity, structure and detail; SR3's grain (1.3) is nearer 1 than 0.4
    # and its spectral gap is the smallest
    reg, sr3 = RESULT_METHODS.index("regression"), RESULT_METHODS.index("sr3")
    assert bold == {(0, reg), (1, reg), (2, reg), (3, reg), (4, sr3), (5, sr3), (6, reg)}
    assert not panel.note.isHidden()


def test_card_html_shows_presets_training_and_metrics() -> None:
    html = card_html(make_card("sr3"))
    for text in ("qt-test-sr3", "SR3", "×4", "fast", "balanced", "(default)", "quality", "DDPM", "strength 1.00",
                 "synthetic gradients", "psnr_y", "bicubic: 24.1"):
        assert text in html, text


def test_card_html_names_a_presets_texture_cap_and_gain() -> None:
    """Mutation caught: the gain left out of the preset's line (a user could not tell why fast is crisper)."""
    card = make_card("sr3")
    fast = replace(card.inference_presets["fast"], texture_cap=4.0, texture_gain=1.25)
    html = card_html(card.with_updates(inference_presets={**card.inference_presets, "fast": fast}))
    assert "texture capped at 4× on flat areas" in html and "detail amplified up to 1.25×" in html
    assert html.count("detail amplified") == 1  # presets at gain 1 say nothing


def test_mouse_wheel_zooms_every_pane(qapp: Any) -> None:
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    view = CompareView()
    view.resize(900, 600)
    view.set_frame(200, 100)
    view.show_all_panes()
    view.show()
    pane = view.panes["bicubic"]
    before = pane.device_zoom()
    wheel = QWheelEvent(QPointF(40, 40), QPointF(pane.mapToGlobal(QPoint(40, 40))), QPoint(0, 0), QPoint(0, 120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(pane, wheel)
    assert not view.sync.fit and view.sync.zoom == pytest.approx(before * 1.25)
    assert view.panes["sr3"].device_zoom() == pytest.approx(before * 1.25)
    assert view.zoom_label.text() == f"{before * 125:.0f}%"
