"""Byte-level codecs Pillow lacks: the EXIF orientation patch, and 16-bit colour PNG and TIFF writers."""

from __future__ import annotations

import struct
import zlib

import numpy as np

ORIENTATION_TAG = 0x0112
"""The EXIF / TIFF Orientation tag."""


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
            if tag == ORIENTATION_TAG and kind == 3:
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
