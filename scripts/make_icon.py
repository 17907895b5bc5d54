"""Render the hand-written app icon (sr3-desktop.svg) to PNG with QPainter: ``python scripts/make_icon.py``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"


def render(svg: Path, side: int) -> QImage:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG")
    image = QImage(side, side, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    return image


def main() -> int:
    QGuiApplication(sys.argv[:1])
    svg = ICONS / "sr3-desktop.svg"
    for side, name in ((256, "sr3-desktop.png"), (512, "sr3-desktop@2x.png")):
        target = ICONS / name
        if not render(svg, side).save(str(target)):
            raise SystemExit(f"could not write {target}")
        print(f"wrote {target} ({side}x{side})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
