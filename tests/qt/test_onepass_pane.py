"""The compare against an imported one-pass upscaler: SR3, regression and the imported model side by side
(issue 20). Real widgets, offscreen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from PIL import Image
from PySide6.QtCore import Qt
from qt_helpers import build_onepass


def test_an_imported_one_pass_model_gets_a_pane_of_its_own_named_after_it(window: Any, qtbot: Any, tmp_path: Path,
                                                                         sample_image: Path) -> None:
    """Models ▸ Import… (the controller's import, which the dialog calls) of a card-less one-pass file, then a run
    with compare on. Mutations caught: the worker skipping the "onepass" method (its pane stays empty), the pane
    and the metrics column keeping the generic label, the run feeding it the bicubic upsample (the wrong size)
    or the image in [-1, 1] (its pane would not be the nearest upsample of the sharpened input)."""
    net = tmp_path / "tiny-esrgan-4x.onnx"
    onnx.save(build_onepass(), str(net))
    with qtbot.waitSignal(window.controller.models_changed, timeout=20_000):
        window.controller.models.import_model(net)
    panes = window.compare.panes
    assert panes["onepass"].title == "tiny-esrgan-4x"
    assert window.metrics_panel.table.horizontalHeaderItem(2).text() == "tiny-esrgan-4x"
    window.controller.open_paths([str(sample_image)])
    qtbot.waitUntil(lambda: panes["bicubic"].has_image(), timeout=10_000)
    with qtbot.waitSignal(window.controller.run_finished, timeout=30_000):
        window.run_action.trigger()
    qtbot.keyClick(window, Qt.Key.Key_4)  # all panes
    for method in ("input", "bicubic", "regression", "onepass", "sr3"):
        assert panes[method].isVisible() and panes[method].has_image(), method
    onepass = panes["onepass"].layer.array
    assert onepass.shape == (64, 96, 3)
    with Image.open(sample_image) as image:
        lr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    blocks = onepass.reshape(16, 4, 24, 4, 3)
    assert np.ptp(blocks, axis=(1, 3)).max() < 1e-6  # a nearest upsample: every 4 x 4 block is one colour
    assert 0 < np.abs(blocks[:, 0, :, 0] - lr).max() < 0.2  # of the sharpened input, in [0, 1]
    arrays = [panes[m].layer.array.tobytes() for m in ("bicubic", "regression", "onepass", "sr3")]
    assert len(set(arrays)) == 4
