"""refine(...) end to end on fixture ONNX models: every parametrisation against a reference chain,
determinism, cancelling."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import reference_chain
from onnx_fixtures import local_sr3, make_card, oracle_sr3, regression, save, sharpen_numpy

from sr3_desktop.core.diffusion.schedule import inference_levels
from sr3_desktop.core.errors import ImageLoadError, SR3Error
from sr3_desktop.core.imageio import resample
from sr3_desktop.core.model_files.card import InferencePreset, ModelCard, ModelCardError
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.model_space import attention_downsample, from_model, max_auto_tile, to_model
from sr3_desktop.core.upscale.pipeline import refine, run
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.sr3_chain import back_project
from sr3_desktop.core.upscale.tiling import pad_to_multiple

LR = np.random.default_rng(0).uniform(0, 1, (9, 13, 3)).astype(np.float32)


class CountingDenoiser(OnnxDenoiser):
    """The real denoiser on a device with room for ``budget`` pixels per run, counting the runs."""

    def __init__(self, path: Path, budget: int = 16 * 16) -> None:
        super().__init__(path, "cpu")
        self.budget = budget
        self.runs: list[int] = []
        self.tile_shapes: set[tuple[int, int]] = set()

    @property
    def budget_pixels(self) -> int:
        return self.budget

    def predict(self, lr_up: np.ndarray, y_t: np.ndarray, noise_level: np.ndarray) -> np.ndarray:
        self.runs.append(lr_up.shape[0])
        self.tile_shapes.add(lr_up.shape[2:])
        return super().predict(lr_up, y_t, noise_level)


def expected_sharpened(lr: np.ndarray, multiple: int = 8) -> np.ndarray:
    """What the oracle's chain must end at: clip(sharpen(lr_up)) on the padded canvas, cropped."""
    lr_up = to_model(resample.upscale(lr, 4))[0]
    h, w = lr_up.shape[1:]
    return from_model(sharpen_numpy(pad_to_multiple(lr_up, multiple))[:, :h, :w])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, OnnxDenoiser]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "oracle": OnnxDenoiser(save(oracle_sr3(), folder / "oracle.onnx"), "cpu"),
        "local": OnnxDenoiser(save(local_sr3(), folder / "local.onnx"), "cpu"),
        "regression": OnnxDenoiser(save(regression(), folder / "regression.onnx"), "cpu"),
        "regression_residual": OnnxDenoiser(save(regression(target="residual"), folder / "rr.onnx"), "cpu"),
    }


def reference_refine(lr: np.ndarray, sr3_path: Path, card: ModelCard, preset: InferencePreset, seed: int,
                     regression_path: Path | None = None, levels: np.ndarray | None = None,
                     start: str | None = None) -> np.ndarray:
    """What refine() must compute, written out: bicubic condition padded to the size multiple, the start
    (noise, or an estimate in the diffused space noised to the first level, Eq. 4), then the float64
    reference chain of reference_chain.py fed by the ONNX model's own session; cropped, no back-projection."""
    lr_up = to_model(resample.upscale(lr, card.scale))[0]
    height, width = lr_up.shape[1:]
    condition = pad_to_multiple(lr_up, card.size_multiple).astype(np.float64)
    session = ort.InferenceSession(str(sr3_path), providers=["CPUExecutionProvider"])
    lr_up_in, y_t_in, level_in = card.inputs

    def network(y_t: np.ndarray, level: float) -> np.ndarray:
        feeds = {lr_up_in: condition[None].astype(np.float32), y_t_in: y_t[None].astype(np.float32),
                 level_in: np.array([level], dtype=np.float32)}
        return session.run(None, feeds)[0][0]

    levels = np.asarray(preset.noise_levels if levels is None else levels, dtype=np.float64)
    residual = card.target == "residual"
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(condition.shape, dtype=np.float32).astype(np.float64)
    start = start or preset.start
    if start != "noise":
        estimate = condition
        if start == "regression":
            assert regression_path is not None
            regression_session = ort.InferenceSession(str(regression_path), providers=["CPUExecutionProvider"])
            estimate = regression_session.run(None, {"lr_up": condition[None].astype(np.float32)})[0][0]
        estimate = estimate - condition if residual else estimate
        y = np.sqrt(levels[0]) * estimate + np.sqrt(1 - levels[0]) * y
    y0, clipped, _ = reference_chain.chain(
        network, levels, y, kind=preset.sampler, eta=preset.eta, prediction=card.prediction, target=card.target,
        conditioning=card.noise_conditioning, condition=condition if residual else None, rng=rng)
    assert clipped > 0  # the clip rule is exercised
    hr = y0 + condition if residual else y0
    return from_model(hr[:, :height, :width])


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
@pytest.mark.parametrize("target", ["hr", "residual"])
@pytest.mark.parametrize("conditioning", ["gamma", "sqrt_gamma"])
def test_every_parametrisation_follows_the_reference_chain(
    tmp_path: Path, models: dict[str, OnnxDenoiser], prediction: str, target: str, conditioning: str
) -> None:
    """A non-oracle model (its answer depends on every step), each preset's sampler, start and chain."""
    path = save(local_sr3(prediction=prediction, target=target, noise_conditioning=conditioning), tmp_path / "m.onnx")
    sr3 = OnnxDenoiser(path, "cpu")
    regression_path = models["regression"].path
    for name in ("fast", "balanced", "quality"):  # DDIM from bicubic, DDIM from regression, DDPM from noise
        result = run(LR, RefineOptions(preset=name, seed=3, back_projection=0), sr3, models["regression"])
        assert result.image.shape == (36, 52, 3) and result.image.dtype == np.float32
        expected = reference_refine(LR, path, sr3.card, sr3.card.preset(name), 3, regression_path)
        np.testing.assert_allclose(result.image, expected, atol=2e-5, rtol=0, err_msg=name)
        assert result.notes == ()


def test_bicubic_and_regression_go_through_the_same_generator(models: dict[str, OnnxDenoiser]) -> None:
    steps = list(refine(LR, RefineOptions(method="bicubic"), None, scale=3))
    assert len(steps) == 1 and steps[0].step == steps[0].total == 1 and steps[0].result is not None
    np.testing.assert_array_equal(steps[0].result.image, np.clip(resample.upscale(LR, 3), 0, 1))
    assert steps[0].result.steps == 0 and steps[0].result.method == "bicubic"
    many = run(LR, RefineOptions(method="bicubic", samples=3), None, scale=2)
    assert many.uncertainty is None and "deterministic" in many.notes[0]
    for name in ("regression", "regression_residual"):
        result = run(LR, RefineOptions(method="regression"), None, models[name])
        np.testing.assert_allclose(result.image, expected_sharpened(LR), atol=1e-6)
        assert result.steps == 1 and result.method == "regression" and result.uncertainty is None


def test_same_seed_same_bits_other_seed_other_image(models: dict[str, OnnxDenoiser]) -> None:
    options = RefineOptions(preset="quality", seed=7)
    first = run(LR, options, models["local"]).image
    again = run(LR, options, models["local"]).image
    other = run(LR, RefineOptions(preset="quality", seed=8), models["local"]).image
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 0.05
    tiled = run(LR, RefineOptions(preset="quality", seed=7, tile=16), models["local"]).image
    np.testing.assert_allclose(tiled, first, atol=1e-4)  # a local model does not see the tiles


def test_previews_every_k_steps_and_the_result_last(models: dict[str, OnnxDenoiser]) -> None:
    steps = list(refine(LR, RefineOptions(preset="quality", preview_every=3), models["local"]))
    assert [s.step for s in steps] == [3, 6, 9, 10]
    assert all(s.total == 10 for s in steps)
    assert [s.result is not None for s in steps] == [False, False, False, True]
    for s in steps:
        assert s.y_t.shape == s.pred_y0.shape == (36, 52, 3)
        assert s.y_t.dtype == np.float32 and s.y_t.min() >= 0.0 and s.y_t.max() <= 1.0
    final = steps[-1].result
    assert final is not None and final.steps == 10 and final.preset == "quality" and final.seconds > 0


def test_stopping_iteration_wastes_no_further_work(tmp_path: Path) -> None:
    sr3 = CountingDenoiser(save(local_sr3(), tmp_path / "local.onnx"))
    steps = refine(LR, RefineOptions(preset="quality", tile=16, preview_every=1), sr3)
    runs_per_step = None
    for step in steps:
        runs_per_step = runs_per_step or len(sr3.runs)
        if step.step == 2:
            break
    steps.close()
    assert runs_per_step is not None and runs_per_step > 1  # several tile batches per step
    assert len(sr3.runs) == 2 * runs_per_step and set(sr3.runs) == {1}


def test_should_stop_cancels_within_one_tile_batch(tmp_path: Path) -> None:
    sr3 = CountingDenoiser(save(local_sr3(), tmp_path / "local.onnx"))
    steps = list(refine(LR, RefineOptions(preset="quality", tile=16), sr3, should_stop=lambda: len(sr3.runs) >= 3))
    assert steps == [] and len(sr3.runs) == 3 and set(sr3.runs) == {1}  # stopped inside the first step


def test_automatic_tiles_bound_self_attention(tmp_path: Path) -> None:
    """A U-Net attending at 2x down must not see a 256 px tile (128 x 128 attention positions)."""
    card = make_card("sr3", size_multiple=2, architecture={"channel_mults": [1, 2], "attention_levels": [-1]})
    assert attention_downsample(card) == 2 and max_auto_tile(card) == 128
    assert attention_downsample(make_card("sr3")) == 8  # no architecture: the middle block at size_multiple
    fine = make_card("sr3", architecture={"channel_mults": [1, 2, 4], "attention_levels": [0]})
    assert attention_downsample(fine) == 1
    sr3 = CountingDenoiser(save(local_sr3(card), tmp_path / "attn.onnx"), budget=512 * 512)
    lr = np.random.default_rng(3).uniform(0, 1, (64, 64, 3)).astype(np.float32)
    run(lr, RefineOptions(preset="fast"), sr3)
    assert max(max(shape) for shape in sr3.tile_shapes) <= 128
    assert sr3.runs[0] > 1  # the small tiles share a session run
    explicit = CountingDenoiser(save(local_sr3(card), tmp_path / "attn2.onnx"), budget=512 * 512)
    run(lr, RefineOptions(preset="fast", tile=256), explicit)  # --tile overrides
    assert explicit.tile_shapes == {(256, 256)}


def test_k_samples_give_a_mean_and_a_std(models: dict[str, OnnxDenoiser]) -> None:
    result = run(LR, RefineOptions(preset="quality", seed=4, samples=3), models["local"])
    singles = [run(LR, RefineOptions(preset="quality", seed=4 + k), models["local"]).image for k in range(3)]
    np.testing.assert_allclose(result.image, np.mean(singles, axis=0), atol=1e-6)
    assert result.uncertainty is not None and result.uncertainty.shape == (36, 52)
    np.testing.assert_allclose(result.uncertainty, np.std(singles, axis=0).mean(axis=2), atol=1e-6)
    assert result.steps == 30


def test_regression_start_falls_back_to_bicubic_with_a_note(models: dict[str, OnnxDenoiser]) -> None:
    with_reg = run(LR, RefineOptions(preset="balanced"), models["local"], models["regression"])
    without = run(LR, RefineOptions(preset="balanced"), models["local"])
    assert with_reg.notes == () and with_reg.steps == 6 + 1
    assert len(without.notes) == 1 and "bicubic" in without.notes[0] and without.steps == 6
    assert not np.array_equal(with_reg.image, without.image)


def test_steps_and_strength_override_the_preset(models: dict[str, OnnxDenoiser]) -> None:
    steps = list(refine(LR, RefineOptions(preset="quality", steps=3), models["local"]))
    assert steps[-1].total == 3
    local = models["local"]
    result = run(LR, RefineOptions(preset="quality", strength=0.4, steps=5, seed=2, back_projection=0), local)
    assert any("bicubic" in n for n in result.notes)
    quality = local.card.preset("quality")
    assert local.card.train_schedule is not None
    levels = inference_levels(local.card.train_schedule, 5, 0.4)  # the rebuilt chain: 5 steps from t = 0.4 T
    expected = reference_refine(LR, local.path, local.card, quality, 2, levels=levels, start="bicubic")
    np.testing.assert_allclose(result.image, expected, atol=2e-5, rtol=0)


def test_back_projection_restores_consistency(models: dict[str, OnnxDenoiser]) -> None:
    def inconsistency(image: np.ndarray) -> float:
        return float(np.mean((resample.downscale(image, 4) - LR) ** 2))

    plain = run(LR, RefineOptions(preset="fast", back_projection=0), models["oracle"]).image
    projected = run(LR, RefineOptions(preset="fast", back_projection=3), models["oracle"]).image
    assert inconsistency(projected) < 0.5 * inconsistency(plain)
    np.testing.assert_allclose(projected, back_project(plain, LR, 4, 3), atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (7, 7), (2, 9)])
def test_tiny_inputs(models: dict[str, OnnxDenoiser], size: tuple[int, int]) -> None:
    lr = np.random.default_rng(1).uniform(0, 1, (*size, 3)).astype(np.float32)
    result = run(lr, RefineOptions(preset="fast", back_projection=0), models["oracle"])
    assert result.image.shape == (size[0] * 4, size[1] * 4, 3)
    np.testing.assert_allclose(result.image, expected_sharpened(lr), atol=1e-4)


def test_mistakes_are_refused_before_any_work(models: dict[str, OnnxDenoiser]) -> None:
    with pytest.raises(ImageLoadError, match="16384"):  # output over the pixel cap, from the shape alone
        refine(np.broadcast_to(np.float32(0.5), (4100, 4100, 3)), RefineOptions(), models["local"])
    with pytest.raises(SR3Error, match="needs a sr3 model"):
        refine(LR, RefineOptions(), None)
    with pytest.raises(SR3Error, match="4x, not 2x"):
        refine(LR, RefineOptions(), models["local"], scale=2)
    with pytest.raises(SR3Error, match="given as the sr3 model"):
        refine(LR, RefineOptions(), models["regression"])
    with pytest.raises(SR3Error, match="RGB"):
        refine(LR[:, :, 0], RefineOptions(), models["local"])
    with pytest.raises(SR3Error, match="samples"):
        refine(LR, RefineOptions(samples=0), models["local"])
    with pytest.raises(SR3Error, match="seed"):
        refine(LR, RefineOptions(seed=-1), models["local"])
    with pytest.raises(SR3Error, match="strength"):
        refine(LR, RefineOptions(strength=1.5), models["local"])
    with pytest.raises(ModelCardError, match="no preset 'turbo'"):
        refine(LR, RefineOptions(preset="turbo"), models["local"])
    with pytest.raises(SR3Error, match="too small"):
        run(LR, RefineOptions(tile=4), models["local"])
    with pytest.raises(SR3Error, match="needs a scale"):
        refine(LR, RefineOptions(method="bicubic"), None)
    with pytest.raises(SR3Error, match="NaN"):
        refine(np.full((4, 4, 3), np.nan, dtype=np.float32), RefineOptions(method="bicubic"), None, scale=2)


def test_model_space_conversions() -> None:
    image = np.random.default_rng(2).uniform(0, 1, (5, 6, 3)).astype(np.float32)
    model = to_model(image)
    assert model.shape == (1, 3, 5, 6) and model.min() >= -1 and model.max() <= 1
    np.testing.assert_allclose(from_model(model), image, atol=1e-7)
    np.testing.assert_array_equal(from_model(np.full((3, 2, 2), 3.0)), np.ones((2, 2, 3)))


@pytest.mark.parametrize(("target", "tile", "samples"), [("hr", None, 1), ("residual", 16, 2), ("hr", 16, 1)])
def test_lazy_previews_read_late_equal_previews_read_at_once(tmp_path: Path, target: str, tile: int | None,
                                                            samples: int) -> None:
    """Previews are built on first read, from planes that later steps (in-place sampler) never touch."""
    sr3 = OnnxDenoiser(save(local_sr3(target=target), tmp_path / "local.onnx"), "cpu")
    options = RefineOptions(preset="quality", seed=3, tile=tile, samples=samples)
    at_once = [(s.y_t.copy(), s.pred_y0.copy()) for s in refine(LR, options, sr3)]
    late = list(refine(LR, options, sr3))
    assert not any(s._y_t.ready or s._pred_y0.ready for s in late[:-1])  # nothing built yet
    assert len(late) == len(at_once) == 10 * samples
    for s, (y_t, pred_y0) in zip(late, at_once, strict=True):
        np.testing.assert_array_equal(s.y_t, y_t)
        np.testing.assert_array_equal(s.pred_y0, pred_y0)
        assert s.pred_y0 is s.pred_y0  # built once, then kept


def test_a_preview_is_the_same_whichever_thread_builds_it(models: dict[str, OnnxDenoiser]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    steps = list(refine(LR, RefineOptions(preset="quality", seed=5), models["local"]))
    eager = list(refine(LR, RefineOptions(preset="quality", seed=5), models["local"]))
    with ThreadPoolExecutor(4) as pool:
        built = list(pool.map(lambda s: (s.y_t, s.pred_y0), steps + steps))
    for (y_t, pred_y0), s in zip(built, eager + eager, strict=True):
        np.testing.assert_array_equal(y_t, s.y_t)
        np.testing.assert_array_equal(pred_y0, s.pred_y0)
    with pytest.raises(AttributeError):
        steps[0].step = 3  # type: ignore[misc]
