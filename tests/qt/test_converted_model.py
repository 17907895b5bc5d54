"""A converted 8x model of the public SR3 implementation (tests/fixtures/sr3-reference-8x) in the real window:
it runs like any other, the compare's bicubic is at 8x, and the regression pane says that no regression
model fits this scale (the installed test regression model is 4x)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from qt_helpers import write_image

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sr3-reference-8x"


@pytest.fixture(scope="module")
def converted_8x(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from exporter.convert.command import convert

    out = tmp_path_factory.mktemp("converted") / "face-8x.onnx"
    convert(FIXTURE / "checkpoint" / "I1000_E5_gen.pth", FIXTURE / "config.json", out, name="Face 8x")
    return out


def test_an_8x_converted_model_runs_in_the_compare_beside_bicubic_at_8x(
        make_window: Any, model_files: tuple[Path, Path], converted_8x: Path, qtbot: Any, tmp_path: Path) -> None:
    """Catches: the compare's regression picked without regard to scale (a 4x regression pane beside an 8x
    SR3), the placeholder not naming the scale, or the bicubic pane at another scale than the model's."""
    from sr3_desktop.core.model_files import registry as models

    models.import_model(converted_8x)
    models.import_model(model_files[1])  # the 4x test regression model
    window = make_window(output_dir=str(tmp_path / "out"), preset="fast", seed_locked=True, seed=7,
                         sr3_model="Face 8x")
    image = write_image(tmp_path / "inputs" / "face16.png", (16, 16))
    with qtbot.waitSignal(window.controller.image_loaded, timeout=10_000):
        window.controller.open_paths([str(image)])
    assert window.compare.panes["regression"].placeholder == "No regression model fits 8x (installed: 4x)"
    with qtbot.waitSignal(window.controller.run_finished, timeout=60_000):
        window.run_action.trigger()
    results = window.controller.model.results
    assert sorted(results) == ["bicubic", "sr3"]
    assert results["sr3"].image.shape == results["bicubic"].image.shape == (128, 128, 3)
    assert window.compare.panes["regression"].placeholder == "No regression model fits 8x (installed: 4x)"
