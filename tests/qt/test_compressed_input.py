"""A JPEG input in the app, with real widgets: the card's compressed preset stands in for the default, says so,
and never overrides a preset the user chose (the core's rule in tests/core/test_compressed_preset.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from test_scale_and_estimate import run_and_wait
from test_window import load


def write_photo(path: Path, **save: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(5).integers(0, 256, (24, 28, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **save)
    return path


def test_a_jpeg_runs_the_compressed_preset_in_place_of_the_default(make_window: Any, installed_models: Any,
                                                                   qtbot: Any, tmp_path: Path) -> None:
    """Mutations caught: the run controller not passing the loaded file's quality on, or naming the default
    preset (which would keep it for JPEGs too), or the hint not telling the user."""
    window = make_window(output_dir=str(tmp_path / "out"), preset="balanced", seed_locked=True, seed=7)
    assert "A JPEG saved at quality 90 or less runs Compressed instead." in window.settings_panel.preset_hint.text()
    results = window.controller.model.results
    load(window, qtbot, write_photo(tmp_path / "in" / "photo.jpg", quality=75))
    run_and_wait(window, qtbot)
    jpeg = results["sr3"]
    assert (jpeg.preset, jpeg.steps) == ("compressed", 3 + 1)  # 3 SR3 steps over one regression pass
    assert any("saved as JPEG at quality 75" in note for note in jpeg.notes)
    load(window, qtbot, write_photo(tmp_path / "in" / "photo.png"))
    run_and_wait(window, qtbot)
    assert (results["sr3"].preset, results["sr3"].steps) == ("balanced", 8 + 1)
    panel = window.settings_panel
    panel.preset.setCurrentIndex(panel.preset.findData("quality"))
    qtbot.waitUntil(lambda: window.controller.model.settings.preset == "quality", timeout=5000)
    assert "JPEG" not in panel.preset_hint.text()
    load(window, qtbot, write_photo(tmp_path / "in" / "other.jpg", quality=60))
    run_and_wait(window, qtbot)
    assert results["sr3"].preset == "quality"  # the user's choice stands
