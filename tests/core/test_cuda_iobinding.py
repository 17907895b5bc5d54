"""IO binding: OnnxDenoiser binds inputs and output in the provider's memory; results must match a
plain CPU run, and nothing of one run may be seen by the next.

Each test runs on the CPU provider (onnxruntime's IO binding works there, so CI runs them all) and on
CUDA, where these carry the ``cuda`` marker and run wherever onnxruntime can start a CUDA session;
elsewhere the CUDA half skips with the reason (a CPU-only onnxruntime: at collection; onnxruntime-gpu
without a GPU or without the CUDA libraries: when the first session falls back to the CPU). Models are
the torch-free ONNX fixtures, so they also cover float16 graph IO, the way an fp16 export is fed.
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx_fixtures import local_sr3, oracle_sr3, regression, save

from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.model_files import denoiser as denoiser_module
from sr3_desktop.core.model_files.denoiser import PROVIDERS, OnnxDenoiser
from sr3_desktop.core.upscale.pipeline import run
from sr3_desktop.core.upscale.refine_types import RefineOptions

CUDA = pytest.param("cuda", marks=[
    pytest.mark.cuda,  # `pytest -m cuda` runs only these; `-m "not cuda"` leaves them out
    pytest.mark.skipif(PROVIDERS["cuda"] not in ort.get_available_providers(),
                       reason="this onnxruntime has no CUDA provider (CPU-only build)"),
])
LR = np.random.default_rng(7).uniform(0, 1, (20, 28, 3)).astype(np.float32)
ATOL = {"cpu": 1e-6, "cuda": 2e-3}
"""Bound vs plain runs. On the CPU the same kernels run either way (float32 rounding only). On CUDA,
onnxruntime's convolutions may run in TF32 (10-bit mantissa) on Ampere and later. A binding mistake
(a stale or swapped buffer) shows up as errors of order 0.1 to 1."""


@pytest.fixture(params=["cpu", CUDA])
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cuda-models")
    return {
        "local": save(local_sr3(layers=2, seed=1), folder / "local.onnx"),
        "local_fp16": save(local_sr3(layers=2, seed=1, fp16=True), folder / "local-fp16.onnx"),
        "oracle": save(oracle_sr3(prediction="v", target="residual"), folder / "oracle.onnx"),
        "regression": save(regression(), folder / "regression.onnx"),
    }


def bound(path: Path, device: str) -> OnnxDenoiser:
    """A session on ``device`` that runs through IO binding (skips where CUDA cannot start)."""
    model = OnnxDenoiser(path, device, io_binding=True)
    if model.providers[0] != PROVIDERS[device]:
        pytest.skip(f"no usable CUDA here: {model.fallback_note or model.providers}")
    assert model.uses_io_binding
    return model


def plain_cpu(path: Path) -> OnnxDenoiser:
    """The reference: a CPU session with plain ``session.run`` calls."""
    model = OnnxDenoiser(path, "cpu")
    assert not model.uses_io_binding  # binding is CUDA's default only: the CPU gains nothing from it
    return model


def inputs(batch: int, height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lr_up = rng.uniform(-1, 1, (batch, 3, height, width)).astype(np.float32)
    y_t = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
    return lr_up, y_t, rng.uniform(0.05, 0.95, batch).astype(np.float32)


@pytest.mark.parametrize("device", [CUDA])
def test_the_cuda_session_binds_on_the_device_by_default(paths: dict[str, Path], device: str) -> None:
    model = OnnxDenoiser(paths["local"], device)
    if model.providers[0] != PROVIDERS["cuda"]:
        pytest.skip(f"no usable CUDA here: {model.fallback_note or model.providers}")
    assert model.uses_io_binding
    assert model.on_accelerator and model.fallback_note is None
    assert model.budget_pixels == denoiser_module.GPU_BUDGET_PIXELS


def test_binding_is_refused_clearly_where_no_device_name_is_known(paths: dict[str, Path]) -> None:
    """Mutation caught: a provider missing from IO_BINDING_DEVICES silently running unbound (or failing
    later, in the middle of a run, with onnxruntime's message)."""
    assert denoiser_module._binding_device(PROVIDERS["directml"], None) is None
    with pytest.raises(ModelError, match="not supported on DmlExecutionProvider"):
        denoiser_module._binding_device(PROVIDERS["directml"], True)
    assert denoiser_module._binding_device(PROVIDERS["cpu"], True) == "cpu"


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 16, 16), (3, 24, 40), (2, 8, 72)])
def test_bound_runs_match_the_cpu(paths: dict[str, Path], device: str, batch: int, height: int,
                                  width: int) -> None:
    """Mutation caught: ``_run_io_binding`` binding on a hard-coded "cuda" (the CPU half fails to bind)."""
    on_device, cpu = bound(paths["local"], device), plain_cpu(paths["local"])
    feeds = inputs(batch, height, width, seed=batch)
    out = on_device.predict(*feeds)
    assert out.dtype == np.float32 and out.shape == (batch, 3, height, width)
    np.testing.assert_allclose(out, cpu.predict(*feeds), atol=ATOL[device])


def test_repeated_runs_never_see_a_previous_runs_buffers(paths: dict[str, Path], device: str) -> None:
    """Each call binds fresh inputs and a fresh output: a, b, a must give A, B, A, each equal to a plain
    CPU run, and a returned array is the caller's own. Mutations caught: one binding (or one output
    OrtValue) kept across calls with its inputs bound only once (b comes back as A); the output buffer
    returned without a copy and reused by the next run (a turns into B, or zeroing a zeroes the next)."""
    model, cpu = bound(paths["local"], device), plain_cpu(paths["local"])
    first, second = inputs(2, 16, 24, seed=1), inputs(2, 16, 24, seed=2)
    expected_a, expected_b = cpu.predict(*first), cpu.predict(*second)
    assert np.abs(expected_a - expected_b).max() > 0.1  # the two runs really differ
    a = model.predict(*first)
    b = model.predict(*second)
    again = model.predict(*first)
    for got, want in ((a, expected_a), (b, expected_b), (again, expected_a)):
        np.testing.assert_allclose(got, want, atol=ATOL[device])
    a[...] = 0.0  # the returned array is the caller's own: writing to it changes no later result
    np.testing.assert_allclose(model.predict(*first), expected_a, atol=ATOL[device])
    np.testing.assert_allclose(again, expected_a, atol=ATOL[device])


def test_float16_graph_io_is_cast_and_bound(paths: dict[str, Path], device: str) -> None:
    """An fp16-IO model: float32 arrays go in, are cast for the device, and come back as float32."""
    model = bound(paths["local_fp16"], device)
    assert set(model.input_dtypes.values()) == {np.dtype(np.float16), np.dtype(np.float32)}
    feeds = inputs(2, 16, 16, seed=3)
    out = model.predict(*feeds)
    assert out.dtype == np.float32
    reference = plain_cpu(paths["local"]).predict(*feeds)
    np.testing.assert_allclose(out, reference, atol=2e-2)  # float16 rounding of inputs and output


def test_regression_models_bind_too(paths: dict[str, Path], device: str) -> None:
    model, cpu = bound(paths["regression"], device), plain_cpu(paths["regression"])
    lr_up = inputs(2, 24, 16, seed=4)[0]
    np.testing.assert_allclose(model.predict_image(lr_up), cpu.predict_image(lr_up), atol=ATOL[device])


@pytest.mark.parametrize("tile", [None, 48])
def test_the_whole_bound_pipeline_matches_the_plain_cpu(paths: dict[str, Path], device: str,
                                                         tile: int | None) -> None:
    """Several steps, tiles batched into one bound run, blending and the sampler around it."""
    model, cpu = bound(paths["oracle"], device), plain_cpu(paths["oracle"])
    options = RefineOptions(method="sr3", preset="fast", seed=3, tile=tile)
    on_device, on_cpu = run(LR, options, model), run(LR, options, cpu)
    assert on_device.steps == on_cpu.steps == model.card.preset("fast").steps
    np.testing.assert_allclose(on_device.image, on_cpu.image, atol=ATOL[device])
