"""Safe image loading and saving.

Loading decodes only an allowlist of formats, refuses decompression bombs before any pixel is
decoded, forces a full decode (so truncated files fail here, not later), honours EXIF orientation
and turns every mode into float32 RGB in [0, 1] plus an optional alpha plane. Saving writes a
temp file in the target folder, fsyncs it, then publishes it atomically; it never writes over an
input and never leaves a partial file behind. Every failure is an ``ImageLoadError`` or an
``ImageSaveError`` whose message names the file. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import struct
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from sr3_desktop.core import resample
from sr3_desktop.core.errors import ImageLoadError, ImageSaveError, SR3Error

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
"""Pillow decoders we trust with user files (MPO comes in through the JPEG decoder)."""
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".webp", ".tif", ".tiff", ".bmp", ".dib", ".gif",
)
SAVE_FORMATS: tuple[str, ...] = ("png", "jpg", "webp", "tiff")
MAX_INPUT_PIXELS = 8192 * 8192
"""64 MP: larger inputs are refused from the header alone, before decoding."""
MAX_OUTPUT_PIXELS = 8192 * 8192
"""64 MP: an upscale that would produce more is refused before any work starts."""
TEMP_PREFIX = ".sr3tmp-"
JPEG_QUALITY = 95
WEBP_QUALITY = 95

_FORMAT_ALIASES = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "jpe": "jpg", "webp": "webp", "tif": "tiff",
                   "tiff": "tiff"}
_MULTI_FRAME_KIND = {"GIF": "animated GIF", "PNG": "animated PNG", "TIFF": "multi-page TIFF",
                     "MPO": "multi-picture JPEG (MPO)", "WEBP": "animated WebP"}
# Magic numbers: files that look like one of these but do not decode are damaged, not foreign.
_OUR_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM")
_FOREIGN_SIGNATURES = ((b"%PDF", "a PDF document"), (b"%!PS", "a PostScript/EPS file"),
                       (b"\xc5\xd0\xd3\xc6", "an EPS file"), (b"SIMPLE  =", "a FITS file"))
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_LITTLE_ENDIAN = sys.byteorder == "little"
_ORIENTATION_TAG = 0x0112
# warnings.catch_warnings swaps process-wide state; loads in several threads must not interleave it.
_WARNINGS_LOCK = threading.Lock()


@dataclass
class LoadedImage:
    """A decoded image plus everything that must come back on save."""

    rgb: np.ndarray
    """(H, W, 3) float32 in [0, 1], already turned upright by the EXIF orientation."""
    alpha: np.ndarray | None
    """(H, W) float32 in [0, 1], or None when the file has no transparency."""
    icc_profile: bytes | None
    """The embedded ICC profile (None for CMYK inputs, which are converted to sRGB)."""
    exif: bytes | None
    """Raw EXIF ("Exif\\0\\0" + TIFF), orientation reset to 1 because the pixels are upright."""
    bit_depth: int
    """8 or 16 bits per sample in the file (16 for I;16, 48/64-bit PNG and TIFF, I and F)."""
    format: str
    """Pillow's format name: "PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP" or "GIF"."""
    notices: list[str] = field(default_factory=list)
    """Things the user should know, e.g. "animated GIF: using frame 1 of 12"."""
    path: Path = field(default_factory=Path)
    mode: str = ""
    """Pillow's mode of the file (e.g. "I;16", "P", "CMYK")."""
    grayscale: bool = False
    """The source has one colour channel; outputs are saved as grayscale too."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright image."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


# ----------------------------------------------------------------------------------------------
# Loading


def load_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Decode ``path`` into a :class:`LoadedImage`; any problem raises ``ImageLoadError``."""
    source = Path(path)
    name = source.name or str(source)
    _check_is_file(source, name)
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's chatter ("Corrupt EXIF data") is not for users
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(source, name)
    except SR3Error:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"{name} is too large to open safely: its header declares more than the limit of "
                             f"{MAX_INPUT_PIXELS:,} pixels, so it was not decoded (it may be a decompression "
                             "bomb).") from exc
    except MemoryError as exc:
        raise ImageLoadError(f"There is not enough memory to open {name}.") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(_unidentified_message(source, name)) from exc
    except Exception as exc:  # anything a damaged file can make a decoder throw
        raise ImageLoadError(_damaged_message(name, exc)) from exc


def check_input_size(width: int, height: int, name: str = "the image") -> None:
    """Refuse an input whose declared size is over ``MAX_INPUT_PIXELS`` (before decoding)."""
    if width * height > MAX_INPUT_PIXELS:
        raise ImageLoadError(f"{name} is {width}×{height} ({width * height / 1e6:.1f} megapixels), over the limit of "
                             f"{MAX_INPUT_PIXELS:,} pixels ({MAX_INPUT_PIXELS / 1e6:.0f} MP). Shrink or crop it first.")


def check_output_size(width: int, height: int) -> None:
    """Refuse an output over ``MAX_OUTPUT_PIXELS``; call before any work starts."""
    if width < 1 or height < 1:
        raise ImageLoadError(f"The output size {width}×{height} is empty.")
    if width * height > MAX_OUTPUT_PIXELS:
        raise ImageLoadError(f"The output would be {width}×{height} ({width * height / 1e6:.1f} megapixels), over "
                             f"the limit of {MAX_OUTPUT_PIXELS:,} pixels ({MAX_OUTPUT_PIXELS / 1e6:.0f} MP, e.g. "
                             "8192×8192). Use a smaller scale or crop the input.")


def _check_is_file(source: Path, name: str) -> None:
    try:
        if source.is_dir():
            raise ImageLoadError(f"{name} is a folder, not an image.")
        if not source.exists():
            raise ImageLoadError(f"{name} was not found.")
        if not source.is_file():
            raise ImageLoadError(f"{name} is not a regular file, so it is not a supported image.")
    except OSError as exc:
        raise ImageLoadError(f"{name} cannot be read: {exc.strerror or exc}.") from exc


def _decode(source: Path, name: str) -> LoadedImage:
    with Image.open(source, formats=list(ALLOWED_FORMATS)) as im:
        check_input_size(im.width, im.height, name)
        notices: list[str] = []
        _note_frames(im, notices)
        rawmode = _tile_rawmode(im)  # loading clears the tiles
        mode = im.mode
        im.load()  # a full decode now: truncated files fail here, not halfway through an upscale
        orientation = _orientation(im)
        icc = im.info.get("icc_profile") or None
        exif = _raw_exif(im, orientation, notices)
        rgb, alpha, grayscale, bit_depth = _to_float(im, notices)
        if rawmode is not None and ";16" in rawmode and mode in ("RGB", "RGBA"):
            rgb, alpha, bit_depth = _reload_sixteen_bit_colour(source, im, rawmode, rgb, alpha, notices)
        elif rawmode is not None and ";16" in rawmode and mode not in _SIXTEEN_BIT_MODES:
            notices.append(f"16-bit {mode} samples were read at 8-bit precision.")
        if mode == "CMYK":
            icc = None  # the pixels are RGB now; a CMYK profile would describe the wrong colours
        fmt = im.format or "unknown"
    rgb = _orient(rgb, orientation)
    alpha = None if alpha is None else _orient(alpha, orientation)
    return LoadedImage(rgb=np.ascontiguousarray(rgb), alpha=None if alpha is None else np.ascontiguousarray(alpha),
                       icc_profile=icc, exif=exif, bit_depth=bit_depth, format=fmt, notices=notices, path=source,
                       mode=mode, grayscale=grayscale)


def _note_frames(im: Image.Image, notices: list[str]) -> None:
    kind = _MULTI_FRAME_KIND.get(im.format or "", "multi-frame image")
    try:
        frames = int(getattr(im, "n_frames", 1))
    except Exception:  # later frames are damaged: frame 1 may still be fine
        notices.append(f"{kind}: using frame 1 (the other frames cannot be read)")
        frames = 1
    if im.tell() != 0:
        im.seek(0)
    if frames > 1:
        notices.append(f"{kind}: using frame 1 of {frames}")


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def _raw_exif(im: Image.Image, orientation: int, notices: list[str]) -> bytes | None:
    raw = im.info.get("exif")
    if not isinstance(raw, bytes | bytearray) or not raw:
        return None
    data = bytes(raw) if bytes(raw).startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + bytes(raw)
    if orientation == 1:
        return data
    patched = reset_exif_orientation(data)
    if patched is None:
        notices.append("The EXIF data is damaged and was not copied to the output.")
    return patched


def _tile_rawmode(im: Image.Image) -> str | None:
    tiles = getattr(im, "tile", None) or []
    if not tiles:
        return None
    args = tiles[0].args
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _to_float(im: Image.Image, notices: list[str]) -> tuple[np.ndarray, np.ndarray | None, bool, int]:
    """(rgb, alpha, grayscale, bit_depth) from a loaded Pillow image of any mode."""
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(im).astype(np.float32) / 65535.0
        return _gray_to_rgb(gray), _key_alpha(im, np.asarray(im)), True, 16
    if mode == "I":
        return _gray_to_rgb(_wide_to_unit(np.asarray(im, dtype=np.float64), notices, "32-bit integer")), None, True, 16
    if mode == "F":
        return _gray_to_rgb(_wide_to_unit(np.asarray(im, dtype=np.float64), notices, "floating-point")), None, True, 16
    if mode in ("1", "L"):
        gray_u8 = np.asarray(im.convert("L"))
        return _gray_to_rgb(gray_u8.astype(np.float32) / 255.0), _key_alpha(im, gray_u8), True, 8
    if mode in ("LA", "La"):
        la = np.asarray(im.convert("LA")).astype(np.float32) / 255.0
        return _gray_to_rgb(la[:, :, 0]), la[:, :, 1].copy(), True, 8
    if mode == "CMYK":
        notices.append("CMYK was converted to RGB.")
        return _unit(np.asarray(_cmyk_to_rgb(im, notices))), None, False, 8
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info or (im.palette is not None and "A" in im.palette.mode)
        converted = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
        return _split_alpha(converted)
    if mode in ("RGBA", "RGBa"):
        return _split_alpha(np.asarray(im.convert("RGBA")))
    rgb_u8 = np.asarray(im.convert("RGB"))  # RGB, RGBX, YCbCr, LAB, HSV
    return _unit(rgb_u8), _key_alpha(im, rgb_u8), False, 8


def _unit(u8: np.ndarray) -> np.ndarray:
    return u8.astype(np.float32) / 255.0


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray.astype(np.float32)[:, :, None], 3, axis=2)


def _split_alpha(u8: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, bool, int]:
    values = _unit(u8)
    if values.shape[2] == 4:
        return values[:, :, :3].copy(), values[:, :, 3].copy(), False, 8
    return values, None, False, 8


def _key_alpha(im: Image.Image, samples: np.ndarray) -> np.ndarray | None:
    """Alpha from a tRNS colour key (one grey level or one RGB triple is transparent)."""
    key = im.info.get("transparency")
    if key is None or isinstance(key, bytes):
        return None
    key_values = np.atleast_1d(np.asarray(key))
    if samples.ndim == 3 and key_values.size == samples.shape[2]:
        opaque = ~np.all(samples == key_values.reshape(1, 1, -1), axis=2)
    elif samples.ndim == 2 and key_values.size == 1:
        opaque = samples != key_values[0]
    else:
        return None
    return opaque.astype(np.float32)


def _wide_to_unit(values: np.ndarray, notices: list[str], kind: str) -> np.ndarray:
    """I and F images: [0, 1] or [0, 65535] data is kept; anything else is rescaled min..max."""
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if low >= 0.0 and high <= 1.0 and kind == "floating-point":
        return values.astype(np.float32)
    if low >= 0.0 and high <= 65535.0:
        return (values / 65535.0).astype(np.float32)
    notices.append(f"{kind} samples were rescaled from [{low:g}, {high:g}] to [0, 1].")
    return ((values - low) / max(high - low, 1e-12)).astype(np.float32)


def _cmyk_to_rgb(im: Image.Image, notices: list[str]) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(im, source_profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted
        except Exception:
            notices.append("The CMYK colour profile could not be used; a simple conversion was used instead.")
    return im.convert("RGB")


def _reload_sixteen_bit_colour(source: Path, im: Image.Image, rawmode: str, rgb: np.ndarray,
                               alpha: np.ndarray | None, notices: list[str]
                               ) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Full precision for 48/64-bit PNG and TIFF, which Pillow decodes to 8 bits.

    Pillow's unpacker keeps the high byte of each 16-bit sample. Decoding the same frame again
    with the opposite byte order ("RGB;16B" <-> "RGB;16L") keeps the low byte instead; the two
    together are the exact 16-bit values, using Pillow's own unfiltering and decompression.
    """
    try:
        high = np.asarray(im).astype(np.uint16)
        low = _decode_with_rawmode(source, _swap_byte_order(rawmode))
        if low.shape != high.shape:
            raise ValueError("frame shapes differ")
        values = ((high << 8) | low).astype(np.float32) / 65535.0
    except Exception:
        notices.append("16-bit colour was read at 8-bit precision.")
        return rgb, alpha, 8
    new_alpha = values[:, :, 3].copy() if values.shape[2] == 4 else _key_alpha(im, (high << 8) | low)
    return values[:, :, :3].copy(), new_alpha, 16


def _swap_byte_order(rawmode: str) -> str:
    if rawmode.endswith(";16N"):
        return rawmode[:-1] + ("B" if _LITTLE_ENDIAN else "L")
    if rawmode.endswith(";16B"):
        return rawmode[:-1] + "L"
    if rawmode.endswith(";16L"):
        return rawmode[:-1] + "B"
    raise ValueError(f"unexpected raw mode {rawmode}")


def _decode_with_rawmode(source: Path, rawmode: str) -> np.ndarray:
    with Image.open(source, formats=list(ALLOWED_FORMATS)) as again:
        again.tile = [t._replace(args=_with_rawmode(t.args, rawmode)) for t in again.tile]
        again.load()
        return np.asarray(again).astype(np.uint16)


def _with_rawmode(args: Any, rawmode: str) -> Any:
    """A decoder tile's arguments with its raw mode replaced (a str for PNG, a tuple for TIFF)."""
    return rawmode if isinstance(args, str) else (rawmode, *tuple(args)[1:])


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation (same result as ``ImageOps.exif_transpose``)."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


def _unidentified_message(source: Path, name: str) -> str:
    try:
        with open(source, "rb") as fh:
            head = fh.read(64)
    except OSError:
        head = b""
    if not head:
        return f"{name} is empty (0 bytes), so it is not a supported image."
    for signature, kind in _FOREIGN_SIGNATURES:
        if head.startswith(signature):
            return f"{name} is {kind}, not a supported image (use PNG, JPEG, WebP, TIFF, BMP or GIF)."
    if any(head.startswith(signature) for signature in _OUR_SIGNATURES) or head[8:12] == b"WEBP":
        return f"{name} is damaged or the file is truncated: its header cannot be read."
    return f"{name} is not a supported image (use PNG, JPEG, WebP, TIFF, BMP or GIF)."


def _damaged_message(name: str, exc: BaseException) -> str:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or "truncat" in detail.lower():
        return f"{name} cannot be decoded: the file is truncated (it ends before the image data does)."
    return f"{name} cannot be decoded: the file is damaged or not a supported image ({detail})."


# ----------------------------------------------------------------------------------------------
# Saving


def save_image(path: str | os.PathLike[str], rgb: np.ndarray, *, alpha: np.ndarray | None = None,
               source: LoadedImage | None = None, fmt: str | None = None, overwrite: bool = False,
               protected: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Write ``rgb`` (H, W, 3 in [0, 1]) atomically and return the path really written.

    The format comes from ``fmt`` or the extension. ``source`` supplies the ICC profile, EXIF,
    bit depth and grayscale-ness to carry over, and its path is protected like ``protected``.
    An existing target is kept and "stem (1).ext" chosen unless ``overwrite``.
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
    try:
        payload = encode_image(kind, pixels, alpha_plane, source)
    except MemoryError as exc:
        raise ImageSaveError(f"There is not enough memory to encode {name}.") from exc
    except Exception as exc:
        raise ImageSaveError(f"{name} could not be encoded as {kind.upper()}: {exc}") from exc
    return _write_atomically(target, payload, overwrite)


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
    image.save(buffer, format={"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF"}[kind], **options)
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
    raw = (fmt if fmt is not None else target.suffix).lower().lstrip(".")
    kind = _FORMAT_ALIASES.get(raw)
    if kind is None:
        shown = f"'{raw}'" if raw else "none (the name has no extension)"
        raise ImageSaveError(f"Cannot save {target.name or target}: the output format {shown} is not supported; "
                             f"use one of {', '.join(SAVE_FORMATS)}.")
    return kind


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


def _write_atomically(target: Path, payload: bytes, overwrite: bool) -> Path:
    """Temp file in the target folder, fsync, then publish; no partial file on any failure."""
    name = target.name
    temp = target.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}{target.suffix}"
    try:
        _write_synced(temp, payload)
        final = _publish(temp, target, overwrite)
    except BaseException as exc:
        _remove_quietly(temp)
        if isinstance(exc, SR3Error | KeyboardInterrupt | SystemExit):
            raise
        if isinstance(exc, OSError):
            raise ImageSaveError(_describe_os_error(exc, target)) from exc
        raise ImageSaveError(f"{name} could not be saved: {exc}") from exc
    _sync_folder(target.parent)
    return final


def _write_synced(temp: Path, payload: bytes, chunk: int = 1 << 20) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temp, flags, 0o666)
    try:
        view = memoryview(payload)
        written = 0
        while written < len(view):  # os.write may write less than asked (a nearly full disk)
            count = os.write(fd, view[written:written + chunk])
            if count <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written += count
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(temp: Path, target: Path, overwrite: bool) -> Path:
    if overwrite:
        if target.is_dir():
            raise ImageSaveError(f"Cannot save {target.name}: a folder with that name exists.")
        os.replace(temp, target)
        return target
    for candidate in unique_names(target):
        try:
            os.link(temp, candidate)  # fails if the name exists: no race can clobber a file
        except FileExistsError:
            continue
        except OSError:  # no hard links here (FAT, some network shares): check, then rename
            if os.path.lexists(candidate):
                continue
            os.replace(temp, candidate)
            return candidate
        _remove_quietly(temp)
        return candidate
    raise ImageSaveError(f"Cannot save {target.name}: too many files with that name already exist.")


def unique_names(target: Path, limit: int = 10_000) -> Iterator[Path]:
    """target, "stem (1).ext", "stem (2).ext", ... (the first that does not exist is used)."""
    yield target
    for number in range(1, limit):
        yield target.with_name(f"{target.stem} ({number}){target.suffix}")


def _describe_os_error(exc: OSError, target: Path) -> str:
    name, folder = target.name, str(target.parent) if str(target.parent) not in ("", ".") else "the current folder"
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG):
        return f"Cannot save {name}: the disk is full (or the file is too large for it) in {folder}."
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Cannot save {name}: the folder {folder} is read-only or you lack permission to write there."
    if code in (errno.ENOENT, errno.ENOTDIR):
        return f"Cannot save {name}: the folder {folder} does not exist."
    if code == errno.ENAMETOOLONG:
        return f"Cannot save {name}: the file name is too long."
    return f"Cannot save {name}: {exc.strerror or exc}."


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); silently unavailable on Windows."""
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def cleanup_stale_temp_files(folder: str | os.PathLike[str], older_than_s: float = 60) -> int:
    """Remove ".sr3tmp-*" files left in ``folder`` by a crash; returns how many were removed."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if entry.is_file(follow_symlinks=False) and now - info.st_mtime >= older_than_s:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


# ----------------------------------------------------------------------------------------------
# Small helpers for the pipeline and the app


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Alpha is upscaled separately with the shared bicubic, then clipped to [0, 1]."""
    return np.clip(resample.upscale(np.asarray(alpha, dtype=np.float32), scale), 0.0, 1.0).astype(np.float32)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 (rounded, clipped)."""
    return np.round(np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint16(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint16 (rounded, clipped)."""
    return np.round(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)


def from_uint8(values: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]."""
    return np.asarray(values, dtype=np.float32) / 255.0



# ----------------------------------------------------------------------------------------------
# Byte-level codecs Pillow lacks: EXIF orientation patch, 16-bit colour PNG and TIFF writers


def reset_exif_orientation(exif: bytes) -> bytes | None:
    """Set the IFD0 Orientation tag to 1 in place, keeping every other byte; None if unparsable."""
    data = bytearray(exif)
    base = 6 if data.startswith(b"Exif\x00\x00") else 0
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(data[base:base + 2])]
        (ifd,) = struct.unpack_from(order + "I", data, base + 4)
        (count,) = struct.unpack_from(order + "H", data, base + ifd)
        for index in range(count):
            entry = base + ifd + 2 + 12 * index
            tag, kind, _ = struct.unpack_from(order + "HHI", data, entry)
            if tag == _ORIENTATION_TAG and kind == 3:
                struct.pack_into(order + "H", data, entry + 8, 1)
                return bytes(data)
    except (KeyError, struct.error):
        return None
    return bytes(data)  # no orientation tag in IFD0 (it came from XMP): nothing to reset


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _paeth_filter(rows: np.ndarray, previous: np.ndarray, bpp: int) -> np.ndarray:
    """PNG filter type 4 (Paeth) on whole rows of bytes, vectorised (PNG spec section 9.4)."""
    x = rows.astype(np.int16)
    up = np.concatenate([previous[None, :].astype(np.int16), x[:-1]], axis=0)
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    up_left = np.zeros_like(x)
    up_left[:, bpp:] = up[:, :-bpp]
    estimate = left + up - up_left
    pa, pb, pc = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - up_left)
    predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    return ((x - predictor) & 0xFF).astype(np.uint8)


def encode_png16(samples: np.ndarray, icc: bytes | None, exif: bytes | None, rows_per_block: int = 256) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by channel count) with iCCP and eXIf chunks."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = np.ascontiguousarray(samples.astype(">u2")).view(np.uint8).reshape(height, width * channels * 2)
    chunks = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type,
                                                                     0, 0, 0))]
    if icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    compressor = zlib.compressobj(6)
    previous = np.zeros(raw.shape[1], dtype=np.uint8)
    for start in range(0, height, rows_per_block):
        block = raw[start:start + rows_per_block]
        filtered = _paeth_filter(block, previous, 2 * channels)
        previous = block[-1]
        with_type = np.concatenate([np.full((block.shape[0], 1), 4, dtype=np.uint8), filtered], axis=1)
        piece = compressor.compress(with_type.tobytes())
        if piece:
            chunks.append(_png_chunk(b"IDAT", piece))
    chunks.append(_png_chunk(b"IDAT", compressor.flush()))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)


def encode_tiff16(samples: np.ndarray, icc: bytes | None) -> bytes:
    """A little-endian 16-bit TIFF: Adobe deflate, horizontal predictor, strips of about 1 MiB."""
    height, width, channels = samples.shape
    rows_per_strip = max(1, (1 << 20) // (width * channels * 2))
    predicted = samples.astype(np.uint16)
    predicted[:, 1:] = samples[:, 1:] - samples[:, :-1]  # TIFF Predictor 2, modulo 2**16
    strips = [zlib.compress(np.ascontiguousarray(predicted[r:r + rows_per_strip]).astype("<u2").tobytes(), 6)
              for r in range(0, height, rows_per_strip)]
    strip_offsets, offset = [], 8
    for strip in strips:
        strip_offsets.append(offset)
        offset += len(strip) + (len(strip) & 1)
    tags: list[tuple[int, int, list[int] | bytes]] = [  # (tag, TIFF type, values) in tag order
        (256, 4, [width]), (257, 4, [height]), (258, 3, [16] * channels), (259, 3, [8]),
        (262, 3, [2 if channels >= 3 else 1]), (273, 4, strip_offsets), (277, 3, [channels]),
        (278, 4, [rows_per_strip]), (279, 4, [len(s) for s in strips]), (284, 3, [1]), (317, 3, [2]),
    ]
    if channels in (2, 4):
        tags.append((338, 3, [2]))  # ExtraSamples: unassociated alpha
    if icc:
        tags.append((34675, 7, icc))
    ifd_offset = offset
    extra_offset = ifd_offset + 2 + 12 * len(tags) + 4
    entries, extra = bytearray(), bytearray()
    for tag, kind, values in tags:
        body = bytes(values) if isinstance(values, bytes) else struct.pack(
            "<" + ("H" if kind == 3 else "I") * len(values), *values)
        count = len(values)
        if len(body) <= 4:
            entries += struct.pack("<HHI", tag, kind, count) + body.ljust(4, b"\x00")
        else:
            entries += struct.pack("<HHII", tag, kind, count, extra_offset + len(extra))
            extra += body + (b"\x00" if len(body) & 1 else b"")
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset))
    for strip in strips:
        out += strip + (b"\x00" if len(strip) & 1 else b"")
    out += struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0) + extra
    return bytes(out)
