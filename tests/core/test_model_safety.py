"""Untrusted .onnx files: external-data escapes, custom domains, the operator allowlist, damaged files, size cap."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.model_files.card import read_card
from sr3_desktop.core.model_files.folders import bundled_models_dir
from sr3_desktop.core.model_files.safety import ALLOWED_OPERATORS, MAX_MODEL_BYTES, _all_graphs, check_onnx_file

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


# ---------------------------------------------------------------------------------------------
# The operator allowlist

BUNDLED = sorted(bundled_models_dir().glob("*.onnx"))
"""The shipped models, found before any test moves SR3_DESKTOP_BUNDLED_DIR."""
F32 = TensorProto.FLOAT


def operators_of(path: Path) -> set[str]:
    model = onnx.load(str(path), load_external_data=False)
    return {node.op_type for graph in _all_graphs(model) for node in graph.node}


def test_both_bundled_models_pass_the_allowlist() -> None:
    assert sorted(read_card(path).kind for path in BUNDLED) == ["regression", "sr3"]
    for path in BUNDLED:
        assert operators_of(path) <= ALLOWED_OPERATORS, path.name
        check_onnx_file(path)


def test_every_allowed_operator_is_a_standard_onnx_operator() -> None:
    assert sorted(op for op in ALLOWED_OPERATORS if not onnx.defs.has(op, "")) == []
    assert {"Loop", "Scan", "If"}.isdisjoint(ALLOWED_OPERATORS)


def graph_model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto] | None = None, *,
                ml: bool = False) -> onnx.ModelProto:
    """x (float [3, 4]) in, y out, around ``nodes``."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F32, [3, 4])],
                              [helper.make_tensor_value_info("y", F32, None)], inits or [])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("ai.onnx.ml", 3)] if ml else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def body(name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
         nodes: list[onnx.NodeProto]) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, inputs, outputs)


def value(name: str, dtype: int = F32, shape: list[int] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def loop_model() -> onnx.ModelProto:
    inner = body("body", [value("i", TensorProto.INT64, []), value("c", TensorProto.BOOL, []), value("v")],
                 [value("c_out", TensorProto.BOOL, []), value("v_out")],
                 [helper.make_node("Identity", ["c"], ["c_out"]), helper.make_node("Identity", ["v"], ["v_out"])])
    inits = [numpy_helper.from_array(np.array(2**62, dtype=np.int64), "n"),
             numpy_helper.from_array(np.array(True), "t")]
    return graph_model([helper.make_node("Loop", ["n", "t", "x"], ["y"], body=inner)], inits)


def scan_model() -> onnx.ModelProto:
    inner = body("body", [value("s", F32, [4]), value("row", F32, [4])], [value("s_out", F32, [4])],
                 [helper.make_node("Add", ["s", "row"], ["s_out"])])
    inits = [numpy_helper.from_array(np.zeros(4, dtype=np.float32), "s0")]
    return graph_model([helper.make_node("Scan", ["s0", "x"], ["y"], body=inner, num_scan_inputs=1)], inits)


def if_model() -> onnx.ModelProto:
    branch = body("branch", [], [value("z")], [helper.make_node("Identity", ["x"], ["z"])])
    inits = [numpy_helper.from_array(np.array(True), "t")]
    return graph_model([helper.make_node("If", ["t"], ["y"], then_branch=branch, else_branch=branch)], inits)


def loop_inside_if() -> onnx.ModelProto:
    """The Loop only in a subgraph: the walk must reach it."""
    model = if_model()
    loop = loop_model().graph
    loop_graph = body("then", [], [value("y")], list(loop.node))
    model.graph.initializer.extend(loop.initializer)
    model.graph.node[0].attribute[0].g.CopyFrom(loop_graph)  # then_branch
    return model


def unknown_ops() -> onnx.ModelProto:
    return graph_model([helper.make_node("Frobnicate", ["x"], ["a"]), helper.make_node("Frobnicate", ["a"], ["b"]),
                        helper.make_node("Frobnicate", ["b"], ["y"])])


def ml_op() -> onnx.ModelProto:
    node = helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="MAX")
    return graph_model([node], ml=True)


def random_op() -> onnx.ModelProto:
    return graph_model([helper.make_node("RandomNormalLike", ["x"], ["y"])])


@pytest.mark.parametrize(("build", "named"), [
    (loop_model, r"the operator Loop \(1 node\)"),
    (scan_model, r"the operator Scan \(1 node\)"),
    (if_model, r"the operator If \(1 node\)"),
    (loop_inside_if, r"the operators If \(1 node\), Loop \(1 node\)"),
    (unknown_ops, r"the operator Frobnicate \(3 nodes\)"),
    (ml_op, r"the operator ai\.onnx\.ml\.Normalizer \(1 node\)"),
    (random_op, r"the operator RandomNormalLike \(1 node\)"),
], ids=["loop", "scan", "if", "loop-in-subgraph", "unknown", "ml-domain", "random"])
def test_operators_outside_the_allowlist_are_refused_by_name(folder: Path, build: Any, named: str) -> None:
    start = time.perf_counter()
    error = refused(write(folder / "hostile.onnx", build()), rf"hostile\.onnx is refused: it uses {named}")
    assert "no control flow such as Loop, Scan or If" in str(error)
    assert time.perf_counter() - start < 2.0  # read, never run
