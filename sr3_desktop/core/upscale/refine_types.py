"""What ``pipeline.refine`` takes and gives: RefineOptions in, RefineSteps out, the last with a RefineResult.

See CONTRIBUTING.md, "Core API". Import them from here (``pipeline`` runs them, it does not re-export them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from sr3_desktop.core.model_files.card import InferencePreset
from sr3_desktop.core.upscale.output_canvas import OutputCanvas

Method = Literal["bicubic", "regression", "onepass", "sr3"]
"""How an image is upscaled; the one declaration of the methods (the CLI's choices, the app's panes)."""
METHODS: tuple[str, ...] = get_args(Method)
"""In the order the app's compare shows them: the cheapest first, SR3 last."""
METHOD_LABELS: dict[str, str] = {"bicubic": "Bicubic", "regression": "Regression", "onepass": "One-pass model",
                                 "sr3": "SR3"}
"""What a user reads; a one-pass pane is titled with its model's name instead (``method_label``)."""
MODEL_METHODS: tuple[str, ...] = ("regression", "onepass", "sr3")
"""The methods that run a network (their model's card kind is the method's name)."""


def method_label(method: str, model_name: str | None = None) -> str:
    """The label of a method: the one-pass model's own name when it is known."""
    return model_name if method == "onepass" and model_name else METHOD_LABELS[method]


MAX_SAMPLES = 64


@dataclass(frozen=True)
class RefineOptions:
    """How to upscale one image (see CONTRIBUTING.md, "Core API")."""

    method: Method = "sr3"
    preset: str | None = None
    """None -> the card's default preset."""
    steps: int | None = None
    """Overrides the preset's step count."""
    strength: float | None = None
    """Overrides the preset's start strength (< 1 starts from a noised estimate)."""
    seed: int = 0
    samples: int = 1
    """K seeds (seed, seed + 1, ...) -> mean image and per-pixel std."""
    tile: int | None = None
    """Tile side in output pixels; None -> automatic from the device's memory budget."""
    preview_every: int = 1
    """Yield a RefineStep every k steps (and always the last one)."""
    back_projection: int | None = None
    """Iterations of y += up(LR - down(y)); None -> the preset's setting."""
    texture_gain: float | None = None
    """Detail: SR3's added detail amplified up to this factor where the preset's texture cap leaves room
    (< 1 damps it); None -> the preset's ``texture_gain``."""
    grain: float | None = None
    """The grain floor as a multiple of the input's noise (``upscale.grain_floor``; 0: none); None -> the
    preset's ``grain``."""
    ensemble: int = 1
    """Self-ensemble of the one-pass network (the regression model, SR3's regression anchor, or a one-pass
    model): the mean of its output over 1, 2, 4 or 8 flips and transposes of the input, at that many passes
    (``self_ensemble``); 1: one pass."""
    custom_preset: InferencePreset | None = None
    """An explicit recipe (the schedule search's candidates); when set, ``preset`` only names it."""
    input_quality: int | None = None
    """The quality the input was saved at as JPEG (``LoadedImage.jpeg_quality``); None: lossless or unknown.
    With no ``preset``, a compressed input runs the card's compressed preset (``run_models.preset_name``)."""


@dataclass(frozen=True)
class RefineResult:
    """The finished image and what it cost. Give ``output`` and ``spread`` as canvases or as arrays."""

    output: OutputCanvas
    """The image at output size (scale * input), in [0, 1]: in memory, or on disk when it is large."""
    spread: OutputCanvas | None
    """HW per-pixel standard deviation over the K samples (K > 1), else None."""
    method: str
    preset: str | None
    steps: int
    """Network evaluations spent (full-image evaluations, over all samples)."""
    seconds: float
    notes: tuple[str, ...] = ()
    """Things a user should know, e.g. a fallback from regression start to bicubic."""

    def __post_init__(self) -> None:
        for name in ("output", "spread"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                object.__setattr__(self, name, OutputCanvas.of(value))

    @property
    def image(self) -> np.ndarray:
        """HWC [0, 1] float32 at output size (an output on disk is read into memory here)."""
        return self.output.image

    @property
    def uncertainty(self) -> np.ndarray | None:
        """HW float32 per-pixel std over the K samples, or None."""
        return self.spread.image if self.spread is not None else None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image."""
        return self.output.width, self.output.height


class _LazyImage:
    """An image made on first use and kept; the lock makes a second thread wait instead of redoing it.

    The maker must be pure (it reads arrays nobody writes any more), so the image is the same on
    whichever thread asks first: the worker that yields it or the UI thread that shows it.
    """

    __slots__ = ("_lock", "_make", "_value")

    def __init__(self, source: np.ndarray | Callable[[], np.ndarray]) -> None:
        self._lock = threading.Lock()
        self._make: Callable[[], np.ndarray] | None = None
        self._value: np.ndarray | None = None
        if callable(source):
            self._make = source
        else:
            self._value = source

    @property
    def ready(self) -> bool:
        return self._value is not None

    def get(self) -> np.ndarray:
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                assert self._make is not None
                self._value = self._make()
                self._make = None  # drop the model-space plane the maker held
            return self._value


class RefineStep:
    """One step of the chain: ``step`` of ``total``, the preview images, and on the last step ``result``.

    ``y_t`` and ``pred_y0`` may be given as arrays or as functions that make them: previews are then
    built only when someone reads them (the CLI never does), once, on whichever thread reads first.
    """

    __slots__ = ("_pred_y0", "_y_t", "result", "step", "total")

    def __init__(
        self,
        step: int,
        total: int,
        y_t: np.ndarray | Callable[[], np.ndarray],
        pred_y0: np.ndarray | Callable[[], np.ndarray],
        result: RefineResult | None = None,
    ) -> None:
        # Read-only once made (as the frozen dataclass it replaces): consumers on two threads share it.
        fields = {"step": step, "total": total, "result": result,
                  "_y_t": _LazyImage(y_t), "_pred_y0": _LazyImage(pred_y0)}
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    step: int
    """1..total; the last one has step == total and carries ``result``."""
    total: int
    result: RefineResult | None
    _y_t: _LazyImage
    _pred_y0: _LazyImage

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"RefineStep is read-only: cannot set {name!r}")

    @property
    def y_t(self) -> np.ndarray:
        """The current noisy state as an HR image, HWC [0, 1] float32 (clipped for display)."""
        return self._y_t.get()

    @property
    def pred_y0(self) -> np.ndarray:
        """The current prediction of the clean HR image, HWC [0, 1] float32."""
        return self._pred_y0.get()

    @property
    def is_final(self) -> bool:
        return self.result is not None

    def __repr__(self) -> str:
        return f"RefineStep(step={self.step}, total={self.total}, final={self.is_final})"
