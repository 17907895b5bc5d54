"""Fixtures shared by the core tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def empty_model_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Empty bundled-models and user-data folders under tmp_path: (bundled, data)."""
    bundled, data = tmp_path / "bundled", tmp_path / "data"
    bundled.mkdir()
    monkeypatch.setenv("SR3_DESKTOP_BUNDLED_DIR", str(bundled))
    monkeypatch.setenv("SR3_DESKTOP_DATA_DIR", str(data))
    return bundled, data

