"""A one-pass upscaler exported by torch in the test, as Real-ESRGAN's relatives are (PReLU, PixelShuffle,
a nearest-upsampled residual: SRVGGNetCompact's layers), runs through the app's CLI like the PyTorch module."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sr3_desktop import cli
from sr3_desktop.core.model_files.denoiser import clear_cache


class TinyCompact(nn.Module):
    """SRVGGNetCompact in small: conv + PReLU body, PixelShuffle, plus the nearest-upsampled input ([0, 1])."""

    def __init__(self, scale: int = 2, features: int = 8) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(nn.Conv2d(3, features, 3, padding=1), nn.PReLU(features),
                                  nn.Conv2d(features, features, 3, padding=1), nn.PReLU(features),
                                  nn.Conv2d(features, 3 * scale * scale, 3, padding=1))
        self.shuffle = nn.PixelShuffle(scale)
        with torch.no_grad():
            for module in self.body:
                if isinstance(module, nn.Conv2d):
                    module.weight.mul_(0.1)  # a small detail on top of the upsample, as a trained one adds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")
        return self.shuffle(self.body(x)) + base


def test_a_torch_exported_one_pass_model_matches_its_pytorch_output(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Through `upscale --method regression --model FILE` the image is the module's own output to 8-bit rounding.
    Mutations caught: PRelu missing from the operator allowlist (the file is refused), the output decoded in the
    wrong range, or the LR image bicubic-upsampled before the network (the output size would be 4x)."""
    monkeypatch.setenv("SR3_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SR3_DESKTOP_BUNDLED_DIR", str(tmp_path / "bundled"))
    (tmp_path / "bundled").mkdir()
    clear_cache()
    torch.manual_seed(0)
    net = TinyCompact().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 3, 16, 16),), buffer, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "h2", 3: "w2"}},
                          opset_version=17, dynamo=False)
    model = tmp_path / "tiny-compact-2x.onnx"
    model.write_bytes(buffer.getvalue())
    rng = np.random.default_rng(0)
    lr = (rng.random((18, 26, 3)) * 255).astype(np.uint8)
    source = tmp_path / "photo.png"
    Image.fromarray(lr).save(source)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["upscale", str(source), "-o", str(tmp_path / "up.png"), "--method", "regression", "--model",
                     str(model)], out, err)
    assert code == 0, err.getvalue()
    assert "a one-pass 2x upscaler, input range [0, 1]" in err.getvalue()
    with torch.no_grad():
        expected = net(torch.from_numpy(lr.astype(np.float32) / 255).permute(2, 0, 1)[None]).clamp(0, 1)
    reference = np.round(expected[0].permute(1, 2, 0).numpy() * 255)
    ours = np.asarray(Image.open(tmp_path / "up.png"), dtype=np.float64)
    assert ours.shape == (36, 52, 3)
    assert np.abs(ours - reference).max() <= 1.0
