"""The U-Net at the low resolution (``unshuffle``): trained tiny, exported, verified and run by the app.

Pixel-unshuffle at the graph's input and depth-to-space at its output keep the card's inputs and outputs at
the output size; the card states the attention's reach relative to the output (``attention_downsample``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from model_factory import make_photo_folder, train_tiny

from exporter.export.export_onnx import export
from exporter.export.verify import verify
from exporter.training.onnx_weights import load_unet
from exporter.unet import UNet, UNetConfig, count_parameters
from sr3_desktop.core.imageio.resample import upscale
from sr3_desktop.core.model_files.card import SCHEMA_VERSION, read_card
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.model_space import attention_downsample, from_model, to_model
from sr3_desktop.core.upscale.pipeline import run
from sr3_desktop.core.upscale.refine_types import RefineOptions


def test_unshuffle_keeps_the_output_size_and_runs_the_body_at_the_low_resolution() -> None:
    """Mutations caught: no depth-to-space at the output (shape), the unshuffle dropped (the body's
    first convolution sees 3 channels at full size), the size multiple or the reach not scaled by it."""
    config = UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, unshuffle=4)
    model = UNet(config, conditional=True)
    assert model.input_conv.in_channels == 6 * 16 and model.out_conv.out_channels == 3 * 16
    seen: list[tuple[int, ...]] = []
    model.input_conv.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        out = model(x, torch.randn_like(x), torch.rand(2))
    assert out.shape == x.shape and seen == [(2, 16, 8, 12)]
    assert config.size_multiple == 8 and config.attention_downsample() == 8
    assert UNetConfig(channel_mults=(1, 2, 2, 4), attention_levels=(-1,)).attention_downsample() == 8
    assert UNetConfig(channel_mults=(1, 2, 2), attention_levels=(1,), unshuffle=4).attention_downsample() == 8
    assert count_parameters(model) > 0


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("lowres")
    photos = make_photo_folder(work / "photos")
    run_dir = train_tiny(photos, work / "run", "--kind", "regression", "--target", "residual", "--unshuffle", "2",
                         "--lr", "0.02")
    onnx_path = work / "lowres.onnx"
    export(run_dir, onnx_path, name="Tiny low-resolution regression (test)")
    return onnx_path, run_dir


def test_the_export_records_the_unshuffle_and_passes_parity(exported: tuple[Path, Path]) -> None:
    """Mutations caught: the card's size multiple or attention reach without the unshuffle factor (the
    app would tile at sizes the graph cannot take), the architecture missing ``unshuffle`` (``--init-from``
    could not rebuild the U-Net), or the graph differing from torch."""
    onnx_path, run_dir = exported
    card = read_card(onnx_path)
    assert card.size_multiple == 4 and card.attention_downsample == 4 and attention_downsample(card) == 4
    assert card.architecture["unshuffle"] == 2 and card.schema_version == SCHEMA_VERSION
    report = verify(onnx_path, run_dir)
    assert report.ok, report.failures


def test_the_app_runs_the_low_resolution_model_as_torch_does(exported: tuple[Path, Path]) -> None:
    """Through the core pipeline (the untrusted-model checks, padding, tiling): the output is what the torch
    U-Net rebuilt from the file computes on the bicubic condition, plus that condition (a residual model).
    Mutations caught: DepthToSpace in the other channel order, the unshuffle missing from the card's
    size multiple, the residual not added back."""
    model = OnnxDenoiser(exported[0], "cpu")
    lr = np.random.default_rng(0).uniform(0, 1, (13, 21, 3)).astype(np.float32)
    image = run(lr, RefineOptions(method="regression", seed=0), None, model).image
    assert image.shape == (52, 84, 3)
    unet, _ = load_unet(exported[0])
    lr_up = torch.from_numpy(to_model(upscale(lr, 4)))
    with torch.no_grad():
        expected = from_model((unet(lr_up) + lr_up).numpy())
    assert float(np.abs(expected - from_model(lr_up.numpy())).max()) > 0.01  # the model does change the image
    np.testing.assert_allclose(image, expected, atol=2e-4)
