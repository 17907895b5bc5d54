"""User settings: a plain dataclass, persisted with QSettings (INI file when a path is given)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from sr3_desktop.core.upscale.self_ensemble import ENSEMBLE_SIZES
from sr3_desktop.qt.paths import APP_NAME, ORGANISATION, default_output_dir, settings_file

CUSTOM_PRESET = "custom"
MAX_SEED = 2**31 - 1
"""Seeds are 0 .. 2^31 - 1 (a spin box's int range)."""
PREVIEW_KINDS = ("pred_y0", "y_t")
MAX_RECENT = 10


@dataclass
class AppSettings:
    """Everything the user can set; ``0`` / ``""`` mean "automatic" where noted."""

    sr3_model: str = ""
    """Name of the SR3 model; "" picks the default one."""
    regression_model: str = ""
    """Name of the regression model used for the compare pane; "" picks the default one."""
    preset: str = ""
    """fast / balanced / quality (from the card), "custom" (use ``custom_steps``), "" = the card's default."""
    custom_steps: int = 25
    strength: float = 0.0
    """Where the chain starts, as a fraction of the training chain; 0 = the preset's own strength."""
    detail: float = 0.0
    """SR3's added detail amplified up to this factor where the texture cap leaves room; 0 = the preset's."""
    grain: float = -1.0
    """Photo grain where SR3's output is smoother than this many times the input's noise (``upscale.grain_floor``);
    0 = none, below 0 = the preset's."""
    seed: int = 0
    seed_locked: bool = False
    """Unlocked: every run draws a new seed (shown, so it can be locked to reproduce a result)."""
    samples: int = 1
    """K: samples averaged into the result; K > 1 also gives an uncertainty image."""
    ensemble: int = 1
    """Self-ensemble of the regression (and one-pass) network: 1, 2, 4 or 8 flips and transposes averaged."""
    tile: int = 0
    """Tile side in output pixels; 0 = automatic from a memory budget."""
    output_scale: int = 0
    """The results' scale (2, 3, 4 ...); 0 = the SR3 model's own. The model runs at its own scale and the
    result is resampled down (``core.upscale.flow.OutputSize``)."""
    device: str = "auto"
    output_dir: str = ""
    output_format: str = "png"
    auto_compare: bool = True
    """Compute the bicubic and regression panes with every run."""
    preview_kind: str = "pred_y0"
    """What the live preview shows: the predicted clean image (pred_y0) or the noisy state (y_t)."""
    preview_every: int = 1
    """Show every k-th step in the live preview."""
    recent_files: list[str] = field(default_factory=list)

    def output_folder(self) -> Path:
        return Path(self.output_dir) if self.output_dir else default_output_dir()

    def add_recent(self, path: str) -> None:
        self.recent_files = [path] + [p for p in self.recent_files if p != path]
        del self.recent_files[MAX_RECENT:]


class SettingsStore:
    """Reads and writes :class:`AppSettings` and window state.

    ``path`` selects an INI file (tests pass one under ``tmp_path``); without it the file under
    ``SR3_DESKTOP_DATA_DIR`` is used when that is set, else the platform's native store.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        path = path or settings_file()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.qsettings = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self.qsettings = QSettings(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, ORGANISATION, APP_NAME)
        self.path = path

    def load(self) -> AppSettings:
        settings = AppSettings()
        for item in fields(AppSettings):
            key = f"run/{item.name}"
            if not self.qsettings.contains(key):
                continue
            default = getattr(settings, item.name)
            value = _convert(self.qsettings.value(key), default)
            if value is not None:
                setattr(settings, item.name, value)
        if settings.preview_kind not in PREVIEW_KINDS:
            settings.preview_kind = PREVIEW_KINDS[0]
        if settings.ensemble not in ENSEMBLE_SIZES:  # a hand-edited file: one pass
            settings.ensemble = 1
        if not (math.isfinite(settings.grain) and settings.grain >= 0.0):  # NaN, inf or "the preset's"
            settings.grain = -1.0
        return settings

    def save(self, settings: AppSettings) -> None:
        for item in fields(AppSettings):
            value = getattr(settings, item.name)
            if isinstance(value, list):
                value = list(value)
            self.qsettings.setValue(f"run/{item.name}", value)
        self.qsettings.sync()

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)
        self.qsettings.sync()

    def window(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry = self.qsettings.value("window/geometry")
        state = self.qsettings.value("window/state")
        return (
            geometry if isinstance(geometry, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
        )


def _convert(raw: Any, default: Any) -> Any:
    """QSettings' INI backend returns strings; turn them back into the field's type (None if bad)."""
    try:
        if isinstance(default, bool):
            return raw if isinstance(raw, bool) else str(raw).lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, list):
            if raw is None or raw == "":
                return []
            return [str(v) for v in raw] if isinstance(raw, (list, tuple)) else [str(raw)]
        return "" if raw is None else str(raw)
    except (TypeError, ValueError):
        return None
