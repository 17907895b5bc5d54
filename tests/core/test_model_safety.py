"""Untrusted .onnx files: external-data escapes, custom domains, damaged files, size cap."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.model_safety import MAX_MODEL_BYTES, check_onnx_file

WEIGHT = np.arange(12, dtype=np.float32).reshape(3, 4)


def tiny_model(node_domain: str = "", extra_opsets: tuple[tuple[str, int], ...] = ()) -> onnx.ModelProto:
    """y = x + w, with w an initializer (so it can be moved to external data)."""
    node = helper.make_node("Add", ["x", "w"], ["y"], name="add", domain=node_domain)
    graph = helper.make_graph([node], "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
                              [numpy_helper.from_array(WEIGHT, "w")])
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def with_external_weight(model: onnx.ModelProto, location: str, length: int | None = None) -> onnx.ModelProto:
    """Point the initializer's data at ``location`` (written by hand, as an attacker would)."""
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    entries = {"location": location, "offset": "0", "length": str(WEIGHT.nbytes if length is None else length)}
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    return model


def write(path: Path, model: onnx.ModelProto) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(path: Path, match: str) -> ModelError:
    digest = sha256(path) if path.is_file() else None
    with pytest.raises(ModelError, match=match) as info:
        check_onnx_file(path)
    assert isinstance(info.value, SR3Error) and path.name in str(info.value)
    if digest is not None:
        assert sha256(path) == digest
    return info.value


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    return models


# ---------------------------------------------------------------------------------------------
# Accepted models


def test_plain_model_is_accepted(folder: Path) -> None:
    check_onnx_file(write(folder / "ok.onnx", tiny_model()))


def test_external_data_inside_the_folder_is_accepted(folder: Path) -> None:
    (folder / "weights").mkdir()
    (folder / "weights" / "w.bin").write_bytes(WEIGHT.tobytes())
    check_onnx_file(write(folder / "ext.onnx", with_external_weight(tiny_model(), "weights/w.bin")))


def test_ml_domain_is_accepted(folder: Path) -> None:
    check_onnx_file(write(folder / "ml.onnx", tiny_model(extra_opsets=(("ai.onnx.ml", 3),))))


# ---------------------------------------------------------------------------------------------
# External data that escapes the folder


@pytest.mark.parametrize(("location", "reason"), [
    ("../outside.bin", "'\\.\\.'"),
    ("weights/../../outside.bin", "'\\.\\.'"),
    ("..\\outside.bin", "'\\.\\.'"),
    ("/etc/passwd", "absolute"),
    ("C:\\Windows\\win.ini", "absolute"),
    ("", "no name"),
    ("missing.bin", "missing"),
])
def test_external_data_outside_the_folder_is_refused(folder: Path, location: str, reason: str) -> None:
    (folder.parent / "outside.bin").write_bytes(WEIGHT.tobytes())
    refused(write(folder / "evil.onnx", with_external_weight(tiny_model(), location)), reason)


def test_external_data_through_a_symlinked_file_is_refused(folder: Path) -> None:
    secret = folder.parent / "secret.bin"
    secret.write_bytes(WEIGHT.tobytes())
    (folder / "w.bin").symlink_to(secret)
    refused(write(folder / "link.onnx", with_external_weight(tiny_model(), "w.bin")), "symbolic link")


def test_external_data_through_a_symlink_inside_the_folder_is_refused(folder: Path) -> None:
    (folder / "real.bin").write_bytes(WEIGHT.tobytes())
    (folder / "w.bin").symlink_to(folder / "real.bin")
    refused(write(folder / "link.onnx", with_external_weight(tiny_model(), "w.bin")), "symbolic link")


def test_external_data_through_a_symlinked_folder_is_refused(folder: Path) -> None:
    elsewhere = folder.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "w.bin").write_bytes(WEIGHT.tobytes())
    (folder / "sub").symlink_to(elsewhere, target_is_directory=True)
    refused(write(folder / "link.onnx", with_external_weight(tiny_model(), "sub/w.bin")), "symbolic link")


def test_external_data_through_a_hardlink_is_refused(folder: Path) -> None:
    secret = folder.parent / "secret.bin"
    secret.write_bytes(WEIGHT.tobytes())
    os.link(secret, folder / "w.bin")
    refused(write(folder / "hard.onnx", with_external_weight(tiny_model(), "w.bin")), "hard link")


def test_external_data_shorter_than_declared_is_refused(folder: Path) -> None:
    (folder / "w.bin").write_bytes(WEIGHT.tobytes()[:10])
    refused(write(folder / "short.onnx", with_external_weight(tiny_model(), "w.bin")), "truncated")


def test_external_data_in_a_node_attribute_is_checked_too(folder: Path) -> None:
    constant = numpy_helper.from_array(WEIGHT, "c")
    constant.ClearField("raw_data")
    constant.data_location = TensorProto.EXTERNAL
    constant.external_data.add(key="location", value="../outside.bin")
    node = helper.make_node("Constant", [], ["y"], name="const", value=constant)
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    refused(write(folder / "attr.onnx", model), "'\\.\\.'")


# ---------------------------------------------------------------------------------------------
# Custom operator domains


@pytest.mark.parametrize("domain", ["com.evil", "com.microsoft", "ai.onnx.contrib"])
def test_custom_domain_node_is_refused_and_named(folder: Path, domain: str) -> None:
    model = tiny_model(node_domain=domain, extra_opsets=((domain, 1),))
    error = refused(write(folder / "custom.onnx", model), f"custom domain '{domain}'")
    assert "no custom-operator library is ever loaded" in str(error)


def test_custom_domain_opset_import_alone_is_refused(folder: Path) -> None:
    refused(write(folder / "opset.onnx", tiny_model(extra_opsets=(("com.evil", 1),))), "'com.evil'")


def test_custom_domain_inside_a_subgraph_is_refused(folder: Path) -> None:
    inner = helper.make_graph([helper.make_node("Evil", [], ["z"], domain="com.evil", name="hidden")], "then", [],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    branch = helper.make_node("If", ["cond"], ["out"], then_branch=inner, else_branch=inner, name="if")
    graph = helper.make_graph([branch], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    refused(write(folder / "sub.onnx", model), "'com.evil'.*hidden")


def test_model_local_function_in_a_custom_domain_is_refused(folder: Path) -> None:
    function = helper.make_function("com.evil", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                                    [helper.make_opsetid("", 17)])
    model = tiny_model()
    model.functions.append(function)
    refused(write(folder / "function.onnx", model), "'com.evil'.*Twice")


# ---------------------------------------------------------------------------------------------
# Damaged, foreign and oversized files


def test_every_truncation_of_a_model_is_refused(folder: Path) -> None:
    data = tiny_model().SerializeToString()
    for length in range(len(data)):
        path = folder / "cut.onnx"
        path.write_bytes(data[:length])
        with pytest.raises(ModelError, match="not a valid ONNX model"):
            check_onnx_file(path)


@pytest.mark.parametrize("content", [b"", b"hello, I am not a model\n", bytes(range(256)) * 4,
                                     np.random.default_rng(0).bytes(5000), b"\x89PNG\r\n\x1a\n" + b"\x00" * 100])
def test_garbage_is_refused(folder: Path, content: bytes) -> None:
    path = folder / "garbage.onnx"
    path.write_bytes(content)
    refused(path, "not a valid ONNX model")


def test_missing_and_non_file_models_are_refused(folder: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        check_onnx_file(folder / "absent.onnx")
    (folder / "dir.onnx").mkdir()
    with pytest.raises(ModelError, match="not a regular file"):
        check_onnx_file(folder / "dir.onnx")


def test_oversized_file_is_refused_before_reading(folder: Path) -> None:
    path = folder / "huge.onnx"
    with open(path, "wb") as handle:  # sparse: takes no disk space
        handle.truncate(MAX_MODEL_BYTES + 1)
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"huge\.onnx is 2\.0 GiB, over the 2 GiB limit"):
        check_onnx_file(path)
    assert time.perf_counter() - start < 1.0, "refused from its size, without parsing"
    path.unlink()
