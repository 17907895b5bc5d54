"""App-level behaviour: log file, error hook, stale temp files, settings store, PySide workaround."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject, Signal
from qt_helpers import visible_message_boxes

from sr3_desktop.qt.logs import install_excepthook, setup_logging
from sr3_desktop.qt.settings import AppSettings, SettingsStore


def test_log_file_lives_in_the_per_user_log_folder(isolated_user_folders: Path) -> None:
    path = setup_logging()
    assert path == isolated_user_folders / "logs" / "sr3-desktop.log"
    logging.getLogger("sr3_desktop.test").warning("hello from the test")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "hello from the test" in path.read_text(encoding="utf-8")
    assert setup_logging() == path  # idempotent: one handler


def test_uncaught_errors_are_logged_and_shown_not_printed(isolated_user_folders: Path, qtbot: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from sr3_desktop.core.errors import ImageLoadError
    from sr3_desktop.qt import dialogs

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    log_file = setup_logging()
    install_excepthook(lambda title, message, details: dialogs.show_error(None, title, message, details))
    try:
        raise RuntimeError("boom in a slot")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    qtbot.waitUntil(lambda: bool(visible_message_boxes()), timeout=5000)
    box = visible_message_boxes()[0]
    assert box.windowTitle() == "Unexpected error" and "boom in a slot" in box.text()
    assert str(log_file) in box.text() and "Traceback" in box.detailedText()
    box.done(0)
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "RuntimeError: boom in a slot" in log_file.read_text(encoding="utf-8")
    try:
        raise ImageLoadError("photo.png is not a supported image")
    except ImageLoadError:
        sys.excepthook(*sys.exc_info())
    qtbot.waitUntil(lambda: bool(visible_message_boxes()), timeout=5000)
    box = visible_message_boxes()[0]
    assert box.text() == "photo.png is not a supported image" and not box.detailedText()
    box.done(0)


def test_stale_temp_files_in_the_output_folder_are_removed_on_start(make_window: Any, installed_models: Any,
                                                                    tmp_path: Path, qtbot: Any) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale, fresh, kept = out / ".sr3tmp-crashed.png", out / ".sr3tmp-saving-now.png", out / "result.png"
    for path in (stale, fresh, kept):
        path.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    make_window(output_dir=str(out))
    qtbot.waitUntil(lambda: not stale.exists(), timeout=5000)
    assert fresh.exists() and kept.exists()  # a save in progress elsewhere is left alone


def test_settings_store_round_trips_every_field(tmp_path: Path) -> None:
    path = tmp_path / "s.ini"
    settings = AppSettings(sr3_model="m", regression_model="r", preset="custom", custom_steps=12, strength=0.35,
                           detail=1.2, grain=0.5, seed=99, seed_locked=True, samples=4, ensemble=8, tile=384,
                           device="cpu",
                           output_dir=str(tmp_path / "o"), output_format="tiff", auto_compare=False,
                           preview_kind="y_t", preview_every=3, recent_files=[str(tmp_path / "a.png")])
    SettingsStore(path).save(settings)
    assert path.is_file()
    assert SettingsStore(path).load() == settings
    path.write_text("[run]\nsamples=lots\npreview_kind=bogus\nseed_locked=true\nensemble=3\n")
    loaded = SettingsStore(path).load()
    assert loaded.samples == 1 and loaded.preview_kind == "pred_y0" and loaded.seed_locked and loaded.ensemble == 1


def test_settings_follow_the_data_dir_override(isolated_user_folders: Path) -> None:
    store = SettingsStore()
    store.save(AppSettings(seed=5))
    assert store.path == isolated_user_folders / "settings.ini" and Path(store.path).is_file()


def test_recent_files_keep_the_newest_ten_without_duplicates() -> None:
    settings = AppSettings()
    for index in range(12):
        settings.add_recent(f"/images/{index}.png")
    settings.add_recent("/images/5.png")
    assert settings.recent_files[0] == "/images/5.png" and len(settings.recent_files) == 10
    assert settings.recent_files.count("/images/5.png") == 1


class _Probe(QObject):
    ping = Signal()


def test_many_pyside_calls_do_not_exhaust_none_or_true(qapp: Any) -> None:
    """PySide6 6.12.0 drops a reference to None / True per void call or emit on Python < 3.12 and
    aborts the interpreter after a few thousand calls; pyproject excludes that release."""
    probe = _Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(20_000):
        probe.setObjectName("x")
        probe.ping.emit()
    assert sys.getrefcount(None) > none_before - 1_000
    assert sys.getrefcount(True) > true_before - 1_000


def test_python_m_sr3_desktop_opens_the_window_with_the_files(installed_models: Any, sample_image: Path,
                                                              isolated_user_folders: Path) -> None:
    """The real entry point in a child process: it logs the opened file, then we close it."""
    import subprocess

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SR3_DESKTOP_DATA_DIR=str(isolated_user_folders))
    log_file = isolated_user_folders / "logs" / "sr3-desktop.log"
    child = subprocess.Popen([sys.executable, "-m", "sr3_desktop", str(sample_image)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if log_file.exists() and f"opened {sample_image}" in log_file.read_text(encoding="utf-8"):
                break
            time.sleep(0.2)
        assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
        assert f"opened {sample_image} (24x16, PNG)" in log_file.read_text(encoding="utf-8")
    finally:
        child.send_signal(2)  # SIGINT closes the window cleanly
        try:
            code = child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            raise
    assert code == 0
    assert "SR3 Desktop closed (exit code 0)" in log_file.read_text(encoding="utf-8")
