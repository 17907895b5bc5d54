"""Reading a model without importing onnx: the card off the wire format, and the safety verdict
remembered for the exact bytes of a model-folder file (so a start costs a hash, not a second of parsing)."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

import onnx
import pytest
from test_model_safety import tiny_model, with_external_weight, write

from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.model_files import folders, safety
from sr3_desktop.core.model_files.card import ModelCardError, read_card
from sr3_desktop.core.model_files.folders import bundled_models_dir
from sr3_desktop.core.model_files.onnx_metadata import MetadataError, read_metadata
from sr3_desktop.core.model_files.safety import SAFE_FILE, check_onnx_file


def with_metadata(model: onnx.ModelProto, entries: list[tuple[str, str]]) -> onnx.ModelProto:
    for key, value in entries:
        model.metadata_props.add(key=key, value=value)
    model.doc_string = "d" * 300  # a field after the graph, with a two-byte length
    return model


def test_the_metadata_map_equals_onnx_own_parse(tmp_path: Path) -> None:
    """Repeated keys (the last wins), UTF-8, a value over 127 bytes (a multi-byte length) and the bundled
    models' cards. Mutations caught: the first value of a repeated key kept, one-byte lengths only, a field
    other than 14 read as metadata (the 300-byte doc string), key and value swapped."""
    entries = [("a", "1"), ("b", "é" * 200), ("a", "2"), ("long", "x" * 70000)]
    path = write(tmp_path / "m.onnx", with_metadata(tiny_model(), entries))
    assert read_metadata(path) == {"a": "2", "b": "é" * 200, "long": "x" * 70000}
    for bundled in sorted(bundled_models_dir().glob("*.onnx")):
        proto = onnx.load(str(bundled), load_external_data=False)
        assert read_metadata(bundled) == {p.key: p.value for p in proto.metadata_props}


@pytest.mark.parametrize("cut", [1, 40, -5], ids=["one-byte", "inside-the-graph", "inside-the-metadata"])
def test_a_truncated_or_foreign_file_is_not_read_as_a_model(tmp_path: Path, cut: int) -> None:
    """Mutations caught: a length not checked against the end, a file without a graph accepted."""
    whole = with_metadata(tiny_model(), [("k", "v" * 50)]).SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(whole[:cut])
    with pytest.raises(MetadataError):
        read_metadata(path)
    for junk in (b"", b"not a model at all", b"\x08\x07"):  # empty, text, an IR version and nothing else
        path.write_bytes(junk)
        with pytest.raises(ModelCardError, match="not a readable ONNX model"):
            read_card(path)


def remembered(data: Path) -> list[dict[str, object]]:
    file = data / SAFE_FILE
    return json.loads(file.read_text()) if file.exists() else []


def test_a_model_folder_file_is_parsed_once_then_known_by_its_bytes(
        empty_model_folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The second check of the same bytes never parses; one changed byte is checked in full again.
    Mutations caught: no lookup (the second check parses), the lookup by path only (the changed file passes
    unparsed), the rules left out of the verdict (a stricter allowlist still passes the remembered file)."""
    bundled, data = empty_model_folders
    path = write(bundled / "m.onnx", tiny_model())
    check_onnx_file(path)
    assert len(remembered(data)) == 1
    parses: list[Path] = []
    real = safety._check_parsed
    monkeypatch.setattr(safety, "_check_parsed", lambda p, n, s: parses.append(p) or real(p, n, s))
    check_onnx_file(path)
    assert parses == []
    write(path, with_metadata(tiny_model(), [("k", "v")]))  # other bytes
    check_onnx_file(path)
    assert parses == [path] and len(remembered(data)) == 2
    monkeypatch.setattr(safety, "ALLOWED_OPERATORS", safety.ALLOWED_OPERATORS - {"Add"})
    with pytest.raises(ModelError, match="uses the operator Add"):
        check_onnx_file(path)


def test_files_elsewhere_or_with_external_data_are_never_remembered(
        empty_model_folders: tuple[Path, Path], tmp_path: Path) -> None:
    """A file named from anywhere leaves nothing in the data folder (a refused import leaves no trace), and
    external data (whose files can change while the model's bytes do not) is checked every time.
    Mutations caught: remembering outside the model folders, remembering a model with external data."""
    bundled, data = empty_model_folders
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check_onnx_file(write(elsewhere / "m.onnx", tiny_model()))
    (bundled / "weights").mkdir()
    (bundled / "weights" / "w.bin").write_bytes(bytes(48))
    check_onnx_file(write(bundled / "ext.onnx", with_external_weight(tiny_model(), "weights/w.bin")))
    assert remembered(data) == []


def test_records_remembered_by_threads_at_once_are_all_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight threads remember a record each at the same moment (two sessions built side by side both
    remember their file's verdict): all eight are kept (mutation: the read-modify-write without its lock
    loses the records that another thread's write replaced)."""
    start = threading.Barrier(8, timeout=20)
    real_read = folders.read_records

    def read_when_all_remember(name: str) -> list[dict[str, object]]:
        found = real_read(name)
        with contextlib.suppress(threading.BrokenBarrierError):  # with the lock, one thread reads at a time
            start.wait(timeout=0.5)
        return found

    monkeypatch.setattr(folders, "read_records", read_when_all_remember)
    threads = [threading.Thread(target=folders.remember_record, args=("records.json", {"n": n}, 64, lambda e: False))
               for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(entry["n"] for entry in real_read("records.json")) == list(range(8))
