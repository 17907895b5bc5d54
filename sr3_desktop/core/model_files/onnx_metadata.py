"""An .onnx file's metadata map, read off the protobuf wire format without importing ``onnx``.

The card lives in ``ModelProto.metadata_props`` (field 14: repeated key/value string pairs). Listing the
models only needs that, so the top level of the file is walked field by field and the graph (field 7,
tens of MB) is skipped by its length; importing ``onnx`` and parsing it all costs about a second. The
file's full check is ``safety.check_onnx_file``'s, before any session is made.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

IR_VERSION_FIELD, GRAPH_FIELD, METADATA_FIELD = 1, 7, 14
"""ModelProto's field numbers (onnx.proto3)."""
KEY_FIELD, VALUE_FIELD = 1, 2
"""StringStringEntryProto's."""
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
"""The protobuf wire types an ONNX file uses (groups, 3 and 4, are not)."""
Field = tuple[int, int, int, int]
"""(field number, wire type, start, end): a varint's value is ``start``; a string's bytes are buf[start:end]."""


class MetadataError(ValueError):
    """The bytes are not a protobuf ModelProto."""


def _varint(buf: mmap.mmap | bytes, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end:
            raise MetadataError("a number runs past the end")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise MetadataError("a number is longer than 10 bytes")


def _fields(buf: mmap.mmap | bytes, start: int, end: int) -> Iterator[Field]:
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise MetadataError("field number 0")
        if wire == VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
            continue
        if wire == LENGTH_DELIMITED:
            length, pos = _varint(buf, pos, end)
            size = length
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
        else:
            raise MetadataError(f"wire type {wire}")
        if pos + size > end:
            raise MetadataError("a field runs past the end (truncated)")
        yield number, wire, pos, pos + size
        pos += size


def _text(buf: mmap.mmap | bytes, start: int, end: int) -> str:
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MetadataError("a metadata string is not UTF-8") from exc


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata map of the .onnx file at ``path`` (the last value of a repeated key wins, as in onnx).

    Raises FileNotFoundError / OSError, or MetadataError for bytes that are not an ONNX model."""
    with Path(path).open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:  # mmap refuses an empty file
            raise MetadataError("the file is empty")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            metadata: dict[str, str] = {}
            seen: set[int] = set()
            for number, wire, start, end in _fields(buf, 0, len(buf)):
                seen.add(number)
                if number != METADATA_FIELD or wire != LENGTH_DELIMITED:
                    continue
                entry = {n: _text(buf, s, e) for n, w, s, e in _fields(buf, start, end)
                         if w == LENGTH_DELIMITED and n in (KEY_FIELD, VALUE_FIELD)}
                metadata[entry.get(KEY_FIELD, "")] = entry.get(VALUE_FIELD, "")
    if not {IR_VERSION_FIELD, GRAPH_FIELD} <= seen:
        raise MetadataError("no IR version or no graph")
    return metadata
