"""The Grain setting in the app, with real widgets: "Preset" (the spin box's minimum) leaves the preset's grain,
0 turns it off, any other value reaches the SR3 chain's options; the choice is remembered, and a hand-edited
value that is not a number >= 0 reads as "Preset"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_window import load

from sr3_desktop.qt.settings import SettingsStore


def test_the_grain_choice_reaches_the_chain_and_is_remembered(window: Any, qtbot: Any, sample_image: Path,
                                                              settings_path: Path) -> None:
    """Mutations caught: the panel not collecting the value, the minimum not read as the preset's (options get
    -0.25), 0 read as the preset's (no way to turn grain off), the run controller dropping it, the store losing
    it, a NaN from the file kept."""
    load(window, qtbot, sample_image)
    box, model = window.settings_panel.grain, window.controller.model
    card = model.sr3_entry().card
    assert box.value() == box.minimum() and box.text().startswith("Preset (")
    assert window.controller.runs.refine_options(card, seed=1).grain is None
    box.setValue(2.0)
    qtbot.waitUntil(lambda: model.settings.grain == 2.0, timeout=5000)
    assert window.controller.runs.refine_options(card, seed=1).grain == 2.0
    box.setValue(0.0)
    qtbot.waitUntil(lambda: model.settings.grain == 0.0, timeout=5000)
    assert window.controller.runs.refine_options(card, seed=1).grain == 0.0
    assert SettingsStore(settings_path).load().grain == 0.0
    box.setValue(box.minimum())
    qtbot.waitUntil(lambda: model.settings.grain == -1.0, timeout=5000)
    assert window.controller.runs.refine_options(card, seed=1).grain is None
    settings_path.write_text("[run]\ngrain=nan\n")
    assert SettingsStore(settings_path).load().grain == -1.0
