"""The model registry: bundled + imported models, name resolution, validated atomic import."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_fixtures import local_sr3, make_card, oracle_sr3, regression, save

from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.model_files.card import ModelCardError, embed_card
from sr3_desktop.core.model_files.folders import user_models_dir
from sr3_desktop.core.model_files.registry import (
    default_model,
    import_model,
    list_models,
    resolve_model,
    scan_models,
    validate_model,
)


@pytest.fixture
def registry(empty_model_folders: tuple[Path, Path]) -> Path:
    """An empty bundled folder and an empty data folder; returns the bundled folder."""
    return empty_model_folders[0]


def nan_model() -> onnx.ModelProto:
    """A valid SR3 graph whose output is y_t / 0."""
    image = ["N", 3, "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("Div", ["y_t", "zero"], ["prediction"])], "nan",
        [helper.make_tensor_value_info("lr_up", TensorProto.FLOAT, image),
         helper.make_tensor_value_info("y_t", TensorProto.FLOAT, image),
         helper.make_tensor_value_info("noise_level", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, image)],
        [numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    embed_card(model, make_card("sr3", name="nan-model"))
    return model


def test_data_folder_follows_the_environment(registry: Path, tmp_path: Path) -> None:
    assert user_models_dir() == tmp_path / "data" / "models"
    assert list_models() == [] and default_model("sr3") is None


def test_bundled_then_imported_and_defaults(registry: Path, tmp_path: Path) -> None:
    save(oracle_sr3(name="sr3-photo-4x"), registry / "sr3-photo-4x.onnx")
    save(local_sr3(name="another-bundled"), registry / "another-bundled.onnx")
    save(regression(name="regression-photo-4x"), registry / "regression-photo-4x.onnx")
    imported = import_model(save(local_sr3(name="my-model"), tmp_path / "incoming" / "mine.onnx"))
    assert imported.path.parent == user_models_dir() and not imported.bundled
    names = [(e.name, e.bundled) for e in list_models()]
    assert names == [("another-bundled", True), ("regression-photo-4x", True), ("sr3-photo-4x", True),
                     ("my-model", False)]
    sr3_default, reg_default = default_model("sr3"), default_model("regression")
    assert sr3_default is not None and sr3_default.name == "sr3-photo-4x"
    assert reg_default is not None and reg_default.kind == "regression"
    assert "presets (steps): fast 4, balanced 6, quality 10" in sr3_default.summary()


def test_resolve_by_name_stem_or_path(registry: Path, tmp_path: Path) -> None:
    save(oracle_sr3(name="Oracle Model"), registry / "oracle-file.onnx")
    save(regression(name="reg"), registry / "reg.onnx")
    assert resolve_model("oracle model", "sr3").path.name == "oracle-file.onnx"
    assert resolve_model("oracle-file", "sr3").name == "Oracle Model"
    outside = save(local_sr3(name="outside"), tmp_path / "elsewhere" / "outside.onnx")
    entry = resolve_model(str(outside), "sr3")
    assert entry.name == "outside" and entry.path == outside.resolve() and not entry.bundled
    with pytest.raises(SR3Error, match="available sr3 models: Oracle Model"):
        resolve_model("missing", "sr3")
    with pytest.raises(ModelError, match="is a regression model, but a sr3 model"):
        resolve_model("reg", "sr3")
    with pytest.raises(ModelError, match="not found"):
        resolve_model(str(tmp_path / "nope.onnx"))


def test_unreadable_files_are_skipped_with_a_warning(registry: Path) -> None:
    (registry / "broken.onnx").write_bytes(b"garbage")
    save(oracle_sr3(name="twin"), registry / "a.onnx")
    save(local_sr3(name="twin"), registry / "b.onnx")
    scan = scan_models()
    assert [e.name for e in scan.entries] == ["twin"]
    assert len(scan.warnings) == 2
    assert any("broken.onnx" in w for w in scan.warnings) and any("already installed" in w for w in scan.warnings)


def test_import_refuses_name_clashes_unless_identical(registry: Path, tmp_path: Path) -> None:
    first = save(local_sr3(name="same-name"), tmp_path / "one" / "m.onnx")
    entry = import_model(first)
    assert import_model(first) == entry  # the very same file again: fine
    other = save(local_sr3(name="same-name", seed=5), tmp_path / "two" / "m.onnx")
    with pytest.raises(ModelError, match="already installed"):
        import_model(other)
    assert sorted(p.name for p in user_models_dir().iterdir()) == ["same-name.onnx"]  # no temp files left


def test_import_validates_before_copying(registry: Path, tmp_path: Path) -> None:
    bad_card = oracle_sr3()
    for prop in bad_card.metadata_props:
        prop.value = prop.value.replace('"kind": "sr3"', '"kind": "gan"')
    cases = [
        (save(bad_card, tmp_path / "bad-card.onnx"), ModelCardError, "kind"),
        (save(nan_model(), tmp_path / "nan.onnx"), ModelError, "invalid values"),
        (tmp_path / "missing.onnx", ModelError, "not found"),
    ]
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 not a model")
    cases.append((garbage, ModelError, "garbage.onnx"))
    for path, error, message in cases:
        with pytest.raises(error, match=message):
            import_model(path)
    assert not user_models_dir().exists() or list(user_models_dir().iterdir()) == []


def test_validate_model_returns_the_card(tmp_path: Path) -> None:
    card = validate_model(save(regression(name="checked"), tmp_path / "r.onnx"))
    assert card.name == "checked" and card.kind == "regression"
