"""Issue 11: images of any size at bounded memory. Outputs over ``canvas.IN_MEMORY_PIXELS`` are built on disk
band by band and tile by tile; here the threshold is lowered (``on_disk``) so small images take that path,
and every result is checked against the in-memory path, which is the pipeline as it always was."""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from onnx_fixtures import local_sr3, oracle_sr3, regression, save
from PIL import Image

from sr3_desktop.core.imageio import LoadedImage, check_output_size, load_image, resample, save_image
from sr3_desktop.core.metrics import consistency
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale import flow
from sr3_desktop.core.upscale import output_canvas as canvas
from sr3_desktop.core.upscale.bands import array_reader, resize_region
from sr3_desktop.core.upscale.output_canvas import OutputCanvas
from sr3_desktop.core.upscale.output_size import OutputSize, consistency_of, resize_result
from sr3_desktop.core.upscale.pipeline import refine, run
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.run_models import Models

LR = np.random.default_rng(11).uniform(0, 1, (37, 29, 3)).astype(np.float32)  # 148 x 116 out
QUANTUM = 1 / 65535  # an image on disk is stored with 16 bits per sample


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, OnnxDenoiser]:
    folder = tmp_path_factory.mktemp("large")
    return {
        "oracle": OnnxDenoiser(save(oracle_sr3(prediction="v", target="residual"), folder / "oracle.onnx"), "cpu"),
        "local": OnnxDenoiser(save(local_sr3(layers=2, seed=1), folder / "local.onnx"), "cpu"),
        "regression": OnnxDenoiser(save(regression(), folder / "reg.onnx"), "cpu"),
        "residual": OnnxDenoiser(save(regression(target="residual"), folder / "reg-res.onnx"), "cpu"),
    }


@pytest.fixture
def on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything over 500 pixels goes to disk, in bands of about 2000 pixels (16 rows of a 116 px image)."""
    monkeypatch.setattr(canvas, "IN_MEMORY_PIXELS", 500)
    monkeypatch.setattr(canvas, "BAND_PIXELS", 2000)


def in_memory(fn):  # type: ignore[no-untyped-def]
    """Run ``fn`` with the real threshold, whatever the test set."""
    saved = canvas.IN_MEMORY_PIXELS, canvas.BAND_PIXELS
    canvas.IN_MEMORY_PIXELS, canvas.BAND_PIXELS = 2048 * 2048, 1 << 20
    try:
        return fn()
    finally:
        canvas.IN_MEMORY_PIXELS, canvas.BAND_PIXELS = saved


def scratch_files() -> list[str]:
    """Open files of this process inside a scratch folder (deleted files show as '... (deleted)')."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if f"{os.sep}scratch{os.sep}" in target or ".sr3scratch-" in target:
            found.append(target)
    return found


# --- the same results on disk ------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "name", "tile"), [("bicubic", None, None), ("regression", "regression", 16),
                                                      ("regression", "residual", 40),
                                                      ("regression", "regression", None)])
def test_bicubic_and_regression_on_disk_equal_the_in_memory_result(models: dict[str, OnnxDenoiser], on_disk: None,
                                                                   method: str, name: str | None,
                                                                   tile: int | None) -> None:
    model = models[name] if name else None
    options = RefineOptions(method=method, tile=tile)  # type: ignore[arg-type]
    expected = in_memory(lambda: run(LR, options, None, model, scale=None if model else 4)).image
    result = run(LR, options, None, model, scale=None if model else 4)
    assert result.output.on_disk and result.output.dtype == np.uint16
    got = result.image
    assert got.shape == expected.shape == (148, 116, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=QUANTUM / 2 + 1e-7)  # only the 16-bit rounding


@pytest.mark.parametrize(("preset", "tile"), [("fast", 16), ("balanced", 40), ("balanced", None)])
def test_sr3_on_disk_steps_band_by_band_to_the_same_image(models: dict[str, OnnxDenoiser], on_disk: None,
                                                          preset: str, tile: int | None) -> None:
    """The oracle ends at sharpen(lr_up) whatever the noise, so the banded chain (noise drawn band by band,
    planes in scratch files, back-projection band by band) must end where the in-memory chain ends."""
    options = RefineOptions(preset=preset, tile=tile, seed=2)
    expected = in_memory(lambda: run(LR, options, models["oracle"], models["regression"])).image
    result = run(LR, options, models["oracle"], models["regression"])
    assert result.output.on_disk
    np.testing.assert_allclose(result.image, expected, rtol=0, atol=2e-4)


@pytest.mark.parametrize("preset", ["fast", "balanced", "quality"])
def test_the_chain_on_disk_in_one_band_is_the_chain_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              models: dict[str, OnnxDenoiser], preset: str) -> None:
    """Planes in scratch files but one band (so the same noise): a network that depends on every step (not an
    oracle), a residual target and each start (bicubic, regression, noise) give the in-memory image."""
    monkeypatch.setattr(canvas, "IN_MEMORY_PIXELS", 500)
    sr3 = OnnxDenoiser(save(local_sr3(prediction="v", target="residual", seed=3), tmp_path / "res.onnx"), "cpu")
    options = RefineOptions(preset=preset, tile=40, seed=8)
    expected = in_memory(lambda: run(LR, options, sr3, models["regression"])).image
    result = run(LR, options, sr3, models["regression"])
    assert result.output.on_disk
    np.testing.assert_allclose(result.image, expected, rtol=0, atol=1e-6)


def test_on_disk_the_same_seed_gives_the_same_bytes(models: dict[str, OnnxDenoiser], on_disk: None,
                                                    tmp_path: Path) -> None:
    written = []
    for k in range(2):
        result = run(LR, RefineOptions(preset="quality", tile=24, seed=5), models["local"])
        assert result.output.on_disk
        written.append(save_image(tmp_path / f"{k}.png", result.output).read_bytes())
    other = run(LR, RefineOptions(preset="quality", tile=24, seed=6), models["local"])
    assert written[0] == written[1]
    assert save_image(tmp_path / "other.png", other.output).read_bytes() != written[0]


def test_k_samples_on_disk_give_their_mean_and_std(models: dict[str, OnnxDenoiser], on_disk: None) -> None:
    options = RefineOptions(preset="quality", tile=24, seed=4)
    both = run(LR, RefineOptions(preset="quality", tile=24, seed=4, samples=2), models["local"])
    singles = np.stack([run(LR, RefineOptions(preset="quality", tile=24, seed=4 + k), models["local"]).image
                        for k in range(2)])  # each single is also on disk: float32 there, exact
    del options
    assert both.spread is not None and both.spread.on_disk and both.uncertainty is not None
    np.testing.assert_allclose(both.image, singles.mean(axis=0), rtol=0, atol=QUANTUM)
    np.testing.assert_allclose(both.uncertainty, singles.std(axis=0).mean(axis=2), rtol=0, atol=QUANTUM)


# --- scratch files are always freed --------------------------------------------------------------------
pytestmark_linux = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")


@pytestmark_linux
def test_scratch_files_exist_during_a_run_and_are_freed_after_it_and_on_cancel(models: dict[str, OnnxDenoiser],
                                                                               on_disk: None) -> None:
    assert scratch_files() == []
    steps = refine(LR, RefineOptions(preset="quality", tile=24), models["local"])
    first = next(steps)
    during = scratch_files()
    assert during and all("(deleted)" in f for f in during)  # already deleted: nothing to clean up after a crash
    steps.close()  # the consumer stops iterating (cancel)
    del steps, first
    gc.collect()
    assert scratch_files() == []
    stopped = list(refine(LR, RefineOptions(preset="quality", tile=24), models["local"], should_stop=lambda: True))
    assert stopped == []
    gc.collect()
    assert scratch_files() == []
    result = run(LR, RefineOptions(preset="quality", tile=24), models["local"])
    assert scratch_files()  # the result itself lives on disk
    del result
    gc.collect()
    assert scratch_files() == []


class Interrupting(OnnxDenoiser):
    """The real denoiser; its third run is interrupted as Ctrl+C would (KeyboardInterrupt)."""

    calls = 0

    def predict(self, lr_up: np.ndarray, y_t: np.ndarray, noise_level: np.ndarray) -> np.ndarray:
        Interrupting.calls += 1
        if Interrupting.calls == 3:
            raise KeyboardInterrupt
        return super().predict(lr_up, y_t, noise_level)


@pytestmark_linux
def test_ctrl_c_mid_run_frees_the_scratch_files(models: dict[str, OnnxDenoiser], on_disk: None) -> None:
    model = Interrupting(models["local"].path, "cpu")
    with pytest.raises(KeyboardInterrupt):
        run(LR, RefineOptions(preset="quality", tile=24), model)
    gc.collect()
    assert scratch_files() == []


# --- memory is bounded by the band and the tile -------------------------------------------------------
@pytest.mark.parametrize(("method", "scale"), [("bicubic", None), ("regression", None), ("regression", 2)])
def test_a_large_output_never_holds_a_float_copy_of_itself(models: dict[str, OnnxDenoiser],
                                                           monkeypatch: pytest.MonkeyPatch, method: str,
                                                           scale: int | None, tmp_path: Path) -> None:
    """The whole item (load, refine, resample to the scale, save, consistency) of a 768 x 768 photo: a 3072 x
    3072 output (113 MB as float32 RGB) on disk, 64 K-pixel bands, 256 px tiles. numpy's peak allocation
    (tracemalloc sees numpy's buffers) is the input, a few bands and tiles: a quarter of the output at
    most; one float copy of the output would be all of it. The input fits in memory, the output does not."""
    monkeypatch.setattr(canvas, "IN_MEMORY_PIXELS", 1 << 20)
    monkeypatch.setattr(canvas, "BAND_PIXELS", 1 << 16)
    source = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(3).uniform(0, 1, (768, 768, 3)) * 255).astype(np.uint8)).save(source)
    item = flow.Item(source, tmp_path / "out" / "photo.png", "photo.png")
    models_used = Models(regression=models["regression"]) if method == "regression" else Models(scale=4)
    whole = 3072 * 3072 * 3 * 4
    tracemalloc.start()
    try:
        done = flow.upscale_item(item, RefineOptions(method=method, tile=256), models_used, "png",  # type: ignore[arg-type]
                                  size=OutputSize(scale=scale))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    side = 768 * (scale or 4)
    assert done.status == "written" and done.result is not None and done.result.size == (side, side)
    assert done.consistency is not None and done.consistency > 0
    assert peak < 0.25 * whole, f"peak {peak / 1e6:.1f} MB for a {whole / 1e6:.0f} MB output"
    with Image.open(item.target) as written:
        assert written.size == (side, side)


# --- saving from disk ------------------------------------------------------------------------------------
def blocks_of(image: np.ndarray) -> Iterator[OutputCanvas]:
    yield OutputCanvas.of(image)
    disk = OutputCanvas(image.shape, on_disk=True)
    disk.write(0, image)
    yield disk


@pytest.mark.parametrize("fmt", ["png", "tiff", "jpg", "webp"])
@pytest.mark.parametrize("kind", ["rgb", "rgba", "gray", "gray16", "rgb16"])
def test_an_image_on_disk_is_saved_as_the_same_pixels(tmp_path: Path, on_disk: None, fmt: str, kind: str) -> None:
    rng = np.random.default_rng(8)
    image = rng.uniform(0, 1, (61, 47, 3)).astype(np.float32)
    if kind.startswith("gray"):
        image = np.repeat(image[:, :, :1], 3, axis=2)
    alpha = rng.uniform(0, 1, (61, 47)).astype(np.float32) if kind == "rgba" else None
    source = LoadedImage(rgb=image[::4, ::4], alpha=None, icc_profile=None, exif=None,
                         bit_depth=16 if kind.endswith("16") else 8, format="PNG", grayscale=kind.startswith("gray"))
    decoded = []
    for index, pixels in enumerate(blocks_of(image)):
        planes = None if alpha is None else (alpha if index == 0 else OutputCanvas.of(alpha))
        path = save_image(tmp_path / f"{index}.{fmt}", pixels, alpha=planes, source=source)
        back = load_image(path)
        decoded.append((back.rgb, back.alpha, back.bit_depth, back.grayscale))
    (memory, memory_alpha, bits, gray), (disk, disk_alpha, disk_bits, disk_gray) = decoded
    assert (bits, gray) == (disk_bits, disk_gray)
    lossy = fmt in ("jpg", "webp")
    level = 1 / 255 if bits == 8 else 2 / 65535
    np.testing.assert_allclose(disk, memory, rtol=0, atol=(0.06 if lossy else level + 1e-6))
    if memory_alpha is not None or disk_alpha is not None:
        assert memory_alpha is not None and disk_alpha is not None
        np.testing.assert_allclose(disk_alpha, memory_alpha, rtol=0, atol=level + 1e-6)


# --- sizes ----------------------------------------------------------------------------------------------
def test_the_output_limit_is_over_256_megapixels_and_a_phone_photo_starts() -> None:
    check_output_size(12000, 7500)  # a 3000 x 1875 photo at 4x: 90 MP
    check_output_size(16000, 16000)
    photo = np.broadcast_to(np.float32(0.5), (1875, 3000, 3))  # no memory: nothing runs before iterating
    steps = refine(photo, RefineOptions(method="bicubic"), None, scale=4)
    steps.close()


def test_resize_region_is_the_whole_image_resize_cut_to_the_block() -> None:
    rng = np.random.default_rng(2)
    source = rng.uniform(-1, 1, (37, 29, 3)).astype(np.float32)
    for out in ((116, 148), (58, 74), (87, 111), (10, 9)):
        whole = resample.resize_bicubic(source, *out)
        blocks = (((0, out[1]), None), ((3, min(17, out[1])), (5, min(40, out[0]))), ((out[1] - 4, out[1]), (0, 3)),
                  ((1, out[1]), (out[0] - 2, out[0])))
        for rows, cols in blocks:
            block = resize_region(array_reader(source), (37, 29), out, rows, cols)
            c0, c1 = cols or (0, out[0])
            exact = out in ((116, 148), (58, 74)) and rows != (0, out[1])  # 4x, 2x: bit for bit
            np.testing.assert_allclose(block, whole[rows[0]:rows[1], c0:c1], rtol=0, atol=0 if exact else 1e-5)


def test_consistency_at_the_output_size_is_the_papers_consistency(models: dict[str, OnnxDenoiser]) -> None:
    result = run(LR, RefineOptions(method="regression"), None, models["regression"])
    assert consistency_of(result.output, LR) == pytest.approx(consistency(result.image, LR, 4), rel=1e-9)
    half = resize_result(result, 58, 74)
    assert consistency_of(half.output, LR) == pytest.approx(consistency(half.image, LR, 2), rel=1e-9)
