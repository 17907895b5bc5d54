"""About: versions of the app and its engines, licences and credits."""

from __future__ import annotations

import platform
from importlib import metadata

import numpy
import onnxruntime
import PIL
import PySide6
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QTextBrowser, QVBoxLayout, QWidget

from sr3_desktop import __version__
from sr3_desktop.qt import icons


def versions() -> dict[str, str]:
    """Name -> version of everything that shapes a result or the window."""
    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "SR3 Desktop": __version__,
        "onnxruntime": f"{onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())})",
        "Qt": qVersion(),
        "PySide6": PySide6.__version__,
        "numpy": numpy.__version__,
        "Pillow": PIL.__version__,
        "onnx": dist("onnx"),
        "QtAwesome": dist("qtawesome"),
        "Python": f"{platform.python_version()} on {platform.system()} {platform.machine()}",
    }


LICENCES = [
    ("SR3 Desktop", "MIT licence"),
    ("Qt 6 / PySide6", "LGPL v3 (Qt for Python); dynamically linked"),
    ("onnxruntime", "MIT licence, Microsoft"),
    ("numpy", "BSD 3-clause"),
    ("Pillow", "MIT-CMU (HPND) licence"),
    ("onnx", "Apache 2.0"),
    ("platformdirs", "MIT licence"),
    ("QtAwesome", "MIT licence; Material Design Icons (Apache 2.0 / Pictogrammers)"),
]


def about_html() -> str:
    rows = "".join(f"<tr><td style='padding-right:14px'>{name}</td><td>{version}</td></tr>"
                   for name, version in versions().items())
    licences = "".join(f"<li><b>{name}</b>: {text}</li>" for name, text in LICENCES)
    return (
        "<p>Image super-resolution by iterative refinement: a conditional diffusion model that turns noise "
        "into a sharp high-resolution image, one denoising step at a time.</p>"
        "<p>Method: C. Saharia, J. Ho, W. Chan, T. Salimans, D. J. Fleet, M. Norouzi, "
        "<i>Image Super-Resolution via Iterative Refinement</i>, IEEE TPAMI 2023 (arXiv:2104.07636). "
        "This app is an independent implementation; the bundled models are small and trained by this project, "
        "see each model's card for its data and metrics.</p>"
        f"<h4>Versions</h4><table>{rows}</table>"
        f"<h4>Licences and credits</h4><ul>{licences}</ul>"
    )


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About SR3 Desktop")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        logo = QLabel()
        logo.setPixmap(icons.app_icon().pixmap(72, 72))
        title = QLabel(f"<h2 style='margin:0'>SR3 Desktop</h2><div>version {__version__}</div>")
        header = QHBoxLayout()
        header.addWidget(logo)
        header.addWidget(title, 1)
        text = QTextBrowser()
        text.setOpenExternalLinks(True)
        text.setHtml(about_html())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(text, 1)
        layout.addWidget(buttons)
        self.resize(560, 560)
