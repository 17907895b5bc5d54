"""Fuzzing the image loader: random and mutated bytes may only ever raise ImageLoadError.

Bounded for CI: 800 examples over small seeds (a few seconds on two cores).
Hypothesis picks fresh inputs each run, so a failure here is a real loader bug: replay it
with the printed reproduction blob.
"""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sr3_desktop.core.errors import ImageLoadError
from sr3_desktop.core.imageio import LoadedImage, load_image

FUZZ = settings(max_examples=200, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_MUTATIONS = settings(FUZZ, max_examples=600)
_counter = itertools.count()


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png16() -> bytes:
    samples = np.random.default_rng(1).integers(0, 65536, (6, 5, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in samples)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 6, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8), "RGBA")
    frames = [Image.new("RGB", (6, 6), colour) for colour in ("red", "green")]
    exif = rgb.getexif()
    exif[0x0112] = 6
    return [
        _encoded(rgb, "PNG"), _encoded(rgba, "PNG"), _encoded(rgb, "JPEG", exif=exif), _encoded(rgb, "BMP"),
        _encoded(rgb.convert("P"), "GIF"), _encoded(rgb, "TIFF"), _encoded(rgba, "WEBP", lossless=True),
        _encoded(rgb.convert("CMYK"), "JPEG"), _encoded(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        _png16(),
    ]


SEEDS = _seeds()


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _load_or_refuse(folder: Path, data: bytes) -> None:
    path = folder / f"case{next(_counter) % 8}.png"
    path.write_bytes(data)
    try:
        loaded = load_image(path)
    except ImageLoadError as error:
        assert str(error), "an error must carry a message"
        return
    _assert_sane(loaded)
    assert path.read_bytes() == data, "the input must stay byte-identical"


def _assert_sane(loaded: LoadedImage) -> None:
    rgb = loaded.rgb
    assert rgb.dtype == np.float32 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert np.isfinite(rgb).all() and rgb.min() >= 0.0 and rgb.max() <= 1.0
    if loaded.alpha is not None:
        assert loaded.alpha.shape == rgb.shape[:2]
    assert loaded.bit_depth in (8, 16)


@st.composite
def mutated_image(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        elif kind == "cut":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position:position + draw(st.integers(1, 16))]
    return bytes(data)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_only_raise_image_load_error(fuzz_folder: Path, data: bytes) -> None:
    _load_or_refuse(fuzz_folder, data)


@FUZZ_MUTATIONS
@given(data=mutated_image())
def test_mutated_images_only_raise_image_load_error(fuzz_folder: Path, data: bytes) -> None:
    _load_or_refuse(fuzz_folder, data)


def test_seeds_are_valid_images(fuzz_folder: Path) -> None:
    for seed in SEEDS:
        path = fuzz_folder / "seed.bin"
        path.write_bytes(seed)
        _assert_sane(load_image(path))
