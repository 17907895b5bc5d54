"""Encoding: the file bytes for a result (format policy, ICC, EXIF, 16 bits, alpha), published by the
atomic writer. A save never writes over an input, never replaces an existing file unless asked to,
and never leaves a partial file behind; every failure is an ``ImageSaveError`` naming the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sr3_desktop.core.errors import ImageSaveError, SR3Error
from sr3_desktop.core.imageio.arrays import to_uint8, to_uint16
from sr3_desktop.core.imageio.atomic import atomic_file, describe_os_error
from sr3_desktop.core.imageio.codecs import encode_png16, encode_tiff16
from sr3_desktop.core.imageio.decode import LoadedImage
from sr3_desktop.core.imageio.formats import SAVE_FORMATS, output_format

JPEG_QUALITY = 95
WEBP_QUALITY = 95


class OutputExistsError(ImageSaveError):
    """The output file exists and replacing it was not asked for."""


def save_image(path: str | os.PathLike[str], rgb: np.ndarray, *, alpha: np.ndarray | None = None,
               source: LoadedImage | None = None, fmt: str | None = None, overwrite: bool = False,
               protected: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Write ``rgb`` (H, W, 3 in [0, 1]) atomically to ``path`` and return it.

    The format comes from ``fmt`` or the extension. ``source`` supplies the ICC profile, EXIF,
    bit depth and grayscale-ness to carry over, and its path is protected like ``protected``.
    An existing file is replaced only with ``overwrite``; otherwise ``OutputExistsError`` is raised
    (atomically checked: a file that appears meanwhile is not clobbered either).
    """
    target = Path(path)
    name = target.name or str(target)
    kind = _output_format(target, fmt)
    pixels, alpha_plane = _checked_pixels(rgb, alpha, name)
    guarded = [Path(p) for p in protected] + ([source.path] if source is not None and str(source.path) != "." else [])
    for guarded_path in guarded:
        if _is_same_file(target, guarded_path):
            raise ImageSaveError(f"Refusing to write {name}: it is the input image {guarded_path.name}. "
                                 "Choose another output name or folder.")
    folder = target.parent
    _check_folder(folder, name)
    if target.is_dir():
        raise ImageSaveError(f"Cannot save {name}: a folder with that name exists.")
    try:
        payload = encode_image(kind, pixels, alpha_plane, source)
    except MemoryError as exc:
        raise ImageSaveError(f"There is not enough memory to encode {name}.") from exc
    except Exception as exc:
        raise ImageSaveError(f"{name} could not be encoded as {kind.upper()}: {exc}") from exc
    try:
        with atomic_file(target, overwrite=overwrite) as handle:
            handle.write(payload)
    except FileExistsError:
        raise OutputExistsError(f"Cannot save {name}: a file with that name already exists (it was kept).") from None
    except OSError as exc:
        raise ImageSaveError(describe_os_error(exc, target)) from exc
    except (SR3Error, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        raise ImageSaveError(f"{name} could not be saved: {exc}") from exc
    return target


def save_notes(fmt: str, *, alpha: np.ndarray | None, source: LoadedImage | None) -> list[str]:
    """What a save to ``fmt`` will lose, for the app or CLI to show (empty when nothing)."""
    kind = _output_format(Path("x"), fmt)
    notes = []
    if alpha is not None and kind == "jpg":
        notes.append("JPEG has no transparency: the image was composited onto white.")
    if source is not None and source.bit_depth == 16 and kind in ("jpg", "webp"):
        notes.append(f"{kind.upper()} stores 8 bits per sample: the 16-bit precision of the input is reduced.")
    if source is not None and source.bit_depth == 16 and kind == "tiff" and source.exif:
        notes.append("16-bit colour TIFF output does not carry EXIF data.")
    return notes


def encode_image(kind: str, pixels: np.ndarray, alpha: np.ndarray | None, source: LoadedImage | None) -> bytes:
    """The file bytes for ``kind`` ("png", "jpg", "webp", "tiff"); see ``save_image``."""
    gray = source is not None and source.grayscale
    sixteen = source is not None and source.bit_depth == 16 and kind in ("png", "tiff")
    icc = _matching_icc(source, gray)
    exif = source.exif if source is not None else None
    if kind == "jpg" and alpha is not None:  # JPEG has no alpha: composite on white
        pixels = pixels * alpha[:, :, None] + (1.0 - alpha[:, :, None])
        alpha = None
    if sixteen:
        return _encode_sixteen(kind, pixels, alpha, gray, icc, exif)
    return _encode_eight(kind, pixels, alpha, gray and kind != "webp", icc if kind != "webp" or not gray else None,
                         exif)


def _matching_icc(source: LoadedImage | None, gray: bool) -> bytes | None:
    """The source's profile if it fits the output's colour space (ICC header bytes 16..20)."""
    if source is None or not source.icc_profile or len(source.icc_profile) < 20:
        return None
    space = source.icc_profile[16:20]
    return source.icc_profile if space == (b"GRAY" if gray else b"RGB ") else None


def _encode_eight(kind: str, pixels: np.ndarray, alpha: np.ndarray | None, gray: bool, icc: bytes | None,
                  exif: bytes | None) -> bytes:
    planes = [pixels.mean(axis=2)] if gray else [pixels[:, :, c] for c in range(3)]
    if alpha is not None:
        planes.append(alpha)
    stacked = to_uint8(np.stack(planes, axis=2))
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[stacked.shape[2]]
    image = Image.fromarray(stacked[:, :, 0] if mode == "L" else stacked, mode=mode)
    options: dict[str, Any] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if kind == "jpg":
        options.update(quality=JPEG_QUALITY, subsampling=0)
    elif kind == "webp":
        options.update(quality=WEBP_QUALITY, method=4)
    elif kind == "tiff":
        options.update(compression="tiff_adobe_deflate")
    buffer = io.BytesIO()
    image.save(buffer, format=_pillow_name(kind), **options)
    return buffer.getvalue()


def _encode_sixteen(kind: str, pixels: np.ndarray, alpha: np.ndarray | None, gray: bool, icc: bytes | None,
                    exif: bytes | None) -> bytes:
    if gray and alpha is None:
        plane = to_uint16(pixels.mean(axis=2))
        if kind == "png":  # Pillow writes 16-bit grayscale PNG and TIFF itself
            buffer = io.BytesIO()
            options: dict[str, Any] = {"icc_profile": icc} if icc else {}
            if exif:
                options["exif"] = exif
            Image.fromarray(plane).save(buffer, format="PNG", **options)
            return buffer.getvalue()
        return encode_tiff16(plane[:, :, None], icc)
    planes = np.concatenate([pixels, alpha[:, :, None]], axis=2) if alpha is not None else pixels
    if gray:  # 16-bit grey + alpha is stored as RGBA: Pillow cannot read 16-bit LA back precisely
        icc = None
    samples = to_uint16(planes)
    if kind == "png":
        return encode_png16(samples, icc, exif)
    return encode_tiff16(samples, icc)



def _output_format(target: Path, fmt: str | None) -> str:
    raw = fmt if fmt is not None else target.suffix
    found = output_format(raw)
    if found is None:
        cleaned = raw.strip().lower().lstrip(".")
        shown = f"'{cleaned}'" if cleaned else "none (the name has no extension)"
        raise ImageSaveError(f"Cannot save {target.name or target}: the output format {shown} is not supported; "
                             f"use one of {', '.join(SAVE_FORMATS)}.")
    return found.name


def _checked_pixels(rgb: np.ndarray, alpha: np.ndarray | None, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    pixels = np.asarray(rgb, dtype=np.float32)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ImageSaveError(f"Cannot save {name}: expected an (H, W, 3) image, got shape {pixels.shape}.")
    pixels = np.clip(np.nan_to_num(pixels, nan=0.0), 0.0, 1.0)
    if alpha is None:
        return pixels, None
    plane = np.asarray(alpha, dtype=np.float32)
    if plane.shape != pixels.shape[:2]:
        raise ImageSaveError(f"Cannot save {name}: alpha {plane.shape} does not match the image {pixels.shape[:2]}.")
    return pixels, np.clip(np.nan_to_num(plane, nan=1.0), 0.0, 1.0)


def _is_same_file(a: Path, b: Path) -> bool:
    """Same file by resolved path (relative paths, symlinks) or by inode (hardlinks)."""
    try:
        if os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b)):
            return True
    except (OSError, ValueError):
        pass
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _check_folder(folder: Path, name: str) -> None:
    shown = str(folder) if str(folder) not in ("", ".") else "the current folder"
    if not folder.exists():
        raise ImageSaveError(f"Cannot save {name}: the folder {shown} does not exist.")
    if not folder.is_dir():
        raise ImageSaveError(f"Cannot save {name}: {shown} is not a folder.")


def _pillow_name(kind: str) -> str:
    found = output_format(kind)
    assert found is not None  # kind comes from _output_format
    return found.pillow
