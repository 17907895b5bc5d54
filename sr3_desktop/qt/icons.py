"""Icons: qtawesome glyphs that follow the palette, and the app icon from the package resources."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from PySide6.QtGui import QAction, QIcon, QPalette
from PySide6.QtWidgets import QAbstractButton, QApplication, QMenu

from sr3_desktop.core.model_files.folders import resources_dir

# Names of Material Design Icons (mdi6) that the installed qtawesome ships.
NAMES = {
    "open": "mdi6.folder-open",
    "open_folder": "mdi6.folder-multiple-image",
    "paste": "mdi6.content-paste",
    "run": "mdi6.play",
    "cancel": "mdi6.stop",
    "save": "mdi6.content-save",
    "save_as": "mdi6.content-save-edit",
    "fit": "mdi6.fit-to-screen",
    "actual": "mdi6.image-size-select-actual",
    "zoom_in": "mdi6.magnify-plus",
    "zoom_out": "mdi6.magnify-minus",
    "single": "mdi6.image",
    "side": "mdi6.view-grid",
    "wipe": "mdi6.compare-horizontal",
    "all": "mdi6.view-grid",
    "dice": "mdi6.dice-5",
    "lock": "mdi6.lock",
    "unlock": "mdi6.lock-open-variant",
    "import": "mdi6.import",
    "model": "mdi6.cube-outline",
    "about": "mdi6.information-outline",
    "metrics": "mdi6.chart-box-outline",
    "reference": "mdi6.image-search",
    "drop": "mdi6.tray-arrow-down",
    "batch": "mdi6.format-list-checks",
    "done": "mdi6.check-circle",
    "skipped": "mdi6.skip-next-circle",
    "error": "mdi6.alert-circle",
    "running": "mdi6.progress-clock",
    "pending": "mdi6.circle-outline",
    "cancelled": "mdi6.close-circle",
    "noise": "mdi6.grain",
    "clean": "mdi6.creation",
    "settings": "mdi6.cog",
    "quit": "mdi6.exit-to-app",
    "clear": "mdi6.delete-sweep",
    "folder": "mdi6.folder-outline",
    "recent": "mdi6.history",
}
STATUS_COLOURS = {"done": "#2e9d57", "skipped": "#7d8590", "error": "#d1453b", "running": "#2f7dd1",
                  "cancelled": "#b07b16", "pending": "#7d8590"}


def icon(key: str, colour: str | None = None) -> QIcon:
    """A themed icon by our short name (see ``NAMES``), or an empty icon if qtawesome is unusable."""
    app = QApplication.instance()
    text = colour or (app.palette().color(QPalette.ColorRole.ButtonText).name()  # type: ignore[attr-defined]
                      if app else "#444444")
    return _icon(NAMES.get(key, key), text)


@cache
def _icon(name: str, colour: str) -> QIcon:
    try:
        import qtawesome

        return qtawesome.icon(name, color=colour, color_disabled="#8a8a8a")
    except Exception:  # a missing glyph or font must never stop the app
        return QIcon()


GLYPH_PROPERTY = "sr3_glyph"


def set_icon(target: Any, key: str, colour: str | None = None) -> None:
    """Give a button, action or menu a glyph, and remember it so a theme switch can recolour it."""
    target.setIcon(icon(key, colour))
    target.setProperty(GLYPH_PROPERTY, f"{key}|{colour or ''}")


def refresh_all() -> None:
    """Recolour every remembered glyph (after the palette switched between light and dark)."""
    app = QApplication.instance()
    if app is None:
        return
    for window in QApplication.topLevelWidgets():
        targets: list[Any] = [window, *window.findChildren(QAbstractButton), *window.findChildren(QAction),
                              *window.findChildren(QMenu)]
        for target in targets:
            value = target.property(GLYPH_PROPERTY)
            if isinstance(value, str) and "|" in value:
                key, colour = value.split("|", 1)
                target.setIcon(icon(key, colour or None))


def status_icon(status: str) -> QIcon:
    return icon(status, STATUS_COLOURS.get(status, "#7d8590"))


def app_icon_path(name: str = "sr3-desktop.png") -> Path:
    return resources_dir() / "icons" / name


def app_icon() -> QIcon:
    """The app icon: the hand-written SVG, with PNG renderings for platforms without the SVG plug-in."""
    result = QIcon()
    for name in ("sr3-desktop.svg", "sr3-desktop.png", "sr3-desktop@2x.png"):
        path = app_icon_path(name)
        if path.exists():
            result.addFile(str(path))
    return result


def clear_cache() -> None:
    """Forget coloured icons (after the palette changes between light and dark)."""
    _icon.cache_clear()
