"""Untrusted models end to end: no custom-op library is ever loaded, custom domains are refused
before any session exists, and import refuses wrong signatures, wrong scales and NaN, copying nothing."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_fixtures import _finish, custom_graph, local_sr3, make_card, oracle_sr3, save

from sr3_desktop.core.denoiser import OnnxDenoiser
from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.models import import_model, user_models_dir

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CODE = ("sr3_desktop", "exporter")
LIBRARY_LOADERS = {"register_custom_ops_library", "register_execution_provider_library"}
"""onnxruntime calls that load a native library into the process."""
FORBIDDEN_MODULES = {"onnxruntime_extensions"}
"""A package whose only purpose is a custom-op library."""
IMAGE = ["N", 3, "H", "W"]
F32 = TensorProto.FLOAT


# --- no custom-op library, ever ------------------------------------------------------------------
def library_loading_in(source: str, filename: str) -> list[str]:
    """Every attribute, name, string or import in ``source`` that could load a custom-op library."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr in LIBRARY_LOADERS:
            found.append(f"{where} .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in LIBRARY_LOADERS:
            found.append(f"{where} {node.id}")
        elif isinstance(node, ast.Constant) and node.value in LIBRARY_LOADERS:  # getattr(options, "...")
            found.append(f"{where} '{node.value}'")
        elif isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"{where} from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom):
            found += [f"{where} import {a.name}" for a in node.names if a.name in LIBRARY_LOADERS]
    return found


def test_the_scanner_finds_every_way_of_loading_a_library() -> None:
    planted = (
        "import onnxruntime as ort\nimport onnxruntime_extensions\nfrom onnxruntime_extensions import x\n"
        "o = ort.SessionOptions()\no.register_custom_ops_library('evil.so')\n"
        "getattr(o, 'register_custom_ops_library')('evil.so')\nort.register_execution_provider_library('a', 'b')\n"
    )
    assert len(library_loading_in(planted, "planted.py")) == 5
    assert library_loading_in("import onnxruntime as ort\nort.SessionOptions()\n", "clean.py") == []


def test_no_shipped_code_can_load_a_custom_op_library() -> None:
    files = [path for folder in SHIPPED_CODE for path in sorted((REPO / folder).rglob("*.py"))]
    assert len(files) > 20  # the scan really saw the app, the core and the exporter
    found = [hit for path in files for hit in library_loading_in(path.read_text("utf-8"), str(path.relative_to(REPO)))]
    assert found == []


@pytest.fixture
def registry(empty_model_folders: tuple[Path, Path]) -> Path:
    """Empty bundled and data folders; returns the data folder."""
    return empty_model_folders[1]


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the models onnxruntime opens and any custom-op library registered, then does the real work."""
    opened: list[str] = []
    real_session = ort.InferenceSession
    real_register = ort.SessionOptions.register_custom_ops_library

    def open_session(path: Any, *args: Any, **kwargs: Any) -> ort.InferenceSession:
        opened.append(Path(str(path)).name)
        return real_session(path, *args, **kwargs)

    def register(self: ort.SessionOptions, library: str) -> None:
        opened.append(f"custom-op library {library}")
        real_register(self, library)

    monkeypatch.setattr(ort, "InferenceSession", open_session)
    monkeypatch.setattr(ort.SessionOptions, "register_custom_ops_library", register)
    return opened


def test_a_normal_import_opens_only_the_model(registry: Path, tmp_path: Path, sessions: list[str]) -> None:
    """The spy works: importing a good model opens exactly one session and registers no library."""
    entry = import_model(save(local_sr3(name="good"), tmp_path / "good.onnx"))
    assert sessions == ["good.onnx"]
    assert entry.path.parent == user_models_dir()


def custom_domain_model() -> onnx.ModelProto:
    model = oracle_sr3(name="custom-op")
    model.graph.node.append(helper.make_node("Steal", ["prediction"], ["loot"], domain="com.evil.ops"))
    model.opset_import.append(helper.make_opsetid("com.evil.ops", 1))
    return model


def test_custom_domain_is_refused_before_any_session(registry: Path, tmp_path: Path, sessions: list[str]) -> None:
    path = tmp_path / "custom.onnx"
    onnx.save(custom_domain_model(), str(path))
    with pytest.raises(ModelError, match=r"com\.evil\.ops"):
        OnnxDenoiser(path, "cpu")
    with pytest.raises(ModelError, match=r"com\.evil\.ops"):
        import_model(path)
    assert sessions == []  # neither a session nor a library
    assert not registry.exists() or [p for p in registry.rglob("*") if p.is_file()] == []


# --- import refuses what does not work ------------------------------------------------------------
def finish(nodes: list[onnx.NodeProto], inputs: list[tuple[str, int, list[Any]]], output: str,
           inits: list[onnx.TensorProto], kind: str, name: str) -> onnx.ModelProto:
    """A graph with a model card of ``kind``, its output at any (symbolic) size."""
    infos = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    out = helper.make_tensor_value_info(output, F32, ["N", 3, "H_out", "W_out"])
    return _finish(nodes, infos, [out], inits, make_card(kind, name=name))


SR3_INPUTS = [("lr_up", F32, IMAGE), ("y_t", F32, IMAGE), ("noise_level", F32, ["N"])]


def sr3_half_size() -> onnx.ModelProto:
    """An SR3 graph whose prediction is y_t average-pooled 2x2: half the size of its input."""
    nodes = [helper.make_node("AveragePool", ["y_t"], ["prediction"], kernel_shape=[2, 2], strides=[2, 2])]
    return finish(nodes, SR3_INPUTS, "prediction", [], "sr3", "half-size")


def regression_upsampling_itself() -> onnx.ModelProto:
    """A regression graph that upsamples 2x again, as a model expecting the small LR image would."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    nodes = [helper.make_node("Resize", ["lr_up", "", "scales"], ["y"], mode="nearest")]
    return finish(nodes, [("lr_up", F32, IMAGE)], "y", [scales], "regression", "double-size")


def sr3_nan_everywhere() -> onnx.ModelProto:
    """(y_t - y_t) / 0: NaN (not infinity) on every pixel."""
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    nodes = [helper.make_node("Sub", ["y_t", "y_t"], ["nothing"]),
             helper.make_node("Div", ["nothing", "zero"], ["prediction"])]
    return finish(nodes, SR3_INPUTS, "prediction", [zero], "sr3", "nan-everywhere")


def regression_nan_on_dark_pixels() -> onnx.ModelProto:
    """sqrt(lr_up): NaN only where the test image is below 0 in [-1, 1], finite elsewhere."""
    return finish([helper.make_node("Sqrt", ["lr_up"], ["y"])], [("lr_up", F32, IMAGE)], "y", [], "regression",
                  "nan-on-some-pixels")


def refused(path: Path, message: str, data: Path) -> None:
    """import_model refuses ``path`` with ``message``; the data folder holds no file afterwards."""
    before = path.read_bytes()
    with pytest.raises(ModelError, match=message):
        import_model(path)
    assert path.read_bytes() == before
    assert not data.exists() or [p for p in data.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (sr3_half_size, r"half-size returned an output of shape \[1, 3, 8, 8\] for an input of shape \[1, 3, 16, 16\]"),
        (regression_upsampling_itself, r"output of shape \[1, 3, 32, 32\] for an input of shape \[1, 3, 16, 16\]"),
        (sr3_nan_everywhere, r"candidate\.onnx produced invalid values \(NaN or infinity\) on a test image"),
        (regression_nan_on_dark_pixels, r"candidate\.onnx produced invalid values \(NaN or infinity\)"),
    ],
    ids=["sr3-half-size", "regression-double-size", "nan-everywhere", "nan-on-some-pixels"],
)
def test_import_refuses_a_wrong_scale_or_nan_in_its_test_run(
    registry: Path, tmp_path: Path, build: Any, message: str
) -> None:
    refused(save(build(), tmp_path / "candidate.onnx"), message, registry)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (SR3_INPUTS[:2], r"inputs \['lr_up', 'y_t'\] do not match its model card .*; missing \['noise_level'\]"),
        ([("lr_up", F32, IMAGE), ("y_t", F32, ["N", 3, "H"]), ("noise_level", F32, ["N"])],
         r"input 'y_t' has rank 3, expected 4"),
        ([("lr_up", TensorProto.INT8, IMAGE), ("y_t", F32, IMAGE), ("noise_level", F32, ["N"])],
         r"input 'lr_up' is tensor\(int8\), expected float32 or float16"),
        ([("image", F32, IMAGE), ("noisy", F32, IMAGE), ("noise_level", F32, ["N"])],
         r"missing \['lr_up', 'y_t'\]; unexpected \['image', 'noisy'\]"),
        ([*SR3_INPUTS, ("mask", F32, IMAGE)], r"unexpected \['mask'\]"),
    ],
    ids=["two-inputs", "rank-3", "int8", "names-differ", "extra-input"],
)
def test_import_refuses_a_signature_that_differs_from_the_card(
    registry: Path, tmp_path: Path, inputs: list[tuple[str, int, list[Any]]], message: str
) -> None:
    path = save(custom_graph(inputs, [("prediction", F32, IMAGE)], make_card("sr3", name="mismatch")),
                tmp_path / "mismatch.onnx")
    refused(path, rf"mismatch\.onnx: .*{message}", registry)


def test_import_refuses_an_output_named_differently(registry: Path, tmp_path: Path) -> None:
    path = save(custom_graph(SR3_INPUTS, [("noise", F32, IMAGE)], make_card("sr3", name="renamed")),
                tmp_path / "renamed.onnx")
    refused(path, r"outputs \['noise'\] do not match its model card \['prediction'\]", registry)
