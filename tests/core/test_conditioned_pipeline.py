"""SR3 conditioned on a regression model (predict-and-refine): the card, training and the app see the same input.

The onnx.helper models prove what the SR3 network is fed; the exporter's real tiny models prove that
training conditioned on exactly what the app computes with onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto
from onnx_fixtures import custom_graph, make_card, oracle_sr3, regression, save

from sr3_desktop.core.diffusion.schedule import gamma_of_sigma
from sr3_desktop.core.errors import ModelError
from sr3_desktop.core.imageio import resample
from sr3_desktop.core.model_files.card import InferencePreset
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.pipeline import refine, run
from sr3_desktop.core.upscale.refine_types import RefineOptions

REGRESSION_NAME = "fixture-regression-4x"
LR = np.random.default_rng(0).random((11, 9, 3)).astype(np.float32)  # 44 x 36 out: padded to 48 x 40


def one_step(start: str = "regression") -> RefineOptions:
    """One DDPM step from the estimate noised to sigma 0.3, no back-projection."""
    preset = InferencePreset(steps=1, noise_levels=(gamma_of_sigma(0.3),), sampler="ddpm", start=start,  # type: ignore[arg-type]
                             strength=0.05, back_projection=0, schedule={"type": "explicit"})
    return RefineOptions(method="sr3", preset="probe", custom_preset=preset)


def identity_sr3(folder: Path, **card: object) -> OnnxDenoiser:
    """An x0-predicting SR3 graph whose prediction IS its lr_up input: the output shows what it was fed."""
    spec = [("lr_up", TensorProto.FLOAT, ["N", 3, "H", "W"]), ("y_t", TensorProto.FLOAT, ["N", 3, "H", "W"]),
            ("noise_level", TensorProto.FLOAT, ["N"])]
    model = custom_graph(spec, [("prediction", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                         make_card("sr3", name="identity-sr3", prediction="x0", target="hr", **card))
    return OnnxDenoiser(save(model, folder / "identity-sr3.onnx"), "cpu")


@pytest.fixture
def reg(tmp_path: Path) -> OnnxDenoiser:
    """y = sharpen(lr_up): clearly not the bicubic upsample."""
    return OnnxDenoiser(save(regression(name=REGRESSION_NAME, amount=0.4), tmp_path / "reg.onnx"), "cpu")


def test_the_sr3_network_is_fed_the_regression_output(tmp_path: Path, reg: OnnxDenoiser) -> None:
    sr3 = identity_sr3(tmp_path, condition="regression", condition_model=REGRESSION_NAME)
    got = run(LR, one_step(), sr3, reg)
    regression_image = run(LR, RefineOptions(method="regression"), None, reg).image
    np.testing.assert_array_equal(got.image, regression_image)
    assert got.steps == 2 and got.notes == ()  # one regression pass + one SR3 step, the names agree
    bicubic = np.clip(resample.upscale(LR, 4), 0.0, 1.0)
    assert np.abs(regression_image - bicubic).mean() > 0.02  # the two conditions really differ


def test_an_unconditioned_twin_is_fed_the_bicubic_upsample(tmp_path: Path, reg: OnnxDenoiser) -> None:
    sr3 = identity_sr3(tmp_path)  # condition = "bicubic" (the paper)
    got = run(LR, one_step(), sr3, reg)  # starts from the regression estimate, but conditions on bicubic
    np.testing.assert_allclose(got.image, np.clip(resample.upscale(LR, 4), 0.0, 1.0), rtol=0, atol=1e-6)


def test_a_residual_model_refines_over_the_regression_output(tmp_path: Path, reg: OnnxDenoiser) -> None:
    """x0 of the residual: an oracle for the identity target predicts 0, so the result is the condition."""
    model = oracle_sr3(name="zero-residual", prediction="x0", target="residual", amount=0.0,
                       condition="regression", condition_model=REGRESSION_NAME)
    sr3 = OnnxDenoiser(save(model, tmp_path / "zero.onnx"), "cpu")
    regression_image = run(LR, RefineOptions(method="regression"), None, reg).image
    for start in ("regression", "noise", "bicubic"):
        np.testing.assert_allclose(run(LR, one_step(start), sr3, reg).image, regression_image, atol=1e-6)


def test_without_the_regression_model_the_pipeline_refuses_at_the_call(tmp_path: Path) -> None:
    sr3 = identity_sr3(tmp_path, condition="regression", condition_model=REGRESSION_NAME)
    with pytest.raises(ModelError, match=f"regression model '{REGRESSION_NAME}'"):
        refine(LR, one_step(), sr3, None)  # before any iteration: the mistake raises at the call
    with pytest.raises(ModelError, match=REGRESSION_NAME):
        run(LR, RefineOptions(method="sr3"), sr3, None)  # its own presets too


def test_another_regression_model_runs_with_a_note(tmp_path: Path) -> None:
    sr3 = identity_sr3(tmp_path, condition="regression", condition_model="some other regression")
    other = OnnxDenoiser(save(regression(name=REGRESSION_NAME), tmp_path / "reg.onnx"), "cpu")
    notes = run(LR, one_step(), sr3, other).notes
    assert any("some other regression" in n and REGRESSION_NAME in n for n in notes)


# --- the exporter's real tiny models ----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny regression (random small weights) and a tiny SR3 trained conditioned on it."""
    torch = pytest.importorskip("torch")
    from model_factory import make_photo_folder, train_tiny

    from exporter.export.export_onnx import export
    from exporter.training.checkpoint import load_checkpoint, save_checkpoint

    root = tmp_path_factory.mktemp("conditioned")
    photos = make_photo_folder(root / "photos")
    reg_run = train_tiny(photos, root / "runs" / "regression", "--kind", "regression", "--target", "residual",
                         steps=1)
    ckpt = load_checkpoint(reg_run)
    generator = torch.Generator().manual_seed(0)
    ckpt["ema"] = {k: (torch.randn(v.shape, generator=generator) * 0.05 if v.is_floating_point() else v)
                   for k, v in ckpt["ema"].items()}
    save_checkpoint(root / "random-regression" / "checkpoint.pt", {k: v for k, v in ckpt.items() if k != "format"})
    reg_path = root / "tiny-regression.onnx"
    export(root / "random-regression", reg_path, name="Tiny regression (random)")
    sr3_run = train_tiny(photos, root / "runs" / "sr3", "--kind", "sr3", "--prediction", "x0", "--target", "residual",
                         "--condition", "regression", "--condition-model", str(reg_path), steps=2)
    sr3_path = root / "tiny-sr3.onnx"
    export(sr3_run, sr3_path, name="Tiny conditioned SR3")
    return {"photos": photos, "regression": reg_path, "sr3": sr3_path, "sr3_run": sr3_run}


def test_a_conditioned_run_exports_a_card_naming_its_regression_model(trained: dict[str, Path]) -> None:
    card = OnnxDenoiser(trained["sr3"], "cpu").card
    assert (card.condition, card.condition_model) == ("regression", "Tiny regression (random)")
    assert (card.prediction, card.target) == ("x0", "residual")


def test_training_conditions_on_what_the_app_computes(trained: dict[str, Path], tmp_path: Path) -> None:
    """The Trainer's frozen regression (torch) gives the pipeline's regression estimate (onnxruntime)."""
    torch = pytest.importorskip("torch")
    from exporter.config import TrainConfig
    from exporter.training.checkpoint import load_checkpoint
    from exporter.training.data import load_rgb, make_pair
    from exporter.training.train import Trainer

    config = TrainConfig.from_dict(load_checkpoint(trained["sr3_run"])["config"])
    trainer = Trainer(config, trained["photos"], tmp_path / "unused")
    photo = load_rgb(sorted(trained["photos"].glob("*.png"))[0])[16:80, 24:88]
    hr = (photo * 0.6 + 50).astype(np.uint8)  # away from black and white, so no output pixel is clipped
    lr, lr_up, _ = make_pair(np.ascontiguousarray(hr), 4)
    with torch.no_grad():
        condition = trainer.condition(torch.from_numpy(lr_up[None]))[0].numpy()
    lr_01 = np.ascontiguousarray((lr.transpose(1, 2, 0) + 1.0) / 2.0)
    reg = OnnxDenoiser(trained["regression"], "cpu")
    app = run(lr_01, RefineOptions(method="regression"), None, reg).image
    residual = condition - lr_up
    assert np.sqrt(np.mean(residual**2)) > 0.01  # the regression changes the image: not just bicubic
    assert app.min() > 0.0 and app.max() < 1.0  # nothing clipped, so the comparison is complete
    np.testing.assert_allclose(app, (condition.transpose(1, 2, 0) + 1.0) / 2.0, rtol=0, atol=1e-5)
    # A training step feeds the network that condition, not the bicubic upsample it was given.
    seen: list[torch.Tensor] = []
    network = trainer.train_model

    def recording(cond: torch.Tensor, y_t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        seen.append(cond)
        return network(cond, y_t, level)

    trainer.train_model = recording  # type: ignore[assignment]
    batch = torch.from_numpy(lr_up[None])
    trainer.train_step(batch, torch.from_numpy(make_pair(np.ascontiguousarray(hr), 4)[2][None]),
                       torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    (fed,) = seen
    np.testing.assert_array_equal(fed[0].numpy(), condition)


def test_the_conditioned_model_runs_in_the_app_with_its_regression_model(trained: dict[str, Path]) -> None:
    sr3, reg = OnnxDenoiser(trained["sr3"], "cpu"), OnnxDenoiser(trained["regression"], "cpu")
    with pytest.raises(ModelError, match="Tiny regression"):
        refine(LR, RefineOptions(method="sr3", steps=2), sr3, None)
    result = run(LR, RefineOptions(method="sr3", steps=2), sr3, reg)
    assert result.image.shape == (44, 36, 3) and np.all(np.isfinite(result.image))
    assert result.steps == 3 and result.notes == ()
