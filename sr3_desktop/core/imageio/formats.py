"""The one table of image formats: what the loader accepts, and what a result can be saved as.

Every place that turns a name into a format (the CLI's ``--format`` and ``-o`` suffix, the app's
save dialog and output-format setting, the encoder) asks this table, so "jpeg", ".JPG" and "jfif"
mean the same everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePath

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
"""Pillow decoders we trust with user files (MPO comes in through the JPEG decoder)."""
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".webp", ".tif", ".tiff", ".bmp", ".dib", ".gif",
)
"""File suffixes the loader accepts (lower case): the image finder and the Open dialog use these."""


@dataclass(frozen=True)
class OutputFormat:
    """One format a result can be saved as."""

    name: str
    """The canonical name: "png", "jpg", "webp" or "tiff" (``--format`` choices, settings values)."""
    suffix: str
    """The suffix of planned output files, e.g. ".jpg"."""
    aliases: tuple[str, ...]
    """Other suffixes / names that mean this format (without the dot), e.g. ("jpeg", "jpe", "jfif")."""
    label: str
    """What a file dialog calls it, e.g. "JPEG image"."""
    pillow: str
    """Pillow's format name for the encoder."""

    @property
    def suffixes(self) -> tuple[str, ...]:
        """Every suffix of this format, the planned one first: (".jpg", ".jpeg", ".jpe", ".jfif")."""
        return (self.suffix, *(f".{alias}" for alias in self.aliases))

    def dialog_filter(self) -> str:
        """A file-dialog filter such as "JPEG image (*.jpg *.jpeg *.jpe *.jfif)"."""
        return f"{self.label} ({' '.join('*' + s for s in self.suffixes)})"


OUTPUT_FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat("png", ".png", (), "PNG image", "PNG"),
    OutputFormat("jpg", ".jpg", ("jpeg", "jpe", "jfif"), "JPEG image", "JPEG"),
    OutputFormat("webp", ".webp", (), "WebP image", "WEBP"),
    OutputFormat("tiff", ".tiff", ("tif",), "TIFF image", "TIFF"),
)
SAVE_FORMATS: tuple[str, ...] = tuple(f.name for f in OUTPUT_FORMATS)
"""The canonical output format names, png first (the default)."""
DEFAULT_FORMAT = "png"

_BY_WORD = {word: f for f in OUTPUT_FORMATS for word in (f.name, *f.aliases)}


def output_format(name_or_suffix: str) -> OutputFormat | None:
    """The format a name or suffix means ("jpeg", ".JPG", "tif" ...), or None when it is not one we write."""
    return _BY_WORD.get(name_or_suffix.strip().lower().lstrip("."))


def format_of_path(path: str | os.PathLike[str]) -> OutputFormat | None:
    """The output format a file name's suffix means, or None (no suffix, or one we do not write)."""
    suffix = PurePath(path).suffix
    return output_format(suffix) if suffix else None


def is_input_suffix(suffix: str) -> bool:
    """Whether the loader accepts files with this suffix (case-insensitive, with the dot)."""
    return suffix.lower() in SUPPORTED_EXTENSIONS


def open_dialog_filter() -> str:
    """The Open dialog's filter: every suffix the loader accepts, then all files."""
    return f"Images ({' '.join('*' + s for s in SUPPORTED_EXTENSIONS)});;All files (*)"
