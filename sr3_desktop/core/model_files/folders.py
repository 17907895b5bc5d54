"""The app's folders: the bundled models, the data folder (imported models, remembered verdicts and
speeds, scratch space, logs), the lists of records kept there, and whether a file lies in a model folder."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sr3_desktop.core.imageio.atomic import write_atomically

DATA_DIR_ENV = "SR3_DESKTOP_DATA_DIR"
BUNDLED_DIR_ENV = "SR3_DESKTOP_BUNDLED_DIR"


def resources_dir() -> Path:
    """The bundled resources (models, icons, desktop file): one folder, ``resources/`` at the top of
    the repository. A wheel and the PyInstaller app carry it as the package data folder
    ``sr3_desktop/resources``; a source checkout and an editable install read the top-level one."""
    package = Path(__file__).resolve().parents[2]
    installed = package / "resources"
    return installed if installed.is_dir() else package.parent / "resources"


BUNDLED_DIR = resources_dir() / "models"


def data_dir() -> Path:
    """The app's data folder (SR3_DESKTOP_DATA_DIR, else the platform's user data folder)."""
    override = os.environ.get(DATA_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("sr3-desktop", appauthor=False))


def cache_dir() -> Path:
    """The app's cache folder (SR3_DESKTOP_DATA_DIR/cache, else the platform's user cache folder): files
    that are rebuilt when missing, such as onnxruntime's optimised graphs."""
    if os.environ.get(DATA_DIR_ENV, "").strip():
        return data_dir() / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("sr3-desktop", appauthor=False))


def bundled_models_dir() -> Path:
    """The shipped models (SR3_DESKTOP_BUNDLED_DIR overrides it, e.g. for packagers and tests)."""
    override = os.environ.get(BUNDLED_DIR_ENV, "").strip()
    return Path(override).expanduser() if override else BUNDLED_DIR


def user_models_dir() -> Path:
    """Where imported models are kept."""
    return data_dir() / "models"


def in_model_folders(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is in the bundled or the imported-models folder (shipped, or validated at import)."""
    resolved = Path(path).expanduser().resolve()
    return any(resolved.is_relative_to(folder.expanduser().resolve()) for folder in (bundled_models_dir(),
                                                                                    user_models_dir()))


_RECORDS_LOCK = threading.Lock()
"""Serialises the read-modify-write of ``remember_record`` within the process."""


def read_records(name: str) -> list[dict[str, Any]]:
    """The JSON list of records in ``<data folder>/name``; empty when it is missing or unreadable."""
    try:
        data = json.loads((data_dir() / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [entry for entry in data if isinstance(entry, dict)] if isinstance(data, list) else []


def remember_record(name: str, record: dict[str, Any], keep: int, replaces: Callable[[dict[str, Any]], bool]) -> None:
    """Add ``record`` to ``<data folder>/name`` atomically, dropping the records it ``replaces`` and all but the
    newest ``keep``. A folder that cannot be written leaves it unremembered: a record only saves work.
    Threads of one process take turns (two sessions built at once both remember their file's verdict)."""
    with _RECORDS_LOCK:
        kept = [entry for entry in read_records(name) if not replaces(entry)][-(keep - 1):]
        try:
            data_dir().mkdir(parents=True, exist_ok=True)
            write_atomically(data_dir() / name, json.dumps([*kept, record], indent=1).encode())
        except OSError:
            pass
