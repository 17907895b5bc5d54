"""Untrusted models end to end: no custom-op library is ever loaded, custom domains are refused
before any session exists, and import refuses wrong signatures, wrong scales and NaN, copying nothing.
Issue 12: an endless Loop is refused within seconds (the allowlist, and behind it the time limit of
the test run), absurd outputs are refused, a file without a card is named, and the CLI gets all of it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_fixtures import (
    _finish,
    constant_output,
    custom_graph,
    endless_loop_sr3,
    local_sr3,
    make_card,
    oracle_sr3,
    save,
    slow_sr3,
    without_card,
)
from PIL import Image

from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.model_files import safety as model_safety
from sr3_desktop.core.model_files.card import ModelCard, read_card
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.model_files.folders import bundled_models_dir, user_models_dir
from sr3_desktop.core.model_files.probe import (
    FROZEN_PROBE_FLAG,
    TERMINATE_GRACE_S,
    child_command,
    output_bound,
    probe,
    probe_gamma,
    probe_in_child,
    probe_in_thread,
    probe_inputs,
    probe_once,
)
from sr3_desktop.core.model_files.registry import import_model, resolve_model, validate_model
from sr3_desktop.core.model_files.safety import check_onnx_file

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


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Records the command of every child process started (the import's test run is one), then starts it."""
    launched: list[list[str]] = []

    class Recording(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            launched.append([str(a) for a in args])
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return launched


def test_a_normal_import_opens_only_the_model(registry: Path, tmp_path: Path, sessions: list[str],
                                              children: list[list[str]]) -> None:
    """The spies work: a denoiser opens exactly one session here; an import opens none here and runs its
    test in exactly one child process; no library is registered."""
    path = save(local_sr3(name="good"), tmp_path / "good.onnx")
    OnnxDenoiser(path, "cpu")
    assert sessions == ["good.onnx"]
    entry = import_model(path)
    assert sessions == ["good.onnx"]
    assert [c[1:] for c in children] == [["-m", "sr3_desktop.core.model_files.probe", str(path.resolve())]]
    assert entry.path.parent == user_models_dir()


def custom_domain_model() -> onnx.ModelProto:
    model = oracle_sr3(name="custom-op")
    model.graph.node.append(helper.make_node("Steal", ["prediction"], ["loot"], domain="com.evil.ops"))
    model.opset_import.append(helper.make_opsetid("com.evil.ops", 1))
    return model


def test_custom_domain_is_refused_before_any_session(registry: Path, tmp_path: Path, sessions: list[str],
                                                     children: list[list[str]]) -> None:
    path = tmp_path / "custom.onnx"
    onnx.save(custom_domain_model(), str(path))
    with pytest.raises(ModelError, match=r"com\.evil\.ops"):
        OnnxDenoiser(path, "cpu")
    with pytest.raises(ModelError, match=r"com\.evil\.ops"):
        import_model(path)
    assert sessions == [] and children == []  # neither a session (here or in a child) nor a library
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
        (sr3_half_size, r"half-size \(candidate\.onnx\) returned an output of shape \[1, 3, 8, 8\] for an input of "
                        r"shape \[1, 3, 16, 16\]"),
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


# --- issue 12: models that never end, absurd outputs, no card --------------------------------------
@pytest.fixture(scope="module")
def copied_card() -> ModelCard:
    """The card of the bundled SR3 model, as a hostile file would copy it."""
    cards = [read_card(path) for path in sorted(bundled_models_dir().glob("*.onnx"))]
    return next(card for card in cards if card.kind == "sr3")


@pytest.fixture
def loop_file(tmp_path: Path, copied_card: ModelCard) -> Path:
    return save(endless_loop_sr3(copied_card), tmp_path / "loop.onnx")


@pytest.fixture
def loop_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bypass the allowlist for Loop in this process: only the time limit is left to stop it."""
    monkeypatch.setattr(model_safety, "ALLOWED_OPERATORS", model_safety.ALLOWED_OPERATORS | {"Loop"})


LOOP_REFUSED = r"loop\.onnx is refused: it uses the operator Loop \(1 node\)"


def test_an_endless_loop_is_refused_by_the_allowlist_within_seconds(
        registry: Path, loop_file: Path, sessions: list[str], children: list[list[str]]) -> None:
    start = time.perf_counter()
    for attempt in (import_model, validate_model, resolve_model, lambda path: OnnxDenoiser(path, "cpu")):
        with pytest.raises(ModelError, match=LOOP_REFUSED):
            attempt(loop_file)
    assert time.perf_counter() - start < 5.0
    assert sessions == [] and children == []  # refused from the file, never run
    refused(loop_file, LOOP_REFUSED, registry)


def test_the_time_limit_stops_an_endless_loop_in_the_child(loop_file: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The allowlist is bypassed inside the child (a sitecustomize adds Loop): the kill at 3 s refuses it."""
    bypass = tmp_path / "bypass"
    bypass.mkdir()
    (bypass / "sitecustomize.py").write_text("import sr3_desktop.core.model_files.safety as s\n"
                                             "s.ALLOWED_OPERATORS = s.ALLOWED_OPERATORS | {'Loop'}\n")
    monkeypatch.setenv("PYTHONPATH", str(bypass))
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"loop\.onnx was refused: its test run did not finish within 3 s"):
        probe_in_child(loop_file, timeout_s=3)
    assert 3.0 <= time.perf_counter() - start < 8.0


def test_the_time_limit_stops_an_endless_loop_in_a_thread(loop_file: Path, loop_allowed: None) -> None:
    """The frozen app's watchdog: terminate stops the Loop, and no thread is left running."""
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"loop\.onnx was refused: its test run did not finish within 2 s"):
        probe_in_thread(loop_file, timeout_s=2)
    assert 2.0 <= time.perf_counter() - start < 2.0 + TERMINATE_GRACE_S
    assert [t for t in threading.enumerate() if t.name == "sr3-model-probe"] == []


def test_a_frozen_app_tests_in_a_child_started_by_its_own_flag(loop_file: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """PyInstaller's sys.executable is the app: the child is `APP --sr3-model-probe FILE` (scripts/app_entry.py)."""
    assert child_command(loop_file)[1:3] == ["-m", "sr3_desktop.core.model_files.probe"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert child_command(loop_file) == [sys.executable, FROZEN_PROBE_FLAG, str(loop_file.resolve())]


def test_without_an_executable_the_test_runs_in_a_watched_thread(loop_file: Path, loop_allowed: None,
                                                                children: list[list[str]],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "")
    with pytest.raises(ModelError, match=r"did not finish within 2 s"):
        probe(loop_file, timeout_s=2)
    assert children == []


def test_the_time_limit_stops_a_slow_model_of_allowed_operators(tmp_path: Path, copied_card: ModelCard) -> None:
    """Defence in depth: 64 big MatMuls pass the allowlist; the time limit still refuses them in time."""
    path = save(slow_sr3(copied_card), tmp_path / "slow.onnx")
    check_onnx_file(path)  # it slips past the allowlist
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"slow\.onnx was refused: its test run did not finish within 2 s"):
        probe(path, timeout_s=2)
    assert time.perf_counter() - start < 6.0


SR3_CARDS = [make_card("sr3", prediction=p, target=t) for p in ("epsilon", "x0", "v") for t in ("hr", "residual")]
"""Every prediction and target an SR3 card allows."""


def range_cards(copied: ModelCard) -> list[ModelCard]:
    """The copied card, every SR3 variant and both regression targets."""
    return [copied, *SR3_CARDS, make_card("regression", target="hr"), make_card("regression", target="residual")]


def card_id(card: ModelCard) -> str:
    return f"{card.kind}-{card.prediction}-{card.target}"


def test_absurd_outputs_are_refused_naming_the_file(registry: Path, tmp_path: Path, copied_card: ModelCard) -> None:
    """Imports (a child each) of the copied SR3 card and a regression card; every other card in-process."""
    message = r"absurd\.onnx produced absurd values on a test image: its .* reaches 1e\+30"
    for card in (copied_card, make_card("regression")):
        refused(save(constant_output(card, 1e30), tmp_path / "absurd.onnx"), message, registry)
    for card in range_cards(copied_card):
        with pytest.raises(ModelError, match=message):
            probe_once(save(constant_output(card, 1e30), tmp_path / "absurd.onnx"))


def test_the_range_check_holds_at_its_bound(tmp_path: Path, copied_card: ModelCard) -> None:
    for card in range_cards(copied_card):
        _, y_t, _ = probe_inputs(card)
        bound = output_bound(card, y_t, probe_gamma(card))
        probe_once(save(constant_output(card, -0.99 * bound), tmp_path / f"inside-{card_id(card)}.onnx"))
        with pytest.raises(ModelError, match=r"outside\.onnx produced absurd values"):
            probe_once(save(constant_output(card, 1.01 * bound), tmp_path / "outside.onnx"))
    # x0 and regression outputs are the clean target itself: [-1, 1] (twice that for a residual), times 2
    assert [output_bound(make_card("regression", target=t), y_t, 0.0) for t in ("hr", "residual")] == [2.0, 4.0]


@pytest.mark.parametrize("card", SR3_CARDS, ids=card_id)
def test_models_true_to_their_card_pass_the_range_check(tmp_path: Path, card: ModelCard) -> None:
    """The oracle returns the exact eps / x0 / v for a clean image within [-1, 1]."""
    probe_once(save(oracle_sr3(card), tmp_path / "oracle.onnx"))


def test_both_bundled_models_pass_the_time_limited_validation() -> None:
    paths = sorted(bundled_models_dir().glob("*.onnx"))
    assert sorted(validate_model(path).kind for path in paths) == ["regression", "sr3"]


def test_a_plain_onnx_file_without_a_card_is_refused_naming_it(registry: Path, tmp_path: Path) -> None:
    path = save(without_card(local_sr3(name="plain")), tmp_path / "plain.onnx")
    message = r"plain\.onnx has no 'sr3\.model_card' metadata"
    for attempt in (read_card, resolve_model, validate_model, lambda p: OnnxDenoiser(p, "cpu")):
        with pytest.raises(ModelError, match=message):
            attempt(path)
    refused(path, message, registry)


@pytest.mark.parametrize(("build", "message"), [
    (endless_loop_sr3, r"hostile\.onnx is refused: it uses the operator Loop \(1 node\)"),
    (lambda card: constant_output(card, 1e30), r"hostile\.onnx produced absurd values on a test image"),
], ids=["endless-loop", "1e30"])
def test_the_cli_refuses_a_hostile_model_quickly(registry: Path, tmp_path: Path, copied_card: ModelCard,
                                                 build: Any, message: str) -> None:
    model, image, out = save(build(copied_card), tmp_path / "hostile.onnx"), tmp_path / "x.png", tmp_path / "out.png"
    Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8)).save(image)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "sr3_desktop", "upscale", str(image), "-o", str(out),
                             "--model", str(model)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert time.perf_counter() - start < 30.0
    assert result.returncode == 1 and re.search(message, result.stderr), result.stderr
    assert not out.exists()
