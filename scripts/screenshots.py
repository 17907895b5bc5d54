"""Render the app's main states to PNG, offscreen: ``python scripts/screenshots.py [--out docs/screenshots]``.

States: empty (drop zone), opened (the photo on screen before any run: input and instant bicubic),
refining mid-way (live preview), compare (four panes + metrics against a reference), wipe
(before/after, zoomed in), batch (a folder with a skipped and a broken file), compare in the
dark theme, and the estimate prompt (a larger photo with the quality preset: the app asks first).
With --onepass FILE.onnx (a one-pass upscaler without a card, e.g. Real-ESRGAN: made by
``python ../shared/peers/realesrgan.py --onnx FILE.onnx``), it is imported too and ``compare-onepass``
shows bicubic, regression, that model and SR3 side by side.
Models: the installed ones (bundled first) unless --sr3 / --regression name .onnx files. Settings, logs
and imports go to a temporary folder, never the user's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
WORK = Path(tempfile.mkdtemp(prefix="sr3-screenshots-"))
os.environ["SR3_DESKTOP_DATA_DIR"] = str(WORK / "data")  # before any sr3_desktop import reads it

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZE = (1480, 920)
SAMPLES = 2  # K > 1: the metrics panel shows the uncertainty image


def spin(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(signal: Any, timeout_s: float = 300, until: Callable[..., bool] | None = None) -> list[Any]:
    """Run the event loop until ``signal`` fires (and ``until(*args)`` holds); returns its arguments."""
    got: list[Any] = []
    loop = QEventLoop()

    def fired(*args: Any) -> None:
        if until is None or until(*args):
            got[:] = list(args) or [None]
            loop.quit()

    signal.connect(fired)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(fired)
    if not got:
        raise SystemExit(f"timed out waiting for {signal}")
    return got


def photo(side: tuple[int, int]) -> Image.Image:
    """A real photo when scikit-image's sample data is installed, else a synthetic scene."""
    try:
        from skimage import data

        cat = Image.fromarray(np.asarray(data.chelsea())).crop((20, 0, 452, 300))
        return cat.resize(side, Image.Resampling.LANCZOS)
    except ImportError:
        width, height = side
        x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
        sky = np.stack([0.35 + 0.4 * y, 0.55 + 0.3 * y, 0.95 - 0.2 * y], axis=2)
        hills = (y > 0.55 + 0.12 * np.sin(7 * x)).astype(np.float32)[..., None]
        scene = sky * (1 - hills) + hills * np.stack([0.2 + 0.2 * x, 0.55 + 0.1 * np.sin(30 * x * y), 0.25 + 0 * x], 2)
        return Image.fromarray((np.clip(scene, 0, 1) * 255).astype(np.uint8))


def prepare_inputs(scale: int) -> tuple[Path, Path, Path]:
    """(low-res input, its high-res reference, a batch folder)."""
    inputs = WORK / "inputs"
    inputs.mkdir(parents=True)
    hr = photo((96 * scale, 64 * scale))
    hr_path, lr_path = inputs / "cat_reference.png", inputs / "cat.png"
    hr.save(hr_path)
    hr.resize((96, 64), Image.Resampling.BICUBIC).save(lr_path)
    batch = inputs / "holiday"
    for index, name in enumerate(("beach.png", "day2/harbour.jpg", "day2/market.png", "day3/sunset.webp")):
        target = batch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        hr.rotate(index * 7, resample=Image.Resampling.BICUBIC).resize((40, 28), Image.Resampling.BICUBIC).save(target)
    (batch / "day3" / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n broken download")
    return lr_path, hr_path, batch


def install_models(args: argparse.Namespace) -> None:
    from sr3_desktop.core.model_files import registry as models

    for path in (args.sr3, args.regression, args.onepass):
        if path:
            models.import_model(path)
    kinds = {e.card.kind for e in models.list_models()}
    if "sr3" not in kinds:
        raise SystemExit("no SR3 model is installed or bundled; pass --sr3 MODEL.onnx (and --regression)")


def grab(window: Any, out: Path, name: str, dialog: Any = None) -> None:
    """The window (with ``dialog`` drawn over its centre, as a window-modal dialog shows on screen)."""
    spin(150)
    path = out / f"{name}.png"
    picture = window.grab()
    if dialog is not None:
        from PySide6.QtGui import QPainter

        shot = dialog.grab()
        painter = QPainter(picture)
        painter.drawPixmap((picture.width() - shot.width()) // 2, (picture.height() - shot.height()) // 3, shot)
        painter.end()
    picture.save(str(path))
    print(f"wrote {path}")


def wait_for_dialog(name: str, timeout_s: float = 120) -> Any:
    from PySide6.QtWidgets import QApplication, QMessageBox

    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()
                 and w.objectName() == name]
        if boxes:
            return boxes[0]
        spin(100)
    raise SystemExit(f"timed out waiting for the dialog {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--sr3", type=Path, help="an exported SR3 .onnx to use instead of the bundled one")
    parser.add_argument("--regression", type=Path, help="an exported regression .onnx")
    parser.add_argument("--onepass", type=Path, help="a one-pass upscaler .onnx (no card needed) for compare-onepass")
    parser.add_argument("--preset", default="", help="preset for the refining and compare shots (default: card's)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    install_models(args)

    from sr3_desktop.qt import theme
    from sr3_desktop.qt.app import application, create_window
    from sr3_desktop.qt.settings import SettingsStore

    os.environ[theme.THEME_ENV] = "light"
    app = application()
    store = SettingsStore(WORK / "settings.ini")
    settings = store.load()
    settings.output_dir, settings.seed, settings.seed_locked = str(WORK / "out"), 2023, True
    settings.preset, settings.samples = args.preset, SAMPLES
    store.save(settings)
    window = create_window([], store)
    window.resize(*SIZE)
    c = window.controller
    wait_for(c.models_changed) if not c.model.model_entries else None
    scale = c.model.model_scale()
    lr_path, hr_path, batch = prepare_inputs(scale)
    grab(window, args.out, "empty")

    # Opened: the photo is on screen at once, before any run (bicubic beside it in a moment).
    window.compare.set_mode("side")
    c.open_paths([str(lr_path)])
    wait_for(c.image_loaded)
    if not window.compare.panes["bicubic"].has_image():
        wait_for(c.bicubic_shown)
    grab(window, args.out, "opened")

    # Refining mid-way: input next to the live preview of the noisy state y_t.
    window.compare.set_visible_panes(["input", "sr3"])
    window.compare.set_mode("side")
    window.compare.set_preview_kind("y_t")
    c.runs.set_preview_kind("y_t")
    started = time.perf_counter()
    c.run()
    # halfway through the first of the K chains
    wait_for(c.preview_shown, until=lambda step: c.model.last_step is not None
             and step >= c.model.last_step.total // (2 * SAMPLES))
    grab(window, args.out, "refining")
    if c.slot.busy:  # a fast preset may have finished while the preview was grabbed
        wait_for(c.run_finished)
    print(f"run took {time.perf_counter() - started:.1f} s")

    # Compare: all four panes, metrics against the high-resolution original.
    c.runs.set_preview_kind("pred_y0")
    window.compare.set_preview_kind("pred_y0")
    c.metrics.load_reference(hr_path)
    wait_for(c.metrics_ready, until=lambda *_: all(r.psnr is not None for r in c.model.metrics.values())
             and len(c.model.metrics) == len(c.model.results))
    window.compare.show_all_panes()
    grab(window, args.out, "compare")
    if args.onepass:  # SR3, regression and the imported one-pass model side by side
        window.compare.set_visible_panes(["bicubic", "regression", "onepass", "sr3"])
        grab(window, args.out, "compare-onepass")

    # Wipe: bicubic | SR3 at 200 %.
    window.compare.set_mode("wipe")
    window.compare.sync.set_zoom(2.0)
    window.compare.wipe.set_position(0.5)
    grab(window, args.out, "wipe")

    # Dark theme, same state.
    os.environ[theme.THEME_ENV] = "dark"
    theme.apply_theme(app)
    window.compare.show_all_panes()
    window.compare.fit()
    grab(window, args.out, "compare-dark")
    os.environ[theme.THEME_ENV] = "light"
    theme.apply_theme(app)

    # Batch: a folder, one output already there, one broken file.
    existing = WORK / "out" / "holiday" / "day2" / "market.png"
    existing.parent.mkdir(parents=True, exist_ok=True)
    existing.write_bytes(b"an earlier result")
    panel = window.settings_panel  # through the widgets, so the panel shows what the batch uses
    if panel.preset.findData("fast") >= 0:
        panel.preset.setCurrentIndex(panel.preset.findData("fast"))
    panel.samples.setValue(1)
    c.open_paths([str(batch)])
    wait_for(c.batch_ready)
    c.run()
    wait_for(c.batch_finished)
    grab(window, args.out, "batch")

    # The estimate prompt: a 1280 x 800 photo with the quality preset (the paper's full chain) would take
    # long on this computer, so the app asks first and offers the fastest preset or regression.
    from sr3_desktop.qt.dialogs import LONG_RUN_DIALOG_NAME

    street = WORK / "inputs" / "street.png"
    photo((1280, 800)).save(street)
    c.open_paths([str(street)])
    wait_for(c.image_loaded)
    if panel.preset.findData("quality") >= 0:
        panel.preset.setCurrentIndex(panel.preset.findData("quality"))
    window.compare.set_mode("single")
    c.run()
    box = wait_for_dialog(LONG_RUN_DIALOG_NAME)
    grab(window, args.out, "estimate-prompt", dialog=box)
    next(b for b in box.buttons() if b.objectName() == "choice-cancel").click()

    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
