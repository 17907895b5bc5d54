"""Encoding: the file bytes for a result (format policy, ICC, EXIF, 16 bits, alpha), published by the
atomic writer. A save never writes over an input, never replaces an existing file unless asked to,
and never leaves a partial file behind; every failure is an ``ImageSaveError`` naming the file.

An image in memory is encoded whole (Pillow, or ``codecs`` for 16-bit colour). A large image kept on
disk (a ``BlockImage``: ``core.upscale.output_canvas.OutputCanvas``) is read band by band and streamed into the
file: PNG and TIFF by ``codecs`` (no copy of the whole image at all), JPEG and WebP through one
8-bit Pillow image (4 bytes a pixel; Pillow's encoders need the whole image).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
from PIL import Image

from sr3_desktop.core.errors import ImageSaveError, SR3Error
from sr3_desktop.core.imageio.arrays import to_uint8, to_uint16
from sr3_desktop.core.imageio.atomic import atomic_file, describe_os_error
from sr3_desktop.core.imageio.codecs import PNG_COMPRESS_LEVEL, encode_png16, encode_tiff16, write_png, write_tiff
from sr3_desktop.core.imageio.decode import LoadedImage
from sr3_desktop.core.imageio.formats import SAVE_FORMATS, output_format

JPEG_QUALITY = 95
WEBP_QUALITY = 95


class OutputExistsError(ImageSaveError):
    """The output file exists and replacing it was not asked for."""


class BlockImage(Protocol):
    """An image read in bands instead of held whole (``core.upscale.output_canvas.OutputCanvas``)."""

    height: int
    width: int
    on_disk: bool
    """False: ``image`` is the whole image in memory, and it is encoded whole."""

    @property
    def image(self) -> np.ndarray: ...

    def bands(self) -> Iterator[tuple[int, np.ndarray]]:
        """(top, float32 rows in [0, 1]), top to bottom."""
        ...

    def read(self, top: int, bottom: int, left: int = 0, right: int | None = None) -> np.ndarray: ...


def save_image(path: str | os.PathLike[str], rgb: np.ndarray | BlockImage, *,
               alpha: np.ndarray | BlockImage | None = None, source: LoadedImage | None = None, fmt: str | None = None,
               overwrite: bool = False, protected: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Write ``rgb`` (H, W, 3 in [0, 1]: an array, or a BlockImage) atomically to ``path`` and return it.

    The format comes from ``fmt`` or the extension. ``source`` supplies the ICC profile, EXIF,
    bit depth and grayscale-ness to carry over, and its path is protected like ``protected``.
    An existing file is replaced only with ``overwrite``; otherwise ``OutputExistsError`` is raised
    (atomically checked: a file that appears meanwhile is not clobbered either).
    """
    target = Path(path)
    name = target.name or str(target)
    kind = _output_format(target, fmt)
    streamed = not isinstance(rgb, np.ndarray) and rgb.on_disk
    if not streamed:
        pixels, alpha_plane = _checked_pixels(_whole(rgb), None if alpha is None else _whole(alpha), name)
    else:
        assert not isinstance(rgb, np.ndarray)
        _check_blocks(rgb, alpha, name)
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
        payload = None if streamed else encode_image(kind, pixels, alpha_plane, source)
    except MemoryError as exc:
        raise ImageSaveError(f"There is not enough memory to encode {name}.") from exc
    except Exception as exc:
        raise ImageSaveError(f"{name} could not be encoded as {kind.upper()}: {exc}") from exc
    try:
        with atomic_file(target, overwrite=overwrite) as handle:
            if payload is not None:
                handle.write(payload)
            else:
                assert not isinstance(rgb, np.ndarray)
                _stream(handle, kind, rgb, alpha, source, name)
    except FileExistsError:
        raise OutputExistsError(f"Cannot save {name}: a file with that name already exists (it was kept).") from None
    except OSError as exc:
        raise ImageSaveError(describe_os_error(exc, target)) from exc
    except (SR3Error, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        raise ImageSaveError(f"{name} could not be saved: {exc}") from exc
    return target


def _whole(image: np.ndarray | BlockImage) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else image.image


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
    """The file bytes for ``kind`` ("png", "jpg", "webp", "tiff") of a whole image; see ``save_image``."""
    layout = _layout(kind, source, alpha is not None)
    samples = _samples(layout, pixels, alpha)
    if layout.bits == 16 and kind == "png" and layout.channels > 1:
        return encode_png16(samples, layout.icc, layout.exif)
    if layout.bits == 16 and kind == "tiff":
        return encode_tiff16(samples, layout.icc)
    buffer = io.BytesIO()
    _pillow_image(samples).save(buffer, format=_pillow_name(kind), **_pillow_options(layout))
    return buffer.getvalue()


@dataclass(frozen=True)
class _Layout:
    """What the file stores: grey or RGB (+ alpha), 8 or 16 bits, which profile and EXIF."""

    kind: str
    gray: bool
    alpha: bool
    bits: int
    icc: bytes | None
    exif: bytes | None

    @property
    def channels(self) -> int:
        return (1 if self.gray else 3) + (1 if self.alpha else 0)


def _layout(kind: str, source: LoadedImage | None, has_alpha: bool) -> _Layout:
    gray = source is not None and source.grayscale
    icc = _matching_icc(source, gray)
    exif = source.exif if source is not None else None
    alpha = has_alpha and kind != "jpg"  # JPEG has no alpha: composited on white
    if source is not None and source.bit_depth == 16 and kind in ("png", "tiff"):
        if gray and alpha:  # 16-bit grey + alpha is stored as RGBA: Pillow cannot read 16-bit LA back precisely
            return _Layout(kind, False, True, 16, None, exif)
        return _Layout(kind, gray, alpha, 16, icc, exif)
    if kind == "webp" and gray:  # WebP has no grey mode
        return _Layout(kind, False, alpha, 8, None, exif)
    return _Layout(kind, gray, alpha, 8, icc, exif)


def _samples(layout: _Layout, pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """(rows, W, channels) uint8 or uint16 samples of (a band of) the image, as the file stores them."""
    if layout.kind == "jpg" and alpha is not None:
        pixels = pixels * alpha[:, :, None] + (1.0 - alpha[:, :, None])
        alpha = None
    if layout.bits == 16:
        if layout.gray:
            return to_uint16(pixels.mean(axis=2))[:, :, None]
        return to_uint16(np.concatenate([pixels, alpha[:, :, None]], axis=2) if alpha is not None else pixels)
    planes = [pixels.mean(axis=2)] if layout.gray else [pixels[:, :, c] for c in range(3)]
    if alpha is not None:
        planes.append(alpha)
    return to_uint8(np.stack(planes, axis=2))


def _pillow_image(samples: np.ndarray) -> Image.Image:
    if samples.dtype == np.uint16:  # 16-bit grey
        return Image.fromarray(samples[:, :, 0])
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[samples.shape[2]]
    return Image.fromarray(samples[:, :, 0] if mode == "L" else samples, mode=mode)


def _pillow_options(layout: _Layout) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if layout.icc:
        options["icc_profile"] = layout.icc
    if layout.exif:
        options["exif"] = layout.exif
    if layout.kind == "jpg":
        options.update(quality=JPEG_QUALITY, subsampling=0)
    elif layout.kind == "webp":
        options.update(quality=WEBP_QUALITY, method=4)
    elif layout.kind == "png":
        options["compress_level"] = PNG_COMPRESS_LEVEL
    elif layout.kind == "tiff" and layout.bits == 8:
        options.update(compression="tiff_adobe_deflate")
    return options


def _check_blocks(rgb: BlockImage, alpha: np.ndarray | BlockImage | None, name: str) -> None:
    shape = (rgb.height, rgb.width)
    if alpha is None:
        return
    if (alpha.shape[:2] if isinstance(alpha, np.ndarray) else (alpha.height, alpha.width)) != shape:
        raise ImageSaveError(f"Cannot save {name}: the alpha plane does not match the image {shape}.")


def _stream(handle: BinaryIO, kind: str, rgb: BlockImage, alpha: np.ndarray | BlockImage | None,
            source: LoadedImage | None, name: str) -> None:
    """Encode a BlockImage band by band into ``handle`` (PNG and TIFF stream; JPEG and WebP go through one
    8-bit Pillow image)."""
    layout = _layout(kind, source, alpha is not None)

    def blocks() -> Iterator[np.ndarray]:
        for top, rows in rgb.bands():
            bottom = top + rows.shape[0]
            plane = None
            if alpha is not None:
                plane = alpha[top:bottom] if isinstance(alpha, np.ndarray) else alpha.read(top, bottom)
            pixels, plane = _checked_pixels(rows, plane, name)
            yield _samples(layout, pixels, plane)

    if kind == "png":
        write_png(handle, blocks(), rgb.width, rgb.height, layout.channels, layout.bits, layout.icc, layout.exif)
    elif kind == "tiff":
        write_tiff(handle, blocks(), rgb.width, rgb.height, layout.channels, layout.bits, layout.icc)
    else:
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[layout.channels]
        image = Image.new(mode, (rgb.width, rgb.height))
        top = 0
        for samples in blocks():
            image.paste(_pillow_image(samples), (0, top))
            top += samples.shape[0]
        image.save(handle, format=_pillow_name(kind), **_pillow_options(layout))


def _matching_icc(source: LoadedImage | None, gray: bool) -> bytes | None:
    """The source's profile if it fits the output's colour space (ICC header bytes 16..20)."""
    if source is None or not source.icc_profile or len(source.icc_profile) < 20:
        return None
    space = source.icc_profile[16:20]
    return source.icc_profile if space == (b"GRAY" if gray else b"RGB ") else None


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
