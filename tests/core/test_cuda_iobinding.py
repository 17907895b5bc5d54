"""CUDA with IO binding: OnnxDenoiser binds inputs and output on the GPU; results must match the CPU.

These carry the ``cuda`` marker and run wherever onnxruntime can start a CUDA session; elsewhere they
skip with the reason (a CPU-only onnxruntime: at collection; onnxruntime-gpu without a GPU or without
the CUDA libraries: when the first session falls back to the CPU). Models are the torch-free ONNX
fixtures, so they also cover float16 graph IO, the way an fp16 export for GPUs is fed.
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx_fixtures import local_sr3, oracle_sr3, regression, save

from sr3_desktop.core.model_files import denoiser as denoiser_module
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.pipeline import run
from sr3_desktop.core.upscale.refine_types import RefineOptions

DEVICE, PROVIDER = "cuda", "CUDAExecutionProvider"
pytestmark = [
    pytest.mark.cuda,  # `pytest -m cuda` runs only these; `-m "not cuda"` leaves them out
    pytest.mark.skipif(PROVIDER not in ort.get_available_providers(),
                       reason="this onnxruntime has no CUDA provider (CPU-only build)"),
]
LR = np.random.default_rng(7).uniform(0, 1, (20, 28, 3)).astype(np.float32)
ATOL = 2e-3
"""GPU vs CPU in float32: onnxruntime's CUDA convolutions may run in TF32 (10-bit mantissa) on Ampere and
later. A binding mistake (a stale or swapped buffer) shows up as errors of order 0.1 to 1."""


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cuda-models")
    return {
        "local": save(local_sr3(layers=2, seed=1), folder / "local.onnx"),
        "local_fp16": save(local_sr3(layers=2, seed=1, fp16=True), folder / "local-fp16.onnx"),
        "oracle": save(oracle_sr3(prediction="v", target="residual"), folder / "oracle.onnx"),
        "regression": save(regression(), folder / "regression.onnx"),
    }


def on_device(path: Path) -> OnnxDenoiser:
    model = OnnxDenoiser(path, DEVICE)
    if model.providers[0] != PROVIDER:
        pytest.skip(f"no usable CUDA here: {model.fallback_note or model.providers}")
    return model


def inputs(batch: int, height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lr_up = rng.uniform(-1, 1, (batch, 3, height, width)).astype(np.float32)
    y_t = rng.standard_normal((batch, 3, height, width)).astype(np.float32)
    return lr_up, y_t, rng.uniform(0.05, 0.95, batch).astype(np.float32)


def test_the_cuda_session_binds_on_the_device(paths: dict[str, Path]) -> None:
    model = on_device(paths["local"])
    assert model.uses_io_binding is (PROVIDER == "CUDAExecutionProvider")
    assert model.on_accelerator and model.fallback_note is None
    assert model.budget_pixels == denoiser_module.GPU_BUDGET_PIXELS


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 16, 16), (3, 24, 40), (2, 8, 72)])
def test_bound_runs_match_the_cpu(paths: dict[str, Path], batch: int, height: int, width: int) -> None:
    gpu, cpu = on_device(paths["local"]), OnnxDenoiser(paths["local"], "cpu")
    feeds = inputs(batch, height, width, seed=batch)
    out = gpu.predict(*feeds)
    assert out.dtype == np.float32 and out.shape == (batch, 3, height, width)
    np.testing.assert_allclose(out, cpu.predict(*feeds), atol=ATOL)


def test_repeated_runs_never_see_a_previous_runs_buffers(paths: dict[str, Path]) -> None:
    """Each call binds fresh inputs and a fresh output: a, b, a must give A, B, A."""
    gpu = on_device(paths["local"])
    first, second = inputs(2, 16, 24, seed=1), inputs(2, 16, 24, seed=2)
    a = gpu.predict(*first)
    b = gpu.predict(*second)
    again = gpu.predict(*first)
    np.testing.assert_allclose(a, again, atol=1e-5)
    assert np.abs(a - b).max() > 0.1
    a[...] = 0.0  # the returned array is the caller's own: writing to it changes no later result
    np.testing.assert_allclose(gpu.predict(*first), again, atol=1e-5)


def test_float16_graph_io_is_cast_and_bound(paths: dict[str, Path]) -> None:
    """An fp16-IO model: float32 arrays go in, are cast for the device, and come back as float32."""
    gpu = on_device(paths["local_fp16"])
    assert set(gpu.input_dtypes.values()) == {np.dtype(np.float16), np.dtype(np.float32)}
    feeds = inputs(2, 16, 16, seed=3)
    out = gpu.predict(*feeds)
    assert out.dtype == np.float32
    reference = OnnxDenoiser(paths["local"], "cpu").predict(*feeds)
    np.testing.assert_allclose(out, reference, atol=2e-2)  # float16 rounding of inputs and output


def test_regression_models_bind_too(paths: dict[str, Path]) -> None:
    gpu, cpu = on_device(paths["regression"]), OnnxDenoiser(paths["regression"], "cpu")
    lr_up = inputs(2, 24, 16, seed=4)[0]
    np.testing.assert_allclose(gpu.predict_image(lr_up), cpu.predict_image(lr_up), atol=ATOL)


@pytest.mark.parametrize("tile", [None, 48])
def test_the_whole_pipeline_on_cuda_matches_the_cpu(paths: dict[str, Path], tile: int | None) -> None:
    """Several steps, tiles batched into one bound run, blending and the sampler around it."""
    gpu, cpu = on_device(paths["oracle"]), OnnxDenoiser(paths["oracle"], "cpu")
    options = RefineOptions(method="sr3", preset="fast", seed=3, tile=tile)
    on_gpu, on_cpu = run(LR, options, gpu), run(LR, options, cpu)
    assert on_gpu.steps == on_cpu.steps == gpu.card.preset("fast").steps
    np.testing.assert_allclose(on_gpu.image, on_cpu.image, atol=ATOL)
