"""Decoding: an allowlist of formats, bombs refused before any pixel is decoded, a forced full decode
(so truncated files fail here, not later), EXIF orientation honoured, and every mode turned into
float32 RGB in [0, 1] plus an optional alpha plane. Every failure is an ``ImageLoadError`` whose
message names the file.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from sr3_desktop.core.errors import ImageLoadError, SR3Error
from sr3_desktop.core.imageio.codecs import ORIENTATION_TAG, reset_exif_orientation
from sr3_desktop.core.imageio.formats import ALLOWED_FORMATS
from sr3_desktop.core.imageio.jpeg_quality import file_quality

MAX_INPUT_PIXELS = 8192 * 8192
"""64 MP: larger inputs are refused from the header alone, before decoding."""
MAX_OUTPUT_PIXELS = 16384 * 16384
"""268 MP: an upscale whose model output would be larger is refused before any work starts. Outputs over
4 MP are built on disk band by band (``core.upscale.output_canvas``), so memory does not grow with this limit."""

_MULTI_FRAME_KIND = {"GIF": "animated GIF", "PNG": "animated PNG", "TIFF": "multi-page TIFF",
                     "MPO": "multi-picture JPEG (MPO)", "WEBP": "animated WebP"}
# Magic numbers: files that look like one of these but do not decode are damaged, not foreign.
_OUR_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM")
_FOREIGN_SIGNATURES = ((b"%PDF", "a PDF document"), (b"%!PS", "a PostScript/EPS file"),
                       (b"\xc5\xd0\xd3\xc6", "an EPS file"), (b"SIMPLE  =", "a FITS file"))
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_LITTLE_ENDIAN = sys.byteorder == "little"
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
    jpeg_quality: int | None = None
    """The quality a JPEG file was saved at (``jpeg_quality.file_quality``); None for lossless formats."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright image."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


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
    """Refuse a model output over ``MAX_OUTPUT_PIXELS``; call before any work starts."""
    if width < 1 or height < 1:
        raise ImageLoadError(f"The output size {width}×{height} is empty.")
    if width * height > MAX_OUTPUT_PIXELS:
        raise ImageLoadError(f"The output would be {width}×{height} ({width * height / 1e6:.1f} megapixels), over "
                             f"the limit of {MAX_OUTPUT_PIXELS:,} pixels ({MAX_OUTPUT_PIXELS / 1e6:.0f} MP, e.g. "
                             "16384×16384). Crop or shrink the input: the model always runs at its own scale, so "
                             "a smaller output scale does not lower this.")


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
        quality = file_quality(im)
    rgb = _orient(rgb, orientation)
    alpha = None if alpha is None else _orient(alpha, orientation)
    return LoadedImage(rgb=np.ascontiguousarray(rgb), alpha=None if alpha is None else np.ascontiguousarray(alpha),
                       icc_profile=icc, exif=exif, bit_depth=bit_depth, format=fmt, notices=notices, path=source,
                       mode=mode, grayscale=grayscale, jpeg_quality=quality)


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
        value = int(im.getexif().get(ORIENTATION_TAG, 1))
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
    values = u8.astype(np.float32)
    values /= 255.0  # in place: one float copy of the image, not two
    return values


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
