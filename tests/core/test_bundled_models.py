"""The shipped models: present, with full cards, and they upscale through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr3_desktop import cli
from sr3_desktop.core.model_files import folders
from sr3_desktop.core.model_files import registry as models
from sr3_desktop.core.model_files.card import read_card

BUNDLED = Path(folders.BUNDLED_DIR)


@pytest.mark.parametrize(("file", "kind"), [("sr3-photo-4x.onnx", "sr3"), ("regression-photo-4x.onnx", "regression")])
def test_bundled_model_has_a_full_card(file: str, kind: str) -> None:
    path = BUNDLED / file
    assert path.is_file() and path.stat().st_size < 50 * 2**20
    card = read_card(path)
    assert (card.kind, card.scale, card.target) == (kind, 4, "residual")
    assert "lomiri-wallpapers" in card.training["credits"] and card.training["steps"] > 1000
    assert card.description
    evaluation = card.metrics["evaluation"]["results"]  # the exporter's held-out evaluation
    assert evaluation["bicubic"]["psnr_y"] > 20 and kind in {name.split("-")[0] for name in evaluation}
    if kind == "sr3":
        assert "quality" in card.preset_names() and card.default_preset in card.preset_names()
        quality = card.preset("quality")
        # the paper's algorithm: the full DDPM chain from pure noise (its last prediction may be finished, as the
        # short presets' are, by the texture cap and back-projection the search chose)
        assert (quality.start, quality.strength, quality.sampler) == ("noise", 1.0, "ddpm") and quality.steps >= 20
        default = card.preset(card.default_preset)
        assert default.steps <= 2 and default.network_evaluations <= 3  # <= 2 SR3 passes + 1 regression pass
        for preset in card.inference_presets.values():  # each carries its measured held-out scores
            assert preset.description and {"psnr_y", "gmsd", "grain", "spectral_gap"} <= set(preset.scores)
        assert "jpeg75_psnr_y" in default.scores  # the default's score on JPEG inputs, too
        assert card.metrics["schedule_search"]["candidates"] > 0


def test_defaults_are_the_bundled_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SR3_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SR3_DESKTOP_BUNDLED_DIR", raising=False)
    for kind, name in (("sr3", "sr3-photo-4x.onnx"), ("regression", "regression-photo-4x.onnx")):
        entry = models.default_model(kind)
        assert entry is not None and entry.bundled and entry.path.name == name


def test_cli_upscales_with_the_bundled_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SR3_DESKTOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SR3_DESKTOP_BUNDLED_DIR", raising=False)
    source = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((12, 20, 3)) * 255).astype(np.uint8)).save(source)
    for method in ("sr3", "regression"):
        out = tmp_path / f"{method}.png"
        assert cli.main(["upscale", str(source), "-o", str(out), "--method", method, "--quiet"]) == 0
        assert Image.open(out).size == (80, 48)
