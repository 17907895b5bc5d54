"""About: versions of the app and its engines, licences and credits."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from html import escape
from importlib import metadata
from pathlib import Path

import onnxruntime
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QTextBrowser, QVBoxLayout, QWidget

from sr3_desktop import __version__
from sr3_desktop.core.model_files.folders import resources_dir
from sr3_desktop.qt import icons


@dataclass(frozen=True)
class Notice:
    """One licence the app ships: what it covers, its file in ``resources/licenses/``, and the installed
    distributions it covers (their versions are listed)."""

    component: str
    licence: str
    file: str
    distributions: tuple[str, ...] = ()


APP_LICENCE = "SR3-Desktop.txt"
"""The project's LICENSE as installed (setup.py and pyinstaller.spec copy the top-level file there)."""
NOTICES = (
    Notice("SR3 Desktop", "MIT licence", APP_LICENCE),
    Notice("Qt 6 and Qt for Python (PySide6, shiboken6)", "LGPL v3; dynamically linked, so they can be "
           "replaced by another build", "LGPL-3.0.txt", ("PySide6-Essentials", "shiboken6")),
    Notice("GNU GPL v3", "the licence that the LGPL v3 adds its permissions to", "GPL-3.0.txt"),
    Notice("onnxruntime", "MIT licence, Microsoft", "onnxruntime.txt", ("onnxruntime", "onnxruntime-gpu")),
    Notice("numpy", "BSD 3-clause, with the licences of the code it bundles", "numpy.txt", ("numpy",)),
    Notice("Pillow", "MIT-CMU (HPND) licence, with the licences of the libraries it bundles", "Pillow.txt",
           ("pillow",)),
    Notice("onnx", "Apache 2.0", "onnx.txt", ("onnx",)),
    Notice("platformdirs", "MIT licence", "platformdirs.txt", ("platformdirs",)),
    Notice("QtAwesome", "MIT licence; Material Design Icons (Pictogrammers)", "QtAwesome.txt", ("qtawesome",)),
)


def licences_dir() -> Path:
    """The shipped licence texts: ``licenses/`` of the bundled resources."""
    return resources_dir() / "licenses"


def notice_text(notice: Notice) -> str:
    """The licence text of ``notice``; a source checkout reads the project's own from the top-level LICENSE."""
    path = licences_dir() / notice.file
    if notice.file == APP_LICENCE and not path.is_file():
        path = resources_dir().parent / "LICENSE"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return f"({notice.file} is missing from this installation)"


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """Name -> version of everything that shapes a result or the window (installed distributions as
    their metadata says)."""
    found = {name: version for notice in NOTICES for name in notice.distributions
             if (version := _installed(name)) is not None}
    return {
        "SR3 Desktop": __version__,
        "onnxruntime providers": ", ".join(onnxruntime.get_available_providers()),
        "Qt": qVersion(),
        **found,
        "Python": f"{platform.python_version()} on {platform.system()} {platform.machine()}",
    }


def about_html() -> str:
    rows = "".join(f"<tr><td style='padding-right:14px'>{escape(name)}</td><td>{escape(version)}</td></tr>"
                   for name, version in versions().items())
    licences = "".join(f"<li><a href='#{n.file}'><b>{escape(n.component)}</b></a>: {escape(n.licence)}</li>"
                       for n in NOTICES)
    texts = "".join(f"<h4><a name='{n.file}'></a>{escape(n.component)} ({escape(n.file)})</h4>"
                    f"<pre>{escape(notice_text(n))}</pre>" for n in NOTICES)
    return (
        "<p>Image super-resolution by iterative refinement: a conditional diffusion model that turns noise "
        "into a sharp high-resolution image, one denoising step at a time.</p>"
        "<p>Method: C. Saharia, J. Ho, W. Chan, T. Salimans, D. J. Fleet, M. Norouzi, "
        "<i>Image Super-Resolution via Iterative Refinement</i>, IEEE TPAMI 2023 (arXiv:2104.07636). "
        "This app is an independent implementation; the bundled models are small and trained by this project, "
        "see each model's card for its data and metrics.</p>"
        f"<h4>Versions</h4><table>{rows}</table>"
        f"<h4>Licences and credits</h4><ul>{licences}</ul>{texts}"
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
        text.setObjectName("about_text")
        text.setHtml(about_html())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(text, 1)
        layout.addWidget(buttons)
        self.resize(560, 560)
