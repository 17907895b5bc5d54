"""Unit tests: diffusion maths, presets and overrides, the data pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from exporter.config import PRESETS, ConfigError, TrainConfig, apply_overrides, get_preset, load_toml
from exporter.training.data import (
    CropStream,
    DataError,
    ImageSet,
    find_images,
    load_rgb,
    make_pair,
    split_images,
    validation_batch,
)
from exporter.training.objective import GammaSampler, loss_weight, prediction_target, q_sample, to_x0_eps
from sr3_desktop.core.diffusion.schedule import ScheduleSpec
from sr3_desktop.core.imageio.resample import downscale, upscale


# --- diffusion -----------------------------------------------------------------------------------------
def test_gamma_sampler_follows_the_piecewise_uniform_mixture() -> None:
    spec = ScheduleSpec()
    gammas = spec.gammas()
    samples = GammaSampler(spec).sample(40_000, torch.Generator().manual_seed(0)).numpy()
    assert samples.dtype == np.float64
    assert samples.min() >= gammas[-1] and samples.max() <= 1.0
    # p(gamma) picks t uniformly: the share below gamma_t is (T - t) / T.
    for t in (200, 1000, 1800):
        expected = (spec.steps - t) / spec.steps
        assert abs(np.mean(samples < gammas[t - 1]) - expected) < 0.01


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_prediction_targets_convert_back_to_x0_and_eps(prediction: str) -> None:
    gen = torch.Generator().manual_seed(1)
    y0, eps = torch.rand(3, 3, 8, 8, generator=gen) * 2 - 1, torch.randn(3, 3, 8, 8, generator=gen)
    gamma = torch.tensor([0.999, 0.5, 0.01], dtype=torch.float64)
    y_t = q_sample(y0, gamma, eps)
    x0_hat, eps_hat = to_x0_eps(prediction, prediction_target(prediction, y0, eps, gamma), y_t, gamma)
    torch.testing.assert_close(x0_hat, y0, atol=1e-4, rtol=0)
    torch.testing.assert_close(eps_hat, eps, atol=1e-4, rtol=0)


def test_loss_weightings() -> None:
    gamma = torch.tensor([0.999, 0.9, 0.5, 0.1, 0.001], dtype=torch.float64)
    snr = gamma / (1 - gamma)
    base = get_preset("tiny")
    assert torch.equal(loss_weight(base, gamma), torch.ones(5, dtype=torch.float64))
    eps_min = loss_weight(apply_overrides(base, {"loss_weighting": "min-snr", "min_snr_gamma": 5.0}), gamma)
    torch.testing.assert_close(eps_min, snr.clamp(max=5.0) / snr)
    x0_trunc = loss_weight(apply_overrides(base, {"loss_weighting": "truncated-snr", "prediction": "x0"}), gamma)
    torch.testing.assert_close(x0_trunc, snr.clamp(min=1.0))
    v_min = loss_weight(apply_overrides(base, {"loss_weighting": "min-snr", "prediction": "v"}), gamma)
    torch.testing.assert_close(v_min, snr.clamp(max=5.0) / (snr + 1))


# The validation chain (ddim_sample) is checked against the core's sampler on a non-oracle model in
# test_parametrisation.py.


# --- config ----------------------------------------------------------------------------------------------
def test_every_preset_is_valid_and_round_trips_as_a_dict() -> None:
    for name, preset in PRESETS.items():
        assert preset.validate() is preset, name
        assert TrainConfig.from_dict(preset.to_dict()) == preset
    paper = get_preset("faces-16-128").unet
    assert (paper.base_channels, paper.channel_mults, paper.num_res_blocks) == (128, (1, 2, 4, 8, 8), 3)
    small = get_preset("cpu-small")
    assert (small.unet.base_channels, small.crop, small.batch_size) == (32, 64, 16)


def test_toml_overrides_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text('lr = 2e-4\nprediction = "v"\n[unet]\nbase_channels = 24\nchannel_mults = [1, 2, 2]\n')
    config = apply_overrides(get_preset("cpu-small"), load_toml(path))
    assert (config.lr, config.prediction, config.unet.base_channels, config.unet.channel_mults) == (
        2e-4, "v", 24, (1, 2, 2))
    config = apply_overrides(config, {"lr": "3e-4", "channel_mults": "1,2"})
    assert (config.lr, config.unet.channel_mults) == (3e-4, (1, 2))


def test_bad_recipes_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="multiple of scale"):
        apply_overrides(get_preset("cpu-small"), {"crop": 60}).validate()
    with pytest.raises(ConfigError, match="unknown config field"):
        apply_overrides(get_preset("tiny"), {"learning_rate": 1})
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(ConfigError, match="prediction must be one of"):
        apply_overrides(get_preset("tiny"), {"prediction": "score"}).validate()
    (tmp_path / "bad.toml").write_text("lr = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(tmp_path / "bad.toml")


# --- data ------------------------------------------------------------------------------------------------
def _photo(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_find_images_is_recursive_and_knows_the_formats(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.PNG", "sub/c.webp", "sub/deep/d.tiff", "e.JPEG", "f.tif"):
        _photo(tmp_path / name, (40, 32), 0)
    (tmp_path / "notes.txt").write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["a.jpg", "b.PNG", "e.JPEG", "f.tif", "sub/c.webp", "sub/deep/d.tiff"]
    with pytest.raises(DataError, match="not found"):
        find_images(tmp_path / "missing")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb(tmp_path / "r.jpg").shape == (40, 20, 3)


def test_split_holds_out_whole_images_deterministically(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.png" for i in range(10)]
    train, val = split_images(paths, 2)
    assert len(val) == 2 and not set(train) & set(val) and sorted(train + val) == sorted(paths)
    assert split_images(paths, 2) == (train, val)
    with pytest.raises(DataError, match="held out"):
        split_images(paths[:2], 2)


def test_pairs_use_the_core_resample_and_model_range(tmp_path: Path) -> None:
    hr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    lr, lr_up, hr_model = make_pair(hr, 4)
    expected_lr = downscale(hr.astype(np.float32) / 255, 4)
    np.testing.assert_allclose(lr, expected_lr.transpose(2, 0, 1) * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(lr_up, upscale(expected_lr, 4).transpose(2, 0, 1) * 2 - 1, atol=1e-6)
    assert hr_model.min() >= -1 and hr_model.max() <= 1 and hr_model.shape == (3, 32, 32)


def test_crop_stream_batches_and_validation_crops(tmp_path: Path) -> None:
    for i in range(3):
        _photo(tmp_path / f"{i}.png", (80, 64), i)
    images = ImageSet.load(tmp_path, crop=32, val_images=1)
    assert len(images.train) == 2 and len(images.val) == 1
    lr_up, hr = next(iter(CropStream(images.train, 32, 4, batch_size=5, seed=0)))
    assert lr_up.shape == hr.shape == (5, 3, 32, 32) and lr_up.dtype == torch.float32
    first, again = validation_batch(images.val, 32, 4, 3), validation_batch(images.val, 32, 4, 3)
    assert all(torch.equal(first[k], again[k]) for k in ("lr", "lr_up", "hr"))
    assert first["lr"].shape == (3, 3, 8, 8)


def test_empty_or_too_small_folders_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        ImageSet.load(tmp_path, crop=32, val_images=0)
    _photo(tmp_path / "small.png", (20, 20), 0)
    with pytest.raises(DataError, match="smaller than the crop"):
        ImageSet.load(tmp_path, crop=32, val_images=0)


# --- U-Net attention ------------------------------------------------------------------------------------
def test_attention_matmuls_match_the_einsum_maths_and_export_without_einsum() -> None:
    import math

    from exporter.export.export_onnx import unet_io
    from exporter.export.graph_io import to_onnx
    from exporter.unet import SKIP_SCALE, SelfAttention, UNet, UNetConfig

    torch.manual_seed(0)
    attention = SelfAttention(16)
    with torch.no_grad():
        for p in attention.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    assert {k: tuple(v.shape) for k, v in attention.state_dict().items()} == {  # checkpoints stay loadable
        "norm.weight": (16,), "norm.bias": (16,), "qkv.weight": (48, 16, 1, 1), "qkv.bias": (48,),
        "proj.weight": (16, 16, 1, 1), "proj.bias": (16,)}
    x = torch.randn(2, 16, 5, 7)
    with torch.no_grad():
        q, k, v = attention.qkv(attention.norm(x)).reshape(2, 3, 16, 35).unbind(1)
        weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(16), dim=-1)
        reference = (x + attention.proj(torch.einsum("bij,bcj->bci", weights, v).reshape(2, 16, 5, 7))) * SKIP_SCALE
        torch.testing.assert_close(attention(x), reference, atol=1e-6, rtol=1e-5)
    model = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(0,)))
    ops = {node.op_type for node in to_onnx(model, unet_io(model)).graph.node}
    assert "MatMul" in ops and "Einsum" not in ops
