"""The Self-ensemble setting in the app, with real widgets: a user's choice reaches the runs (the Regression pane
here; the SR3 chain's regression anchor in tests/core/test_self_ensemble.py) and is remembered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_scale_and_estimate import run_and_wait
from test_window import load

from sr3_desktop.qt.settings import SettingsStore


def test_the_self_ensemble_choice_reaches_the_runs_and_is_remembered(window: Any, qtbot: Any, sample_image: Path,
                                                                     settings_path: Path) -> None:
    """Mutations caught: the panel not collecting the choice, the run controller not passing it on (one
    regression pass each), or the store dropping it."""
    load(window, qtbot, sample_image)
    combo = window.settings_panel.ensemble
    assert [combo.itemText(i) for i in range(combo.count())] == ["Off", "2× (slower)", "4× (slower)", "8× (slower)"]
    run_and_wait(window, qtbot)
    plain = {m: r.steps for m, r in window.controller.model.results.items()}
    combo.setCurrentIndex(combo.findData(4))
    qtbot.waitUntil(lambda: window.controller.model.settings.ensemble == 4, timeout=5000)
    run_and_wait(window, qtbot)
    results = window.controller.model.results
    assert results["regression"].steps == 4 == plain["regression"] + 3
    # the fixture's SR3 starts from bicubic and is conditioned on it: no regression pass, and a note says so
    assert results["sr3"].steps == plain["sr3"] and "self-ensemble does nothing" in " ".join(results["sr3"].notes)
    assert SettingsStore(settings_path).load().ensemble == 4
