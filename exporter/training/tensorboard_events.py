"""`train --tensorboard DIR`: TensorBoard event files, written without TensorFlow or the tensorboard package.

An event file is a TFRecord stream (per record: little-endian uint64 length, masked CRC-32C of it, the
bytes, masked CRC-32C of them) of ``Event`` protocol buffers: the first carries ``file_version``, the
others a ``Summary`` of scalar values (``simple_value``) or PNG images. Only those fields are written,
encoded by hand here, so the exporter needs no extra package; ``tensorboard --logdir DIR`` reads them.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

from PIL import Image

_CRC32C_TABLE: list[int] = []


def _crc32c_table() -> list[int]:
    if not _CRC32C_TABLE:
        for byte in range(256):
            crc = byte
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
            _CRC32C_TABLE.append(crc)
    return _CRC32C_TABLE


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as TFRecord framing uses it."""
    table, crc = _crc32c_table(), 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- protocol-buffer encoding of the few fields we write ---------------------------------------------
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _event(step: int, wall_time: float, body: bytes) -> bytes:
    """Event{wall_time = 1 (double), step = 2 (int64), then ``body`` (file_version = 3 or summary = 5)}."""
    return _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(max(0, int(step))) + body


def scalar_value(tag: str, value: float) -> bytes:
    """Summary.Value{tag = 1, simple_value = 2 (float)}."""
    return _bytes_field(1, tag.encode()) + _key(2, 5) + struct.pack("<f", float(value))


def image_value(tag: str, png: bytes, height: int, width: int) -> bytes:
    """Summary.Value{tag = 1, image = 4: Image{height = 1, width = 2, colorspace = 3 (RGB), encoded = 4}}."""
    image = (_key(1, 0) + _varint(height) + _key(2, 0) + _varint(width) + _key(3, 0) + _varint(3)
             + _bytes_field(4, png))
    return _bytes_field(1, tag.encode()) + _bytes_field(4, image)


class TensorBoardWriter:
    """Appends events to one ``events.out.tfevents.*`` file in ``log_dir``; each write is flushed."""

    def __init__(self, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.path = log_dir / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.sr3"
        self._write(_event(0, time.time(), _bytes_field(3, b"brain.Event:2")))

    def _write(self, record: bytes) -> None:
        length = struct.pack("<Q", len(record))
        with self.path.open("ab") as handle:
            handle.write(length + struct.pack("<I", masked_crc(length)) + record
                         + struct.pack("<I", masked_crc(record)))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        summary = b"".join(_bytes_field(1, scalar_value(tag, v)) for tag, v in values.items())
        self._write(_event(step, time.time(), _bytes_field(5, summary)))

    def image(self, step: int, tag: str, png_path: Path) -> None:
        png = png_path.read_bytes()
        with Image.open(png_path) as image:
            width, height = image.size
        summary = _bytes_field(1, image_value(tag, png, height, width))
        self._write(_event(step, time.time(), _bytes_field(5, summary)))
