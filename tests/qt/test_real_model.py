"""End to end with real exported models: the exporter's tiny preset, trained a few steps and exported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_window import digest, load

pytest.importorskip("torch")  # the exporter trains the tiny models


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from model_factory import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("exported"))


@pytest.fixture
def real_window(make_window: Any, exported_models: tuple[Path, Path], tmp_path: Path) -> Any:
    from sr3_desktop.core.model_files import registry as models

    sr3 = models.import_model(exported_models[0])
    regression = models.import_model(exported_models[1])
    return make_window(sr3_model=sr3.name, regression_model=regression.name, preset="fast",
                       output_dir=str(tmp_path / "out"), seed_locked=True, seed=1)


def test_an_exported_model_refines_compares_and_saves(real_window: Any, qtbot: Any, sample_image: Path) -> None:
    window, c = real_window, real_window.controller
    assert c.model.sr3_entry().name == "Tiny SR3 (test)" and c.model.regression_entry().name == "Tiny regression (test)"
    load(window, qtbot, sample_image)
    seen: list[str] = []
    window.preview_painted.connect(lambda _s: seen.append(digest(window.compare.panes["sr3"].layer.array)))
    with qtbot.waitSignals([c.preview_shown, c.result_shown, c.run_finished], order="simple", timeout=120_000):
        window.run_action.trigger()
    assert len(set(seen)) >= 2
    assert set(c.model.results) == {"bicubic", "regression", "sr3"}
    window.compare.show_all_panes()
    assert all(window.compare.panes[m].has_image() for m in ("input", "bicubic", "regression", "sr3"))
    with qtbot.waitSignal(c.saved, timeout=20_000) as saved:
        window.save_action.trigger()
    with Image.open(saved.args[0]) as image:
        assert image.size == (96, 64)
        assert np.asarray(image).std() > 0
