"""The model card: round trips (JSON, ONNX metadata, onnxruntime) and rejection of bad cards."""

import json
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
from onnx_fixtures import make_card, oracle_sr3, regression, save

from sr3_desktop.core.diffusion.schedule import ScheduleSpec
from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.model_files.card import (
    CARD_METADATA_KEY,
    FLAT_AMPLITUDE,
    SCHEMA_VERSION,
    ModelCard,
    ModelCardError,
    card_from_metadata,
    embed_card,
    read_card,
)
from sr3_desktop.core.upscale.model_space import attention_downsample, max_auto_tile


def card_dict(**changes: Any) -> dict[str, Any]:
    data = make_card("sr3").to_dict()
    data.update(changes)
    return data


@pytest.mark.parametrize("kind", ["sr3", "regression"])
def test_json_round_trip(kind: str) -> None:
    card = make_card(kind, prediction="v", target="residual", noise_conditioning="gamma")
    assert ModelCard.from_json(card.to_json()) == card
    assert json.loads(card.to_json())["schema_version"] == SCHEMA_VERSION == 6


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


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, None, "one", True])
def test_unknown_schema_versions_are_refused(version: Any) -> None:
    with pytest.raises(ModelCardError, match=r"schema_version .* not supported"):
        ModelCard.from_dict(card_dict(schema_version=version))


def test_a_schema_1_card_still_reads_and_derives_the_attention_reach_from_its_architecture() -> None:
    """Mutations caught: schema 1 refused, or the stated reach ignored by the tiling (an unshuffled U-Net
    would get tiles sized for a full-resolution one)."""
    old = card_dict(schema_version=1, size_multiple=8,
                    architecture={"channel_mults": [1, 2, 2, 4], "attention_levels": [-1]})
    old.pop("attention_downsample")
    card = ModelCard.from_dict(old)
    assert card.schema_version == SCHEMA_VERSION and card.attention_downsample is None
    assert attention_downsample(card) == 8 and max_auto_tile(card) == 64 * 8
    stated = ModelCard.from_dict(card_dict(size_multiple=16, attention_downsample=16))
    assert attention_downsample(stated) == 16 and max_auto_tile(stated) == 64 * 16
    assert ModelCard.from_json(stated.to_json()).attention_downsample == 16
    with pytest.raises(ModelCardError, match="attention_downsample must be a positive integer"):
        ModelCard.from_dict(card_dict(attention_downsample=0))


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


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_older_cards_still_read_and_are_written_as_the_current_schema(version: int) -> None:
    """A schema-1 card (no later fields), schema-2 one (no preset texture_gain), schema-3 one (no preset
    flat_amplitude) or schema-4 one (no compressed_preset) reads with the new fields at their defaults, and
    writes as the current version. Catches: READABLE_SCHEMA_VERSIONS losing 1 to 4, or from_dict keeping the old
    version on write."""
    data = card_dict(schema_version=version)
    del data["compressed_preset"]
    assert ModelCard.from_dict(data).compressed_preset == ""
    for preset in data["inference_presets"].values():
        if version == 4:
            break
        del preset["flat_amplitude"]
        if version < 3:
            del preset["texture_gain"], preset["deblock"]
    for name in ("attention_downsample", "native_input_size", "fixed_tile_size", "source", "probe"):
        if version == 1:
            del data[name]
    card = ModelCard.from_dict(data)
    if version == 1:
        assert (card.attention_downsample, card.native_input_size, card.fixed_tile_size, card.source,
                card.probe) == (None, None, None, {}, {})
    assert all(p.texture_gain == 1.0 and not p.deblock and p.flat_amplitude == FLAT_AMPLITUDE
               for p in card.inference_presets.values())
    written = json.loads(card.to_json())
    assert written["schema_version"] == SCHEMA_VERSION
    assert ModelCard.from_dict(written) == card


def test_schema_2_fields_round_trip_and_explicit_betas() -> None:
    """The converter's fields, the one-pass probe and an explicit train schedule survive JSON. Catches: a
    field left out of from_dict (it would come back as its default), or the explicit betas dropped from
    ScheduleSpec.to_dict."""
    schedule = ScheduleSpec(kind="explicit", steps=3, explicit_betas=(0.1, 0.2, 0.3))
    card = make_card("sr3").with_updates(
        attention_downsample=4, native_input_size=16, fixed_tile_size=128, train_schedule=schedule,
        source={"file": "I640000_E37_gen.pth", "iteration": 640000, "epoch": 37})
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert again.train_schedule is not None
    assert again.train_schedule.gammas().tolist() == [0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7]


def test_a_schema_2_card_keeps_its_new_fields() -> None:
    """Mutation caught: from_dict dropping attention_downsample or probe (they would come back as defaults)."""
    card = make_card("sr3").with_updates(attention_downsample=4, probe={"by": "test run", "odd_size_ran": True})
    again = ModelCard.from_json(card.to_json())
    assert (again.attention_downsample, again.probe) == (4, {"by": "test run", "odd_size_ran": True})


@pytest.mark.parametrize(("changes", "message"), [
    ({"fixed_tile_size": 130}, "not a multiple of size_multiple"),
    ({"native_input_size": 0}, "positive integer"),
    ({"attention_downsample": 2.5}, "whole number"),
])
def test_bad_schema_2_fields_are_refused(changes: dict[str, Any], message: str) -> None:
    """Catches: the new fields' checks removed from __post_init__ / _optional_int."""
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_dict(card_dict(**changes))
