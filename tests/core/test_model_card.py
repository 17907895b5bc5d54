"""The model card: round trips (JSON, ONNX metadata, onnxruntime) and rejection of bad cards."""

import json
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
from onnx_fixtures import make_card, oracle_sr3, regression, save

from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.model_card import (
    CARD_METADATA_KEY,
    ModelCard,
    ModelCardError,
    card_from_metadata,
    embed_card,
    read_card,
)


def card_dict(**changes: Any) -> dict[str, Any]:
    data = make_card("sr3").to_dict()
    data.update(changes)
    return data


@pytest.mark.parametrize("kind", ["sr3", "regression"])
def test_json_round_trip(kind: str) -> None:
    card = make_card(kind, prediction="v", target="residual", noise_conditioning="gamma")
    assert ModelCard.from_json(card.to_json()) == card
    assert json.loads(card.to_json())["schema_version"] == 2


def test_onnx_metadata_round_trip(tmp_path: Path) -> None:
    card = make_card("sr3", name="round-trip")
    path = save(oracle_sr3(card), tmp_path / "m.onnx")
    assert read_card(path) == card
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert card_from_metadata(session.get_modelmeta().custom_metadata_map) == card
    model = regression()
    embed_card(model, make_card("regression", name="second"))
    embed_card(model, make_card("regression", name="third"))  # replaces, never duplicates
    assert [p.key for p in model.metadata_props].count(CARD_METADATA_KEY) == 1
    assert card_from_metadata({p.key: p.value for p in model.metadata_props}).name == "third"


def test_presets_keep_their_order_and_default() -> None:
    card = make_card("sr3")
    assert card.preset_names() == ["fast", "balanced", "quality"]
    assert card.preset("quality").start == "noise" and card.preset("quality").steps == 10
    assert card.preset("balanced").network_evaluations == 7
    with pytest.raises(ModelCardError, match="has no preset 'turbo'; it has \\['fast', 'balanced', 'quality'\\]"):
        card.preset("turbo")


@pytest.mark.parametrize("missing", ["name", "kind", "scale", "size_multiple", "inputs", "outputs"])
def test_missing_fields_are_named(missing: str) -> None:
    data = card_dict()
    del data[missing]
    with pytest.raises(ModelCardError, match=f"missing required field\\(s\\): {missing}"):
        ModelCard.from_dict(data)


@pytest.mark.parametrize("version", [3, 0, None, "one", True])
def test_unknown_schema_versions_are_refused(version: Any) -> None:
    with pytest.raises(ModelCardError, match=r"schema_version .* not supported"):
        ModelCard.from_dict(card_dict(schema_version=version))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"inputs": ["lr", "y_t", "noise_level"]}, "must have inputs \\['lr_up', 'y_t', 'noise_level'\\]"),
        ({"outputs": ["eps"]}, "outputs \\['prediction'\\]"),
        ({"kind": "gan"}, "kind must be 'sr3', 'regression' or 'onepass'"),
        ({"scale": 0}, "scale must be between 1 and 16"),
        ({"size_multiple": 0}, "size_multiple"),
        ({"prediction": "score"}, "unknown prediction 'score'"),
        ({"target": "lr"}, "unknown target 'lr'"),
        ({"noise_conditioning": "sigma"}, "unknown noise_conditioning"),
        ({"value_range": [0, 1]}, "value_range must be \\[-1, 1\\]"),
        ({"train_schedule": None}, "needs a train_schedule"),
        ({"train_schedule": {"type": "linear"}}, "malformed"),
        ({"inference_presets": {}}, "at least one inference preset"),
        ({"default_preset": "turbo"}, "default preset 'turbo'"),
        ({"name": "  "}, "empty name"),
        ({"scale": "four"}, "malformed"),
    ],
)
def test_bad_fields_are_refused_with_a_reason(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_dict(card_dict(**changes))


@pytest.mark.parametrize(
    ("preset_changes", "message"),
    [
        ({"steps": 3}, "lists 4 noise levels but says steps=3"),
        ({"noise_levels": [0.9, 0.5, 0.6, 0.99]}, "noise levels are invalid"),
        ({"noise_levels": [0.1, 0.5, 0.6, 1.0]}, "noise levels are invalid"),
        ({"sampler": "euler"}, "unknown sampler 'euler'"),
        ({"eta": 2.0}, "eta must be in \\[0, 1\\]"),
        ({"start": "gan"}, "unknown chain start 'gan'"),
        ({"strength": 0.0}, "strength must be in \\(0, 1\\]"),
        ({"back_projection": -1}, "back_projection must be >= 0"),
    ],
)
def test_bad_presets_are_refused(preset_changes: dict[str, Any], message: str) -> None:
    data = card_dict()
    data["inference_presets"]["fast"].update(preset_changes)
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_dict(data)


def test_unparseable_cards() -> None:
    with pytest.raises(ModelCardError, match="not valid JSON"):
        ModelCard.from_json("{nope")
    with pytest.raises(ModelCardError, match="must be a JSON object"):
        ModelCard.from_json("[1, 2]")
    data = card_dict()
    data["inference_presets"]["fast"] = "quick"
    with pytest.raises(ModelCardError, match="preset 'fast' must be a JSON object"):
        ModelCard.from_dict(data)
    data = card_dict()
    del data["inference_presets"]["fast"]["steps"]
    with pytest.raises(ModelCardError, match="needs 'steps' and 'noise_levels'"):
        ModelCard.from_dict(data)
    with pytest.raises(ModelCardError, match="re-export it with the exporter"):
        card_from_metadata({})


def test_read_card_errors_are_model_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"\xff\xfe definitely not protobuf")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        read_card(garbage)
    with pytest.raises(ModelCardError, match="not found"):
        read_card(tmp_path / "missing.onnx")
    assert issubclass(ModelCardError, ModelError)


def test_schema_1_cards_are_still_read_and_written_back_as_2() -> None:
    """A card of today's bundled models (schema 1, none of the new fields) reads with the new fields at their
    defaults, and writes as schema 2. Mutation caught: READABLE_SCHEMAS = (2,) (old cards refused), or to_dict
    keeping the version it read."""
    data = card_dict(schema_version=1)
    for new_field in ("attention_downsample", "probe"):
        data.pop(new_field)
    card = ModelCard.from_dict(data)
    assert (card.schema_version, card.attention_downsample, card.probe) == (1, None, {})
    written = json.loads(card.to_json())
    assert written["schema_version"] == 2
    assert ModelCard.from_dict(written) == card.with_updates(schema_version=2)


def test_a_schema_2_card_keeps_its_new_fields() -> None:
    """Mutation caught: from_dict dropping attention_downsample or probe (they would come back as defaults)."""
    card = make_card("sr3").with_updates(attention_downsample=4)
    assert ModelCard.from_json(card.to_json()).attention_downsample == 4
