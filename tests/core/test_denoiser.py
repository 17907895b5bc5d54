"""OnnxDenoiser: the session's real inputs and outputs against the card, providers, caching."""

import os
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_fixtures import custom_graph, local_sr3, make_card, oracle_sr3, regression, save, sharpen_numpy

from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.model_files import denoiser as denoiser_module
from sr3_desktop.core.model_files.card import CARD_METADATA_KEY, SCHEMA_VERSION, ModelCardError
from sr3_desktop.core.model_files.denoiser import (
    OnnxDenoiser,
    clear_cache,
    default_threads,
    fallback_note_for,
    get_denoiser,
    get_denoisers,
    plan_providers,
)

IMAGE = ["N", 3, "H", "W"]
F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
SR3_IO = [("lr_up", F32, IMAGE), ("y_t", F32, IMAGE), ("noise_level", F32, ["N"])]


@pytest.fixture
def oracle_path(tmp_path: Path) -> Path:
    return save(oracle_sr3(), tmp_path / "oracle.onnx")


def test_reads_the_card_and_runs(oracle_path: Path) -> None:
    model = OnnxDenoiser(oracle_path, "cpu")
    assert model.card.kind == "sr3" and model.card.scale == 4
    assert model.providers == ["CPUExecutionProvider"] and model.requested_device == "cpu"
    assert model.fallback_note is None and not model.uses_io_binding
    rng = np.random.default_rng(0)
    lr_up = rng.uniform(-1, 1, (2, 3, 8, 16)).astype(np.float32)
    y_t = rng.standard_normal((2, 3, 8, 16)).astype(np.float32)
    out = model.predict(lr_up, y_t, np.array([0.6, 0.6], dtype=np.float32))
    assert out.shape == y_t.shape and out.dtype == np.float32
    target = np.stack([sharpen_numpy(x) for x in lr_up])
    np.testing.assert_allclose(out, (y_t - 0.6 * target) / 0.8, atol=1e-5)
    with pytest.raises(ModelError, match="not a regression model"):
        model.predict_image(lr_up)


def test_regression_model(tmp_path: Path) -> None:
    model = OnnxDenoiser(save(regression(), tmp_path / "reg.onnx"), "cpu")
    lr_up = np.random.default_rng(1).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(model.predict_image(lr_up)[0], sharpen_numpy(lr_up[0]), atol=1e-6)
    with pytest.raises(ModelError, match="not an SR3 denoiser"):
        model.predict(lr_up, lr_up, np.ones(1, dtype=np.float32))


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        ([("low_res", F32, IMAGE), ("y_t", F32, IMAGE), ("noise_level", F32, ["N"])],
         [("prediction", F32, IMAGE)], "missing \\['lr_up'\\]; unexpected \\['low_res'\\]"),
        ([("lr_up", F32, IMAGE), ("y_t", F32, ["N", 3, "H"]), ("noise_level", F32, ["N"])],
         [("prediction", F32, IMAGE)], "'y_t' has rank 3, expected 4"),
        ([("lr_up", F32, IMAGE), ("y_t", F32, IMAGE), ("noise_level", F32, ["N", 1])],
         [("prediction", F32, IMAGE)], "'noise_level' has rank 2, expected 1"),
        ([("lr_up", F32, IMAGE), ("y_t", TensorProto.INT32, IMAGE), ("noise_level", F32, ["N"])],
         [("prediction", F32, IMAGE)], "'y_t' is tensor\\(int32\\)"),
        ([("lr_up", F32, ["N", 1, "H", "W"]), ("y_t", F32, IMAGE), ("noise_level", F32, ["N"])],
         [("prediction", F32, IMAGE)], "'lr_up' has 1 channels"),
        (SR3_IO, [("eps", F32, IMAGE)], "outputs \\['eps'\\] do not match"),
        (SR3_IO, [("prediction", F32, ["N", 3])], "output 'prediction' has rank \\d, expected 4"),
    ],
)
def test_graph_signature_mismatches_are_reported_by_name(
    tmp_path: Path, inputs: list, outputs: list, message: str
) -> None:
    path = save(custom_graph(inputs, outputs, make_card("sr3")), tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match=message):
        OnnxDenoiser(path, "cpu")


def test_missing_or_bad_cards(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match=CARD_METADATA_KEY):
        OnnxDenoiser(save(custom_graph(SR3_IO, [("prediction", F32, IMAGE)], None), tmp_path / "nocard.onnx"))
    model = oracle_sr3()
    for prop in model.metadata_props:
        if prop.key == CARD_METADATA_KEY:
            prop.value = prop.value.replace(f'"schema_version": {SCHEMA_VERSION}', '"schema_version": 99')
    with pytest.raises(ModelCardError, match="schema_version 99"):
        OnnxDenoiser(save(model, tmp_path / "future.onnx"))


def test_unreadable_and_unsafe_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        OnnxDenoiser(tmp_path / "nope.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(ModelError):
        OnnxDenoiser(garbage)
    custom = oracle_sr3()
    custom.graph.node.append(helper.make_node("Evil", ["prediction"], ["x"], domain="com.example.ops"))
    custom.opset_import.append(helper.make_opsetid("com.example.ops", 1))
    path = tmp_path / "custom.onnx"
    onnx.save(custom, str(path))
    with pytest.raises(ModelError, match=r"com\.example\.ops"):
        OnnxDenoiser(path)


def test_fp16_inputs_are_cast(tmp_path: Path) -> None:
    half = OnnxDenoiser(save(oracle_sr3(fp16=True, prediction="x0"), tmp_path / "half.onnx"), "cpu")
    full = OnnxDenoiser(save(oracle_sr3(prediction="x0"), tmp_path / "full.onnx"), "cpu")
    assert half.input_dtypes == {"lr_up": np.float16, "y_t": np.float16, "noise_level": np.float32}
    rng = np.random.default_rng(2)
    lr_up, y_t = (rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32) for _ in range(2))
    level = np.array([0.5], dtype=np.float32)
    out = half.predict(lr_up, y_t, level)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, full.predict(lr_up, y_t, level), atol=5e-3)


def test_a_failing_run_becomes_a_model_error(oracle_path: Path) -> None:
    model = OnnxDenoiser(oracle_path, "cpu")
    lr_up = np.zeros((1, 3, 8, 8), dtype=np.float32)
    with pytest.raises(ModelError, match="failed to run"):
        model.predict(lr_up, np.zeros((1, 3, 8, 16), dtype=np.float32), np.ones(1, dtype=np.float32))


def test_provider_plans() -> None:
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert plan_providers("auto", available, nvidia_present=True) == (
        ["CUDAExecutionProvider", "CPUExecutionProvider"], None)
    # no NVIDIA driver: auto goes straight to the CPU, with nothing to warn about
    assert plan_providers("auto", available, nvidia_present=False) == (["CPUExecutionProvider"], None)
    # an explicit request still tries CUDA, so a missing library is reported
    assert plan_providers("cuda", available, nvidia_present=False)[0][0] == "CUDAExecutionProvider"
    assert plan_providers("auto", ["DmlExecutionProvider", "CPUExecutionProvider"])[0][0] == "DmlExecutionProvider"
    assert plan_providers("cpu", available) == (["CPUExecutionProvider"], None)
    providers, note = plan_providers("directml", available)
    assert providers == ["CPUExecutionProvider"] and note is not None and "DirectML" in note
    with pytest.raises(SR3Error, match="unknown device"):
        plan_providers("tpu", available)
    note = fallback_note_for(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"])
    assert note is not None and "CUDA" in note and "CPU" in note
    assert fallback_note_for(["CUDAExecutionProvider", "CPUExecutionProvider"],
                             ["CUDAExecutionProvider", "CPUExecutionProvider"]) is None
    assert fallback_note_for(["CPUExecutionProvider"], ["CPUExecutionProvider"]) is None


def test_a_silent_cuda_fallback_is_reported(oracle_path: Path) -> None:
    """On a machine without working CUDA the session lands on CPU, and the note says so."""
    model = OnnxDenoiser(oracle_path, "cuda")
    assert model.providers[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" in model.providers:
        assert model.fallback_note is None and model.uses_io_binding
    else:
        assert model.fallback_note is not None and "CUDA" in model.fallback_note


def test_cuda_io_binding_matches_cpu(oracle_path: Path) -> None:
    gpu = OnnxDenoiser(oracle_path, "cuda")
    if "CUDAExecutionProvider" not in gpu.providers:
        pytest.skip("CUDA is not usable on this machine")
    cpu = OnnxDenoiser(oracle_path, "cpu")
    rng = np.random.default_rng(3)
    lr_up, y_t = (rng.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32) for _ in range(2))
    level = np.array([0.3, 0.3], dtype=np.float32)
    assert gpu.uses_io_binding
    np.testing.assert_allclose(gpu.predict(lr_up, y_t, level), cpu.predict(lr_up, y_t, level), atol=1e-4)


def test_sessions_are_cached_per_path_mtime_and_device(oracle_path: Path) -> None:
    clear_cache()
    first = get_denoiser(oracle_path, "cpu")
    assert get_denoiser(str(oracle_path), "cpu") is first
    assert get_denoiser(oracle_path, "auto") is not first
    save(local_sr3(), oracle_path)
    stat = oracle_path.stat()
    os.utime(oracle_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert get_denoiser(oracle_path, "cpu") is not first
    clear_cache()
    with pytest.raises(ModelError):
        get_denoiser(oracle_path.with_name("missing.onnx"))


def test_two_sessions_are_built_side_by_side_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """get_denoisers builds the missing sessions in threads at once, returns them in the paths' order and
    caches them as get_denoiser does (mutations: a lock held while building, or building one after the
    other, leave the barrier unmet; a swapped order gives the regression model first)."""
    clear_cache()
    sr3_path, regression_path = save(oracle_sr3(), tmp_path / "a.onnx"), save(regression(), tmp_path / "b.onnx")
    both_building = threading.Barrier(2, timeout=20)
    real_create = denoiser_module.create_session

    def create_when_both_build(path: Path, providers: list[str]) -> object:
        both_building.wait()  # raises BrokenBarrierError unless the two builds overlap
        return real_create(path, providers)

    monkeypatch.setattr(denoiser_module, "create_session", create_when_both_build)
    sr3, reg = get_denoisers([sr3_path, regression_path], "cpu")
    assert (sr3.kind, reg.kind) == ("sr3", "regression")
    monkeypatch.setattr(denoiser_module, "create_session", real_create)
    assert get_denoiser(sr3_path, "cpu") is sr3 and get_denoisers([regression_path, sr3_path], "cpu") == [reg, sr3]


def test_one_session_per_model_when_threads_build_it_at_once(oracle_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Four threads that all build one model's session at once all get the build that reached the cache first
    (mutation: storing each thread's own build hands out four different sessions)."""
    clear_cache()
    all_building = threading.Barrier(4, timeout=20)
    real_create = denoiser_module.create_session

    def create_when_all_build(path: Path, providers: list[str]) -> object:
        all_building.wait()
        return real_create(path, providers)

    monkeypatch.setattr(denoiser_module, "create_session", create_when_all_build)
    got: list[OnnxDenoiser] = []
    threads = [threading.Thread(target=lambda: got.append(get_denoiser(oracle_path, "cpu"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 and all(d is got[0] for d in got) and get_denoiser(oracle_path, "cpu") is got[0]


def test_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR3_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("SR3_THREADS", "many")
    with pytest.raises(SR3Error, match="SR3_THREADS"):
        default_threads()
    monkeypatch.delenv("SR3_THREADS")
    assert default_threads() >= 1
    assert denoiser_module.CPU_BUDGET_PIXELS > 0


def test_session_options_sleep_idle_workers_and_skip_the_memory_pattern_on_cpu() -> None:
    cpu = denoiser_module._session_options(["CPUExecutionProvider"])
    assert cpu.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert not cpu.enable_mem_pattern and cpu.enable_cpu_mem_arena
    assert cpu.intra_op_num_threads == default_threads()
    assert cpu.graph_optimization_level == denoiser_module.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert not denoiser_module._session_options(["DmlExecutionProvider", "CPUExecutionProvider"]).enable_mem_pattern
    assert denoiser_module._session_options(["CUDAExecutionProvider", "CPUExecutionProvider"]).enable_mem_pattern
