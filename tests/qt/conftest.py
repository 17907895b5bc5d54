"""Fixtures for the app's tests: isolated settings and data folders, tiny models, sample images, a window.

Nothing here touches the real user's settings, data or log folders: SR3_DESKTOP_DATA_DIR points
into ``tmp_path`` and QSettings' user scope is redirected there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import onnx
import pytest
from PySide6.QtCore import QCoreApplication, QSettings
from qt_helpers import build_regression, build_sr3, close_dialogs, write_image


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sr3.onnx, regression.onnx): small valid models with embedded cards."""
    folder = tmp_path_factory.mktemp("qt-models")
    sr3, regression = folder / "qt-test-sr3.onnx", folder / "qt-test-regression.onnx"
    onnx.save(build_sr3(), str(sr3))
    onnx.save(build_regression(), str(regression))
    return sr3, regression


@pytest.fixture(scope="session")
def invalid_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad-models") / "broken.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf model" * 20)
    return path


# --- isolation ------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def isolated_user_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Data, logs, settings and the output folder all live under tmp_path."""
    data = tmp_path / "user-data"
    monkeypatch.setenv("SR3_DESKTOP_DATA_DIR", str(data))
    bundled = tmp_path / "bundled-models"  # the tests install their own small models
    bundled.mkdir()
    monkeypatch.setenv("SR3_DESKTOP_BUNDLED_DIR", str(bundled))
    monkeypatch.setenv("SR3_THREADS", "1")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    QCoreApplication.setOrganizationName("SR3 Desktop Tests")
    yield data
    close_dialogs()


@pytest.fixture
def installed_models(model_files: tuple[Path, Path], isolated_user_folders: Path) -> tuple[Path, Path]:
    """The tiny models imported into this test's data folder through the real import path."""
    from sr3_desktop.core.model_files import registry as models

    sr3 = models.import_model(model_files[0])
    regression = models.import_model(model_files[1])
    return sr3.path, regression.path


# --- images ---------------------------------------------------------------------------------------
@pytest.fixture
def sample_image(tmp_path: Path) -> Path:
    return write_image(tmp_path / "inputs" / "sample.png")


# --- the window -----------------------------------------------------------------------------------
@pytest.fixture
def settings_path(tmp_path: Path) -> Path:
    return tmp_path / "settings" / "sr3-desktop.ini"


@pytest.fixture
def make_window(qtbot: Any, settings_path: Path) -> Iterator[Any]:
    """Builds real main windows with settings in ``settings_path``; waits until the model list is in."""
    from sr3_desktop.qt.app import application
    from sr3_desktop.qt.main_window import MainWindow
    from sr3_desktop.qt.settings import SettingsStore

    created: list[Any] = []

    def make(**changes: Any) -> Any:
        application()
        store = SettingsStore(settings_path)
        if changes:
            settings = store.load()
            for key, value in changes.items():
                setattr(settings, key, value)
            store.save(settings)
        window = MainWindow(store)
        qtbot.addWidget(window)
        created.append(window)
        qtbot.waitUntil(lambda: window.controller.tasks.pending == 0, timeout=10_000)
        window.show()
        window.activateWindow()  # window shortcuts (Ctrl+Return, Esc, 1-4) need the active window
        qtbot.waitUntil(window.isActiveWindow, timeout=5000)
        return window

    yield make
    for window in created:
        window.controller.shutdown()
        window.close()


@pytest.fixture
def window(make_window: Any, installed_models: tuple[Path, Path], tmp_path: Path) -> Any:
    """A window with the tiny models installed, quick settings and an output folder in tmp_path."""
    return make_window(output_dir=str(tmp_path / "out"), preset="fast", seed_locked=True, seed=7)



@pytest.fixture
def controller(qtbot: Any, installed_models: tuple[Path, Path], tmp_path: Path) -> Any:
    """The app's controller over a mock view (``MagicMock(spec=View)``, ndv's style), with the test models."""
    from sr3_desktop.qt.controllers.app_controller import Controller
    from sr3_desktop.qt.settings import AppSettings, SettingsStore
    from sr3_desktop.qt.views.protocol import View

    view = MagicMock(spec=View)
    settings = AppSettings(output_dir=str(tmp_path / "out"), preset="fast", seed=3, seed_locked=True)
    ctrl = Controller(view, settings, SettingsStore(tmp_path / "c.ini"))
    with qtbot.waitSignal(ctrl.models_changed, timeout=10_000):
        ctrl.start()
    yield ctrl
    ctrl.shutdown()
