"""Fixtures shared by the core tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_data_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every core test writes its data (remembered speeds, scratch files, logs) under a temp folder, never into
    the real user's data folder; tests that need a fresh one per test use ``empty_model_folders``."""
    folder = tmp_path_factory.getbasetemp() / "core-data"
    monkeypatch.setenv("SR3_DESKTOP_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def empty_model_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Empty bundled-models and user-data folders under tmp_path: (bundled, data)."""
    bundled, data = tmp_path / "bundled", tmp_path / "data"
    bundled.mkdir()
    monkeypatch.setenv("SR3_DESKTOP_BUNDLED_DIR", str(bundled))
    monkeypatch.setenv("SR3_DESKTOP_DATA_DIR", str(data))
    return bundled, data

