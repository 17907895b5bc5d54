"""Per-user folders of the app. ``SR3_DESKTOP_DATA_DIR`` moves all of them (tests, portable use)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from sr3_desktop.core.model_files.folders import DATA_DIR_ENV

APP_NAME = "sr3-desktop"
ORGANISATION = "SR3 Desktop"


def data_dir_override() -> Path | None:
    """The folder named by ``SR3_DESKTOP_DATA_DIR``, if set."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value) if value else None


def log_dir() -> Path:
    """Where the log file lives: the platform's per-user log folder."""
    override = data_dir_override()
    return override / "logs" if override else Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def settings_file() -> Path | None:
    """An INI file for QSettings under the override folder, or None for the platform's native store."""
    override = data_dir_override()
    return override / "settings.ini" if override else None


def default_output_dir() -> Path:
    """Where results go unless the user picks a folder: Pictures/SR3 Desktop."""
    override = data_dir_override()
    if override:
        return override / "output"
    return Path(platformdirs.user_pictures_dir()) / "SR3 Desktop"
