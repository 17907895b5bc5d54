"""The file dialogs. Their filters come from the core's lists of what it reads and writes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from sr3_desktop.core.imageio import OUTPUT_FORMATS, open_dialog_filter, output_format


def save_filters() -> dict[str, str]:
    """Format -> its filter in the Save As dialog, e.g. "JPEG image (*.jpg *.jpeg *.jpe *.jfif)"."""
    return {kind.name: kind.dialog_filter() for kind in OUTPUT_FORMATS}


def ask_images(parent: QWidget, start: str) -> list[str]:
    paths, _ = QFileDialog.getOpenFileNames(parent, "Open images", start, open_dialog_filter())
    return list(paths)


def ask_folder(parent: QWidget) -> str:
    return QFileDialog.getExistingDirectory(parent, "Open a folder of images")


def ask_reference(parent: QWidget) -> str:
    path, _ = QFileDialog.getOpenFileName(parent, "High-resolution reference", "", open_dialog_filter())
    return path


def ask_model(parent: QWidget) -> str:
    title = "Import a model (exported, or a one-pass upscaler such as Real-ESRGAN)"
    path, _ = QFileDialog.getOpenFileName(parent, title, "", "ONNX models (*.onnx)")
    return path


def ask_save_path(parent: QWidget, default: Path, fmt: str) -> str:
    """A path to save to ("" when cancelled); a name without extension gets the chosen filter's."""
    filters = save_filters()
    path, chosen = QFileDialog.getSaveFileName(parent, "Save as", str(default), ";;".join(filters.values()),
                                               filters.get(fmt, ""))
    if path and not Path(path).suffix:
        kind = output_format(next((f for f, label in filters.items() if label == chosen), fmt))
        path += kind.suffix if kind else ""
    return path
