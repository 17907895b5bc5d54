"""Every Pillow mode becomes float RGB in [0, 1] (+ alpha), and 16-bit inputs stay 16-bit on save."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from sr3_desktop.core import imageio
from sr3_desktop.core.imageio import load_image, save_image, save_notes

RNG = np.random.default_rng(11)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def loaded_unchanged(path: Path) -> imageio.LoadedImage:
    """load_image, asserting the file is byte-identical afterwards."""
    digest = sha256(path)
    loaded = load_image(path)
    assert sha256(path) == digest
    assert loaded.rgb.dtype == np.float32 and loaded.rgb.ndim == 3 and loaded.rgb.shape[2] == 3
    assert loaded.rgb.min() >= 0.0 and loaded.rgb.max() <= 1.0
    return loaded


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


ADAM7 = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]


def png16_bytes(samples: np.ndarray, interlaced: bool = False) -> bytes:
    """A 16-bit PNG written by hand (filter 0), optionally Adam7-interlaced: an independent encoder."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    big_endian = samples.astype(">u2")
    passes = ADAM7 if interlaced else [(0, 0, 1, 1)]
    raw = b""
    for y0, x0, dy, dx in passes:
        sub = big_endian[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 1 if interlaced else 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


def png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR."""
    data = path.read_bytes()
    return data[24], data[25]


def random16(height: int, width: int, channels: int) -> np.ndarray:
    return RNG.integers(0, 65536, (height, width, channels), dtype=np.uint16)


def as16(values: np.ndarray) -> np.ndarray:
    return np.round(values.astype(np.float64) * 65535).astype(np.uint16)


# ---------------------------------------------------------------------------------------------
# 8-bit modes


def test_rgba_keeps_its_alpha(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (6, 9, 4), dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels, "RGBA").save(path)
    loaded = loaded_unchanged(path)
    assert loaded.alpha is not None
    assert np.array_equal(imageio.to_uint8(loaded.alpha), pixels[:, :, 3])
    assert np.array_equal(imageio.to_uint8(loaded.rgb), pixels[:, :, :3])
    assert not loaded.grayscale and loaded.bit_depth == 8


def test_palette_with_transparency(tmp_path: Path) -> None:
    indices = RNG.integers(0, 4, (8, 8), dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    loaded = loaded_unchanged(path)
    assert loaded.mode == "P" and loaded.alpha is not None
    assert np.array_equal(loaded.alpha == 0, indices == 0)
    red = indices == 1
    assert np.allclose(loaded.rgb[red], (1, 0, 0))


def test_palette_without_transparency_has_no_alpha(tmp_path: Path) -> None:
    path = tmp_path / "palette.gif"
    Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).convert("P").save(path)
    loaded = loaded_unchanged(path)
    assert loaded.alpha is None


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_grayscale_modes(tmp_path: Path, mode: str) -> None:
    channels = {"L": 1, "LA": 2, "1": 1}[mode]
    pixels = RNG.integers(0, 256, (7, 5, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, "L" if mode == "1" else mode)
    image = image.convert("1") if mode == "1" else image
    path = tmp_path / f"gray_{mode}.png"
    image.save(path)
    expected_gray = np.asarray(image.convert("L"), dtype=np.float32) / 255
    loaded = loaded_unchanged(path)
    assert loaded.grayscale and loaded.mode == mode
    for channel in range(3):
        assert np.array_equal(loaded.rgb[:, :, channel], expected_gray)
    if mode == "LA":
        assert loaded.alpha is not None and np.array_equal(imageio.to_uint8(loaded.alpha), pixels[:, :, 1])
    else:
        assert loaded.alpha is None
    if mode == "1":
        assert set(np.unique(loaded.rgb)) <= {0.0, 1.0}


def test_grayscale_colour_key_transparency(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, (6, 6), dtype=np.uint8)
    gray[0, 0] = 42
    path = tmp_path / "key.png"
    Image.fromarray(gray, "L").save(path, transparency=42)
    loaded = loaded_unchanged(path)
    assert loaded.alpha is not None
    assert np.array_equal(loaded.alpha == 0, gray == 42)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_to_rgb(tmp_path: Path, fmt: str) -> None:
    cmyk = Image.fromarray(RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8), "CMYK")
    path = tmp_path / f"cmyk.{fmt.lower()}"
    cmyk.save(path, **({"quality": 100} if fmt == "JPEG" else {}))
    with Image.open(path) as reference:
        expected = np.asarray(reference.convert("RGB"))
    loaded = loaded_unchanged(path)
    assert loaded.mode == "CMYK" and "CMYK was converted to RGB." in loaded.notices
    assert np.array_equal(imageio.to_uint8(loaded.rgb), expected)
    assert loaded.icc_profile is None


def test_cmyk_with_an_unusable_profile_falls_back_with_a_notice(tmp_path: Path) -> None:
    cmyk = Image.fromarray(RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8), "CMYK")
    path = tmp_path / "cmyk_bad_profile.jpg"
    cmyk.save(path, quality=100, icc_profile=b"not really an ICC profile" * 8)
    loaded = loaded_unchanged(path)
    assert any("profile could not be used" in notice for notice in loaded.notices)
    assert loaded.icc_profile is None  # a CMYK profile must not be carried onto RGB pixels


def test_bmp_loads(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    path = tmp_path / "old.bmp"
    Image.fromarray(pixels).save(path)
    loaded = loaded_unchanged(path)
    assert loaded.format == "BMP" and np.array_equal(imageio.to_uint8(loaded.rgb), pixels)


# ---------------------------------------------------------------------------------------------
# 16-bit and wide modes


def test_i16_png_keeps_full_precision(tmp_path: Path) -> None:
    values = RNG.integers(0, 65536, (9, 4), dtype=np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    loaded = loaded_unchanged(path)
    assert loaded.mode.startswith("I;16") and loaded.bit_depth == 16 and loaded.grayscale
    assert np.array_equal(as16(loaded.rgb[:, :, 0]), values)


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_i16_tiff_either_byte_order(tmp_path: Path, byteorder: str) -> None:
    values = RNG.integers(0, 65536, (5, 8), dtype=np.uint16)
    path = tmp_path / "gray16.tiff"
    tifffile.imwrite(path, values, byteorder=byteorder)
    loaded = loaded_unchanged(path)
    assert loaded.bit_depth == 16 and np.array_equal(as16(loaded.rgb[:, :, 1]), values)


def test_i_mode_int32_tiff(tmp_path: Path) -> None:
    values = RNG.integers(0, 65536, (4, 4)).astype(np.int32)
    path = tmp_path / "int32.tiff"
    tifffile.imwrite(path, values)
    loaded = loaded_unchanged(path)
    assert loaded.mode == "I" and loaded.bit_depth == 16
    assert np.array_equal(as16(loaded.rgb[:, :, 0]), values)
    wide = tmp_path / "int32_wide.tiff"
    tifffile.imwrite(wide, np.array([[-100, 0], [100, 1_000_000]], dtype=np.int32))
    rescaled = loaded_unchanged(wide)
    assert rescaled.rgb[0, 0, 0] == 0.0 and rescaled.rgb[1, 1, 0] == 1.0
    assert any("rescaled" in notice for notice in rescaled.notices)


def test_f_mode_float_tiff(tmp_path: Path) -> None:
    values = RNG.random((4, 6)).astype(np.float32)
    path = tmp_path / "float.tiff"
    tifffile.imwrite(path, values)
    loaded = loaded_unchanged(path)
    assert loaded.mode == "F" and np.array_equal(loaded.rgb[:, :, 2], values)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("interlaced", [False, True])
def test_48_and_64_bit_png_keep_full_precision(tmp_path: Path, channels: int, interlaced: bool) -> None:
    values = random16(11, 13, channels)
    path = tmp_path / f"colour16_{channels}_{interlaced}.png"
    path.write_bytes(png16_bytes(values, interlaced))
    with Image.open(path) as plain:  # what Pillow alone gives: the high bytes only
        assert np.array_equal(np.asarray(plain)[:, :, :3], (values[:, :, :3] >> 8).astype(np.uint8))
    loaded = loaded_unchanged(path)
    assert loaded.bit_depth == 16 and loaded.notices == []
    assert np.array_equal(as16(loaded.rgb), values[:, :, :3])
    if channels == 4:
        assert loaded.alpha is not None and np.array_equal(as16(loaded.alpha), values[:, :, 3])


@pytest.mark.parametrize("options", [{}, {"byteorder": ">"}, {"compression": "zlib"}, {"compression": "zlib",
                                                                                       "predictor": True}])
@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_tiff_keeps_full_precision(tmp_path: Path, options: dict, channels: int) -> None:
    values = random16(6, 10, channels)
    path = tmp_path / "colour16.tiff"
    tifffile.imwrite(path, values, photometric="rgb", extrasamples=[2] if channels == 4 else None, **options)
    loaded = loaded_unchanged(path)
    assert loaded.bit_depth == 16
    assert np.array_equal(as16(loaded.rgb), values[:, :, :3])
    if channels == 4:
        assert loaded.alpha is not None and np.array_equal(as16(loaded.alpha), values[:, :, 3])


# ---------------------------------------------------------------------------------------------
# Saving keeps the depth and the kind of image


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_png_stays_16_bit(tmp_path: Path, channels: int) -> None:
    values = random16(8, 7, channels)
    source_path = tmp_path / "in16.png"
    source_path.write_bytes(png16_bytes(values))
    loaded = loaded_unchanged(source_path)
    out = save_image(tmp_path / "out.png", loaded.rgb, alpha=loaded.alpha, source=loaded)
    assert png_header(out) == (16, 6 if channels == 4 else 2)
    with Image.open(out) as plain:
        assert np.array_equal(np.asarray(plain)[:, :, :3], (values[:, :, :3] >> 8).astype(np.uint8))
    back = load_image(out)
    assert back.bit_depth == 16 and np.array_equal(as16(back.rgb), values[:, :, :3])
    if channels == 4:
        assert back.alpha is not None and np.array_equal(as16(back.alpha), values[:, :, 3])


def test_16_bit_grayscale_png_stays_16_bit_grayscale(tmp_path: Path) -> None:
    values = RNG.integers(0, 65536, (9, 4), dtype=np.uint16)
    source_path = tmp_path / "gray16.png"
    Image.fromarray(values).save(source_path)
    loaded = loaded_unchanged(source_path)
    out = save_image(tmp_path / "out.png", loaded.rgb, source=loaded)
    assert png_header(out) == (16, 0)
    with Image.open(out) as written:
        assert written.mode.startswith("I;16") and np.array_equal(np.asarray(written), values)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_tiff_output_reads_back_exactly_in_tifffile(tmp_path: Path, channels: int) -> None:
    values = random16(12, 5, 3 if channels == 1 else channels)
    if channels == 1:
        values = values[:, :, :1]
        source_path = tmp_path / "in16.png"
        Image.fromarray(values[:, :, 0]).save(source_path)
    else:
        source_path = tmp_path / "in16.png"
        source_path.write_bytes(png16_bytes(values))
    loaded = loaded_unchanged(source_path)
    out = save_image(tmp_path / "out.tiff", loaded.rgb, alpha=loaded.alpha, source=loaded)
    written = tifffile.imread(out)
    assert written.dtype == np.uint16
    assert np.array_equal(written.reshape(values.shape), values)
    assert np.array_equal(as16(load_image(out).rgb), np.repeat(values, 3, axis=2) if channels == 1
                          else values[:, :, :3])


def test_16_bit_source_to_jpeg_is_8_bit_and_says_so(tmp_path: Path) -> None:
    source_path = tmp_path / "in16.png"
    source_path.write_bytes(png16_bytes(random16(8, 8, 3)))
    loaded = loaded_unchanged(source_path)
    out = save_image(tmp_path / "out.jpg", loaded.rgb, source=loaded)
    assert load_image(out).bit_depth == 8
    assert any("8 bits" in note for note in save_notes("jpg", alpha=None, source=loaded))
    assert save_notes("png", alpha=None, source=loaded) == []


def test_grayscale_source_saves_grayscale(tmp_path: Path) -> None:
    source_path = tmp_path / "gray.png"
    Image.fromarray(RNG.integers(0, 256, (6, 6), dtype=np.uint8), "L").save(source_path)
    loaded = loaded_unchanged(source_path)
    for fmt, mode in (("png", "L"), ("jpg", "L"), ("tiff", "L"), ("webp", "RGB")):
        with Image.open(save_image(tmp_path / f"out.{fmt}", loaded.rgb, source=loaded)) as written:
            assert written.mode == mode


@pytest.mark.parametrize("fmt", ["png", "webp", "tiff"])
def test_alpha_is_saved(tmp_path: Path, fmt: str) -> None:
    rgb = RNG.random((8, 8, 3)).astype(np.float32)
    alpha = RNG.random((8, 8)).astype(np.float32)
    out = save_image(tmp_path / f"out.{fmt}", rgb, alpha=alpha)
    back = load_image(out)
    assert back.alpha is not None
    # WebP compresses its alpha plane losslessly (alpha_quality 100), even when the colour is lossy:
    # alpha comes back to the nearest 8-bit level in every format.
    assert np.abs(back.alpha - alpha).max() <= 0.5 / 255 + 1e-6


def test_jpeg_composites_alpha_on_white_and_says_so(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.float32)
    alpha = np.zeros((16, 16), dtype=np.float32)
    alpha[:, 8:] = 1.0
    out = save_image(tmp_path / "out.jpg", rgb, alpha=alpha)
    back = load_image(out)
    assert back.alpha is None
    assert back.rgb[:, :4].min() > 0.95 and back.rgb[:, 12:].max() < 0.05
    assert any("composited onto white" in note for note in save_notes("jpg", alpha=alpha, source=None))


def test_jpeg_uses_quality_95_without_chroma_subsampling(tmp_path: Path) -> None:
    from PIL import JpegImagePlugin

    out = save_image(tmp_path / "out.jpg", RNG.random((16, 16, 3)).astype(np.float32))
    with Image.open(out) as written:
        assert JpegImagePlugin.get_sampling(written) == 0  # 4:4:4
        reference = Image.new("RGB", (16, 16))
        reference.save(tmp_path / "q95.jpg", quality=95, subsampling=0)
        with Image.open(tmp_path / "q95.jpg") as q95:
            assert written.quantization == q95.quantization
