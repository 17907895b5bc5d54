"""Light and dark palettes on the Fusion style, following the system's colour scheme (Qt 6.5+)."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from sr3_desktop.qt import icons

THEME_ENV = "SR3_DESKTOP_THEME"  # "light" / "dark" forces a theme (screenshots, user override)
ACCENT = QColor("#3d7be0")


def system_is_dark() -> bool:
    forced = os.environ.get(THEME_ENV, "").lower()
    if forced in ("light", "dark"):
        return forced == "dark"
    hints = QGuiApplication.styleHints()
    return hints.colorScheme() == Qt.ColorScheme.Dark


def palette(dark: bool) -> QPalette:
    pal = QPalette()
    if dark:
        base, window, text, button, mid = "#1e1f22", "#2b2d30", "#dfe1e5", "#3a3d41", "#4e5157"
    else:
        base, window, text, button, mid = "#ffffff", "#f3f4f6", "#1f2328", "#fbfbfc", "#c9ccd1"
    role = QPalette.ColorRole
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        pal.setColor(group, role.Window, QColor(window))
        pal.setColor(group, role.WindowText, QColor(text))
        pal.setColor(group, role.Base, QColor(base))
        pal.setColor(group, role.AlternateBase, QColor(window))
        pal.setColor(group, role.Text, QColor(text))
        pal.setColor(group, role.Button, QColor(button))
        pal.setColor(group, role.ButtonText, QColor(text))
        pal.setColor(group, role.Mid, QColor(mid))
        pal.setColor(group, role.Midlight, QColor(mid).lighter(120))
        pal.setColor(group, role.Dark, QColor(mid).darker(130))
        pal.setColor(group, role.ToolTipBase, QColor(window))
        pal.setColor(group, role.ToolTipText, QColor(text))
        pal.setColor(group, role.PlaceholderText, QColor("#8b9098"))
        pal.setColor(group, role.Highlight, ACCENT)
        pal.setColor(group, role.HighlightedText, QColor("#ffffff"))
        pal.setColor(group, role.Link, ACCENT.lighter(130) if dark else ACCENT)
    disabled = QColor("#6c7077") if dark else QColor("#a0a4aa")
    for r in (role.WindowText, role.Text, role.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, r, disabled)
    pal.setColor(QPalette.ColorGroup.Disabled, role.Base, QColor(window))
    pal.setColor(QPalette.ColorGroup.Disabled, role.Button, QColor(button))
    pal.setColor(QPalette.ColorGroup.Disabled, role.Window, QColor(window))
    return pal


STYLE_SHEET = """
QToolBar { spacing: 4px; padding: 3px 6px; border: none; }
QToolButton { padding: 4px 6px; border-radius: 5px; }
QToolButton:checked { background: palette(highlight); color: palette(highlighted-text); }
QDockWidget::title { padding: 6px 8px; font-weight: 600; }
QGroupBox { font-weight: 600; border: 1px solid palette(mid); border-radius: 6px; margin-top: 12px; padding-top: 6px; }
QGroupBox::title { subcontrol-origin: margin; left: 8px; padding: 0 4px; }
QPushButton#primary { background: palette(highlight); color: palette(highlighted-text); border: none;
                      border-radius: 5px; padding: 6px 14px; font-weight: 600; }
QPushButton#primary:disabled { background: palette(mid); }
QToolButton#runButton { font-weight: 600; padding: 4px 10px; }
QToolButton#paneToggle { border: 1px solid palette(mid); padding: 3px 8px; }
QLabel#hint { color: palette(placeholder-text); }
QProgressBar { border: 1px solid palette(mid); border-radius: 4px; text-align: center; min-height: 14px; }
QProgressBar::chunk { background: palette(highlight); border-radius: 3px; }
"""


def apply_theme(app: QApplication) -> None:
    """Fusion style with our palette; re-applied when the system switches light/dark."""
    app.setStyle("Fusion")
    _apply_palette(app)
    hints = QGuiApplication.styleHints()
    if not app.property("sr3_theme_connected"):
        hints.colorSchemeChanged.connect(lambda _scheme: _apply_palette(app))
        app.setProperty("sr3_theme_connected", True)


def _apply_palette(app: QApplication) -> None:
    dark = system_is_dark()
    app.setPalette(palette(dark))
    app.setStyleSheet(STYLE_SHEET)
    app.setProperty("sr3_dark", dark)
    icons.clear_cache()
    icons.refresh_all()
