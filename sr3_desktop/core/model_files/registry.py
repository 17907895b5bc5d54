"""The model registry: bundled models (``resources/models``) and models a user imported.

Imported models live in ``<user data dir>/models`` (platformdirs; ``SR3_DESKTOP_DATA_DIR``
overrides the base folder). A model is known by its card's name. Importing validates the file
(safety, card, graph signature, a tiny test run) and then copies it in atomically. A one-pass
upscaler without a card (``core.model_files.onepass_probe``) gets the card its test run makes: an import writes the
copy with that card; ``--model PATH`` on the card-less file runs the test again on each run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.imageio.atomic import TEMP_PREFIX, copy_atomically, sha256_of, write_atomically
from sr3_desktop.core.model_files.card import CARD_METADATA_KEY, ModelCard, embed_card, read_card
from sr3_desktop.core.model_files.folders import (
    bundled_models_dir,
    in_model_folders,
    read_records,
    remember_record,
    user_models_dir,
)
from sr3_desktop.core.model_files.onnx_metadata import MetadataError, read_metadata
from sr3_desktop.core.model_files.probe import probe
from sr3_desktop.core.model_files.safety import check_onnx_file

PREFERRED_DEFAULTS = {"sr3": "sr3-photo-4x", "regression": "regression-photo-4x"}
VALIDATED_FILE = "validated-models.json"
"""Model files outside the model folders that passed ``validate_model``, by path, size, mtime and sha256."""
MAX_VALIDATED = 64


@dataclass(frozen=True)
class ModelEntry:
    """One installed model."""

    name: str
    """The card's name; unique among installed models."""
    path: Path
    """The .onnx file."""
    card: ModelCard
    """The validated model card."""
    bundled: bool
    """Shipped with the app (True) or imported by the user (False)."""
    probed: bool = False
    """A one-pass file without a card: ``card`` is what its test run found just now (not stored in the file)."""

    @property
    def kind(self) -> str:
        return self.card.kind

    def summary(self) -> str:
        """One line: name, kind, scale, presets, where it comes from."""
        origin = "bundled" if self.bundled else "imported"
        presets = ""
        if self.card.inference_presets:
            steps = ", ".join(f"{n} {self.card.inference_presets[n].steps}" for n in self.card.preset_names())
            presets = f"; presets (steps): {steps}"
        return f"{self.name}: {self.kind} {self.card.scale}x, {origin}{presets}"


@dataclass(frozen=True)
class ModelScan:
    """The models found, and a line for each file that could not be read."""

    entries: list[ModelEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_CARD_CACHE: dict[tuple[str, int, int], ModelCard] = {}


def _cached_card(path: Path) -> ModelCard:
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CARD_CACHE:
        _CARD_CACHE[key] = read_card(path)
    return _CARD_CACHE[key]


def _onnx_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.glob("*.onnx") if p.is_file() and not p.name.startswith(TEMP_PREFIX))
    except OSError:
        return []


def scan_models(bundled_dir: Path | None = None, user_dir: Path | None = None) -> ModelScan:
    """Bundled models first, then imported ones; unreadable files become warnings."""
    scan = ModelScan()
    seen: dict[str, Path] = {}
    for folder, bundled in ((bundled_dir or bundled_models_dir(), True), (user_dir or user_models_dir(), False)):
        for path in _onnx_files(folder):
            try:
                card = _cached_card(path)
            except (SR3Error, OSError) as err:
                scan.warnings.append(f"skipped {path}: {err}")
                continue
            key = card.name.casefold()
            if key in seen:
                scan.warnings.append(f"skipped {path}: a model named {card.name!r} is already installed ({seen[key]})")
                continue
            seen[key] = path
            scan.entries.append(ModelEntry(card.name, path, card, bundled))
    return scan


def list_models() -> list[ModelEntry]:
    """All installed models, bundled first (see ``scan_models`` for the warnings)."""
    return scan_models().entries


def default_model(kind: str, among: list[ModelEntry] | None = None) -> ModelEntry | None:
    """The model used when none is named: the preferred bundled one, else the first of its kind
    (among the installed models, or among ``among``)."""
    entries = [e for e in (list_models() if among is None else among) if e.kind == kind]
    preferred = [e for e in entries if e.bundled and e.path.stem == PREFERRED_DEFAULTS.get(kind)]
    bundled = [e for e in entries if e.bundled]
    ranked = preferred or bundled or entries
    return ranked[0] if ranked else None


def _looks_like_path(text: str) -> bool:
    return text.lower().endswith(".onnx") or os.sep in text or "/" in text or Path(text).exists()


def resolve_model(name_or_path: str | os.PathLike[str], kind: str | None = None) -> ModelEntry:
    """A model by installed name (or file stem), or by the path of an .onnx file."""
    text = str(name_or_path)
    given = Path(text).expanduser() if _looks_like_path(text) else None
    if given is not None:
        path = given
        if not path.is_file():
            raise ModelError(f"model file not found: {text}")
        if not has_card(path):  # a one-pass upscaler from elsewhere: its test run makes its card
            card = validate_model(path)
            entry = ModelEntry(card.name, path.resolve(), card, bundled=False, probed=True)
            return _of_kind(entry, kind)
        card = read_card(path)
        entry = ModelEntry(card.name, path.resolve(), card, bundled=False)
    else:
        entries = list_models()
        matches = [e for e in entries if text.casefold() in (e.name.casefold(), e.path.stem.casefold())]
        if not matches:
            names = [e.name for e in entries if kind is None or e.kind == kind]
            listed = ", ".join(names) if names else "none are installed"
            raise SR3Error(f"no model named {text!r}; available{f' {kind}' if kind else ''} models: {listed}")
        entry = matches[0]
    _of_kind(entry, kind)
    if given is not None and not in_model_folders(given):
        validate_model(given)  # a file named on the command line is untrusted: the same checks as an import
    return entry


def _of_kind(entry: ModelEntry, kind: str | None) -> ModelEntry:
    if kind is not None and entry.kind != kind:
        raise ModelError(f"{entry.name} ({entry.path.name}) is a {entry.kind} model, but a {kind} model is needed here")
    return entry


def has_card(path: str | os.PathLike[str]) -> bool:
    """Whether the .onnx file carries a model card (its metadata read off the wire format: no onnx import)."""
    try:
        return CARD_METADATA_KEY in read_metadata(path)
    except (MetadataError, OSError):  # not ONNX at all: read_card and the safety check say why
        return True


def validate_model(path: str | os.PathLike[str]) -> ModelCard:
    """Everything short of installing: safety (the operator allowlist included), card, graph signature,
    and a tiny test run in a child process under a time limit (``model_probe``), whose output must be
    finite and within the range its card allows. A file without a card is test-run every time, as a
    one-pass upscaler, and the card that run made is returned."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise ModelError(f"model file not found: {path}")
    check_onnx_file(source)
    if not has_card(source):
        return probe(source)
    card = read_card(source)
    identity = _identity(source)
    if identity not in read_records(VALIDATED_FILE):  # the test run passed for exactly these bytes before: not again
        probe(source)
        remember_record(VALIDATED_FILE, identity, MAX_VALIDATED, lambda entry: entry.get("path") == identity["path"])
    return card


def _identity(path: Path) -> dict[str, Any]:
    resolved = path.resolve()
    stat = resolved.stat()
    return {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_of(resolved)}


def _uses_external_data(path: Path) -> bool:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


def _same_source(installed: ModelCard, card: ModelCard) -> bool:
    """A one-pass copy made from the very file being imported (the copy's bytes differ by its card)."""
    digest = card.probe.get("source_sha256")
    return bool(digest) and installed.probe.get("source_sha256") == digest


def _with_card(source: Path, card: ModelCard) -> bytes:
    """The bytes of ``source`` with ``card`` in its metadata (the graph and weights untouched)."""
    import onnx

    proto = onnx.load(str(source), load_external_data=False)
    embed_card(proto, card)
    return bytes(proto.SerializeToString())




def _safe_file_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".-")
    return (cleaned or "model") + ".onnx"


def import_model(path: str | os.PathLike[str]) -> ModelEntry:
    """Validate ``path`` and copy it into the imported-models folder (atomically); a one-pass file without a
    card is copied with the card its test run made."""
    source = Path(path).expanduser().resolve()
    card = validate_model(source)
    if _uses_external_data(source):
        raise ModelError(f"{source.name} keeps its weights in separate files; export it as a single .onnx file")
    folder = user_models_dir()
    target = folder / _safe_file_name(card.name)
    for existing in scan_models().entries:
        if existing.name.casefold() == card.name.casefold():
            if sha256_of(existing.path) == sha256_of(source) or _same_source(existing.card, card):
                return existing  # importing the same file twice is fine
            raise ModelError(
                f"a different model named {card.name!r} is already installed ({existing.path}); "
                "rename the model when exporting it, or remove the installed one first"
            )
    if target.exists():
        raise ModelError(f"{target} already exists and holds another model; remove it first")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if card.kind == "onepass" and not has_card(source):
            write_atomically(target, _with_card(source, card), overwrite=False)
        else:
            copy_atomically(source, target, overwrite=False)
    except OSError as err:
        raise ModelError(f"could not copy the model into {folder}: {err.strerror or err}") from None
    return ModelEntry(card.name, target, card, bundled=False)
