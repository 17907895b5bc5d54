"""The output stage at the full resolution (``UNetConfig.full_res_head``) after the depth-to-space.

A bare depth-to-space writes each of the 4 x 4 phases of an LR pixel's cell with its own output channel, which
laid SR3's texture out in a 4 px grid (docs/models.md, sixth sitting); the stage writes every pixel with the
same weights. It is grown onto a committed model by ``train --init-from`` and starts as that model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from model_factory import make_photo_folder, train_tiny

from exporter.config import ConfigError, TrainConfig
from exporter.export.export_onnx import export
from exporter.export.verify import verify
from exporter.training.onnx_weights import load_unet
from exporter.unet import UNet, UNetConfig
from sr3_desktop.core.model_files.card import read_card

BODY = UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, unshuffle=4)


def test_a_grown_head_starts_as_its_parent_and_works_at_the_full_resolution() -> None:
    """Loaded with the parent's weights, the grown U-Net computes the parent's output exactly; once its last
    convolution is trained it changes it, from features at the full resolution. Mutations caught: the head's
    last convolution not zero-initialised (the grown model starts elsewhere), the head run before the
    depth-to-space (it would see 1/4 of the rows), the head not given lr_up and y_t at the full resolution."""
    parent, grown = UNet(BODY), UNet(replace(BODY, full_res_head=8))
    missing = grown.load_state_dict(parent.state_dict(), strict=False).missing_keys
    assert missing and all(name.startswith("head_") for name in missing)
    seen: list[tuple[int, ...]] = []
    grown.head_conv.register_forward_hook(lambda _m, inputs, _o: seen.append(tuple(inputs[0].shape)))
    x, y_t = torch.randn(2, 3, 32, 48), torch.randn(2, 3, 32, 48)
    level = torch.rand(2)
    with torch.no_grad():
        assert torch.equal(grown(x, y_t, level), parent(x, y_t, level))
        assert seen[0] == (2, 8 + 6, 32, 48)
        torch.nn.init.normal_(grown.head_out.weight, std=0.1)
        changed = grown(x, y_t, level) - parent(x, y_t, level)
    assert float(changed.abs().mean()) > 1e-3


def test_the_head_needs_an_unshuffle() -> None:
    """Mutation caught: the check dropped (a head on a full-resolution U-Net would silently do nothing)."""
    with pytest.raises(ConfigError, match="full_res_head"):
        TrainConfig(unet=UNetConfig(unshuffle=1, full_res_head=8)).validate()


@pytest.fixture(scope="module")
def grown_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    work = tmp_path_factory.mktemp("head")
    photos = make_photo_folder(work / "photos")
    parent_run = train_tiny(photos, work / "parent", "--kind", "sr3", "--unshuffle", "2")
    parent = work / "parent.onnx"
    export(parent_run, parent, name="Tiny parent (test)")
    grown_dir = train_tiny(photos, work / "grown", "--kind", "sr3", "--init-from", str(parent),
                           "--full-res-head", "4", "--lr", "0.01")
    grown = work / "grown.onnx"
    export(grown_dir, grown, name="Tiny grown (test)")
    return parent, grown, grown_dir


def test_init_from_grows_the_head_onto_a_model_and_the_export_rebuilds_it(grown_run: tuple[Path, Path, Path]) -> None:
    """``--init-from`` a model without the stage, asking for one: the body's weights come from the model and
    the run trains the stage; the card records it, so ``--init-from`` and ``verify`` rebuild the same network.
    Mutations caught: ``start_from`` loading strictly (the run stops), ``full_res_head`` missing from the card
    (parity fails: the rebuilt U-Net has no head), the stage not grown (the card says 0)."""
    parent, grown, grown_dir = grown_run
    assert read_card(grown).architecture["full_res_head"] == 4
    assert read_card(parent).architecture["full_res_head"] == 0
    report = verify(grown, grown_dir)
    assert report.ok, report.failures
    model, _ = load_unet(grown)
    parent_model, _ = load_unet(parent)
    assert model.config.full_res_head == 4 and float(model.head_out.weight.detach().abs().max()) > 0.0
    assert model.input_conv.weight.shape == parent_model.input_conv.weight.shape
    lineage = read_card(grown).training["lineage"]
    assert lineage and lineage[-1]["file"] == parent.name
