"""refine(...): one image through bicubic, regression or the SR3 refinement chain, as a generator.

SR3 (paper Alg. 2, or DDIM over a sub-sequence): the condition lr_up is the bicubic upsample of
the input; y_T is drawn from a seeded numpy Generator once for the whole padded image; at every
step each tile is denoised, the tile outputs are blended into one full-image output, and the
sampler steps on the full image. Every ``preview_every`` steps a RefineStep is yielded; the last
one carries the RefineResult. A consumer cancels by no longer iterating.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np

from sr3_desktop.core import resample
from sr3_desktop.core.denoiser import OnnxDenoiser
from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.imageio import check_output_size
from sr3_desktop.core.model_card import InferencePreset, ModelCard
from sr3_desktop.core.sampler import Sampler
from sr3_desktop.core.schedule import ScheduleError, levels_from_preset_schedule
from sr3_desktop.core.tiling import (
    TileGrid,
    TilingCancelled,
    batch_size,
    choose_tile_size,
    min_tile_size,
    pad_plane,
    padded_size,
    plan_tiles,
    run_tiled,
)

Method = Literal["sr3", "regression", "bicubic"]
METHODS = ("sr3", "regression", "bicubic")
MAX_SAMPLES = 64
ATTENTION_TILE_TOKENS = 64
"""Automatic tiles keep self-attention to at most 64 x 64 positions (a 64 MiB score matrix per head)."""


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
    custom_preset: InferencePreset | None = None
    """An explicit recipe (the schedule search's candidates); when set, ``preset`` only names it."""


@dataclass(frozen=True)
class RefineResult:
    image: np.ndarray
    """HWC [0, 1] float32 at output size (scale * input)."""
    uncertainty: np.ndarray | None
    """HW per-pixel standard deviation over the K samples (K > 1), else None."""
    method: str
    preset: str | None
    steps: int
    """Network evaluations spent (full-image evaluations, over all samples)."""
    seconds: float
    notes: tuple[str, ...] = ()
    """Things a user should know, e.g. a fallback from regression start to bicubic."""


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


def to_model(image: np.ndarray) -> np.ndarray:
    """HWC [0, 1] -> NCHW [-1, 1] float32 (N = 1)."""
    chw = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) * 2.0 - 1.0
    return np.ascontiguousarray(chw[None], dtype=np.float32)


def from_model(array: np.ndarray) -> np.ndarray:
    """NCHW (N = 1) or CHW [-1, 1] -> HWC [0, 1] float32, clipped."""
    chw = array[0] if array.ndim == 4 else array
    return np.ascontiguousarray(np.clip((chw.transpose(1, 2, 0) + 1.0) * 0.5, 0.0, 1.0), dtype=np.float32)


def back_project(image: np.ndarray, lr: np.ndarray, scale: int, iterations: int) -> np.ndarray:
    """y += up(LR - down(y)) with the training bicubic, in [0, 1] image space, clipped each time."""
    out = image
    for _ in range(iterations):
        residual = lr - resample.downscale(out, scale)
        out = np.clip(out + resample.upscale(residual, scale), 0.0, 1.0).astype(np.float32)
    return out


def resolve_levels(card: ModelCard, preset: InferencePreset, steps: int | None, strength: float | None) -> np.ndarray:
    """The preset's gammas, or rebuilt from its schedule when steps or strength are overridden."""
    if steps is None and strength is None:
        return np.asarray(preset.noise_levels, dtype=np.float64)
    assert card.train_schedule is not None  # guaranteed for SR3 cards
    try:
        return levels_from_preset_schedule(
            preset.schedule,
            card.train_schedule,
            steps if steps is not None else preset.steps,
            strength if strength is not None else preset.strength,
        )
    except (ScheduleError, KeyError, ValueError) as err:
        raise SR3Error(f"cannot build {steps} steps at strength {strength} for this model: {err}") from None


def attention_downsample(card: ModelCard) -> int:
    """The finest downsampling factor at which the network runs self-attention.

    Attention cost grows with the square of the positions it sees, so it bounds the automatic
    tile size. SR3 U-Nets attend at least in the middle block (factor = size_multiple); the card's
    ``architecture`` (channel_mults, attention_levels) can name finer levels.
    """
    factor = card.size_multiple
    mults, levels = card.architecture.get("channel_mults"), card.architecture.get("attention_levels")
    if isinstance(mults, list) and mults and isinstance(levels, list):
        for level in levels:
            if isinstance(level, int):
                factor = min(factor, 2 ** (level % len(mults)))
    return max(1, factor)


def max_auto_tile(card: ModelCard) -> int:
    """The largest automatic tile side for this model."""
    return ATTENTION_TILE_TOKENS * attention_downsample(card)


def _check_options(options: RefineOptions) -> None:
    if options.method not in METHODS:
        raise SR3Error(f"unknown method {options.method!r}; choose one of {', '.join(METHODS)}")
    if options.steps is not None and options.steps < 1:
        raise SR3Error(f"--steps must be at least 1, got {options.steps}")
    if options.strength is not None and not 0.0 < options.strength <= 1.0:
        raise SR3Error(f"--strength must be in (0, 1], got {options.strength}")
    if options.seed < 0:
        raise SR3Error(f"--seed must be zero or positive, got {options.seed}")
    if not 1 <= options.samples <= MAX_SAMPLES:
        raise SR3Error(f"--samples must be between 1 and {MAX_SAMPLES}, got {options.samples}")
    if options.preview_every < 1:
        raise SR3Error("preview_every must be at least 1")
    if options.tile is not None and options.tile < 1:
        raise SR3Error(f"--tile must be a positive number of pixels, got {options.tile}")
    if options.back_projection is not None and options.back_projection < 0:
        raise SR3Error("back_projection must be >= 0")


def _check_lr(lr: np.ndarray) -> np.ndarray:
    array = np.asarray(lr, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise SR3Error(f"expected an RGB image of shape (H, W, 3), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise SR3Error("the input image contains invalid (NaN or infinite) values")
    return np.clip(array, 0.0, 1.0)


def _model_scale(options: RefineOptions, sr3: OnnxDenoiser | None, regression: OnnxDenoiser | None,
                 scale: int | None) -> int:
    model = {"sr3": sr3, "regression": regression, "bicubic": sr3 or regression}[options.method]
    if options.method != "bicubic" and model is None:
        raise SR3Error(f"the {options.method} method needs a {options.method} model, and none was given")
    for needed, m in (("sr3", sr3), ("regression", regression)):
        if m is not None and m.card.kind != needed:
            raise ModelError(f"{m.card.name} is a {m.card.kind} model, but it was given as the {needed} model")
    card_scale = model.card.scale if model is not None else None
    if scale is not None and card_scale is not None and scale != card_scale and options.method != "bicubic":
        raise SR3Error(f"{model.card.name if model else ''} upscales {card_scale}x, not {scale}x")
    chosen = scale if scale is not None else card_scale
    if chosen is None:
        raise SR3Error("bicubic upscaling needs a scale (or a model to take it from)")
    if not 1 <= chosen <= 16:
        raise SR3Error(f"scale must be between 1 and 16, got {chosen}")
    return chosen


class _Canvas:
    """The condition and the tile grids of one image, in padded model space (C, H, W)."""

    def __init__(self, lr: np.ndarray, scale: int, multiple: int, tile: int | None, budget: int) -> None:
        self.lr = lr
        self.scale = scale
        self.height, self.width = lr.shape[0] * scale, lr.shape[1] * scale
        self.lr_up = resample.upscale(lr, scale)  # unclipped, exactly as in training
        self.padded_height = padded_size(self.height, multiple)
        self.padded_width = padded_size(self.width, multiple)
        self.lr_up_model = pad_plane(to_model(self.lr_up)[0], self.padded_height, self.padded_width)
        self.condition = self.lr_up_model
        """What the SR3 network sees as lr_up and a residual is added to: bicubic, or a regression output."""
        self.tile, self.budget = tile, budget

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.padded_height, self.padded_width)

    def grid(self, card: ModelCard) -> tuple[TileGrid, int]:
        multiple = card.size_multiple
        automatic = choose_tile_size(self.padded_height, self.padded_width, multiple, self.budget)
        side = self.tile or min(automatic, max_auto_tile(card))
        try:
            grid = plan_tiles(self.padded_height, self.padded_width, side, multiple)
        except ValueError:
            raise SR3Error(
                f"tile size {side} px is too small for this model; use at least {min_tile_size(multiple)}"
            ) from None
        return grid, batch_size(grid, max(self.budget, grid.tile_height * grid.tile_width))

    def to_image(self, model_space: np.ndarray, residual: bool) -> np.ndarray:
        """Padded (C, H, W) diffused variable -> cropped HWC [0, 1] HR image."""
        hr = model_space + self.condition if residual else model_space
        return from_model(hr[:, : self.height, : self.width])


def _regression_estimate(canvas: _Canvas, model: OnnxDenoiser, should_stop: Callable[[], bool] | None) -> np.ndarray:
    """The regression model's HR estimate in padded model space (C, H, W)."""
    grid, batch = canvas.grid(model.card)
    out = run_tiled(lambda planes: model.predict_image(planes[0]), [canvas.lr_up_model], grid, batch, should_stop)
    return out + canvas.lr_up_model if model.card.target == "residual" else out


def refine(
    lr: np.ndarray,
    options: RefineOptions,
    sr3: OnnxDenoiser | None,
    regression: OnnxDenoiser | None = None,
    scale: int | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[RefineStep, None, None]:
    """Upscale ``lr`` (HWC [0, 1]); the generator yields RefineSteps, the last one with the result.

    Options, models and the output size are checked here, before any work, so mistakes raise
    at the call. ``should_stop`` is checked between tile batches: when it returns True the
    generator ends without a result, so a cancel costs at most one batch of tiles. Closing
    the generator (a consumer that stops iterating) costs nothing further.
    """
    _check_options(options)
    scale = _model_scale(options, sr3, regression, scale)
    shape = np.shape(lr)
    if len(shape) == 3:  # before any copy of the input
        check_output_size(shape[1] * scale, shape[0] * scale)
    lr = _check_lr(lr)
    if options.method == "sr3":
        assert sr3 is not None
        if options.custom_preset is None:
            sr3.card.preset(options.preset or sr3.card.default_preset)  # an unknown preset fails now
        if sr3.card.condition == "regression" and regression is None:
            raise ModelError(f"{sr3.card.name} refines the output of the regression model "
                             f"{sr3.card.condition_model!r}, and no regression model was given")
    return _steps(lr, options, sr3, regression, scale, should_stop)


def _steps(lr: np.ndarray, options: RefineOptions, sr3: OnnxDenoiser | None, regression: OnnxDenoiser | None,
           scale: int, should_stop: Callable[[], bool] | None) -> Generator[RefineStep, None, None]:
    started = time.perf_counter()
    try:
        if options.method == "bicubic":
            image = np.clip(resample.upscale(lr, scale), 0.0, 1.0)
            result = RefineResult(image, None, "bicubic", None, 0, time.perf_counter() - started,
                                  _deterministic_notes(options))
            yield RefineStep(1, 1, image, image, result)
        elif options.method == "regression":
            assert regression is not None
            yield _regression_step(lr, options, regression, scale, started, should_stop)
        else:
            assert sr3 is not None
            yield from _refine_sr3(lr, options, sr3, regression, scale, started, should_stop)
    except TilingCancelled:
        return


def _regression_step(lr: np.ndarray, options: RefineOptions, model: OnnxDenoiser, scale: int, started: float,
                     should_stop: Callable[[], bool] | None) -> RefineStep:
    canvas = _Canvas(lr, scale, model.card.size_multiple, options.tile, model.budget_pixels)
    image = canvas.to_image(_regression_estimate(canvas, model, should_stop), residual=False)
    _check_finite(image, model)
    result = RefineResult(image, None, "regression", None, 1, time.perf_counter() - started,
                          _deterministic_notes(options))
    return RefineStep(1, 1, image, image, result)


def _deterministic_notes(options: RefineOptions) -> tuple[str, ...]:
    if options.samples > 1:
        return (f"{options.method} is deterministic: one image was made instead of {options.samples} samples",)
    return ()


def _check_finite(image: np.ndarray, model: OnnxDenoiser) -> None:
    if not np.all(np.isfinite(image)):
        raise ModelError(f"{model.card.name} produced invalid values (NaN); the model file may be damaged")


def _refine_sr3(
    lr: np.ndarray,
    options: RefineOptions,
    sr3: OnnxDenoiser,
    regression: OnnxDenoiser | None,
    scale: int,
    started: float,
    should_stop: Callable[[], bool] | None,
) -> Iterator[RefineStep]:
    card = sr3.card
    preset_name = options.preset or ("custom" if options.custom_preset else card.default_preset)
    preset = options.custom_preset or card.preset(preset_name)
    levels = resolve_levels(card, preset, options.steps, options.strength)
    notes: list[str] = []
    start = preset.start
    if options.strength is not None and options.strength < 1.0 and start == "noise":
        start = "bicubic"
        notes.append(f"strength {options.strength} < 1 starts from a noised bicubic estimate")
    conditioned = card.condition == "regression"  # refine() has checked that the regression model is here
    if conditioned and regression is not None and regression.card.name != card.condition_model:
        notes.append(f"{card.name} was trained on the output of {card.condition_model!r}, not "
                     f"{regression.card.name!r}: results may differ")
    if start == "regression" and regression is None:
        start = "bicubic"
        notes.append(f"preset {preset_name!r} starts from a regression estimate, but no regression model "
                     "is available: started from bicubic instead")
    residual = card.target == "residual"
    sampler = Sampler(levels, preset.sampler, preset.eta, card.prediction, card.target, card.noise_conditioning)
    multiple = card.size_multiple
    if (start == "regression" or conditioned) and regression is not None:
        multiple = math.lcm(multiple, regression.card.size_multiple)
    canvas = _Canvas(lr, scale, multiple, options.tile, sr3.budget_pixels)
    grid, batch = canvas.grid(card)
    evaluations = 0
    regression_image: np.ndarray | None = None
    if (start == "regression" or conditioned) and regression is not None:
        regression_image = _regression_estimate(canvas, regression, should_stop)
        evaluations += 1
    if conditioned:
        assert regression_image is not None
        canvas.condition = regression_image
    estimate: np.ndarray | None = None  # start estimate in the diffused space
    if start == "bicubic":
        estimate = canvas.lr_up_model.copy()
    elif start == "regression":
        estimate = regression_image
    if estimate is not None and residual:
        estimate = estimate - canvas.condition
    back_projection = preset.back_projection if options.back_projection is None else options.back_projection
    lr_up_clip = canvas.condition if residual else None
    total = sampler.num_steps * options.samples
    images: list[np.ndarray] = []
    for k in range(options.samples):
        rng = np.random.default_rng(options.seed + k)
        y = sampler.start(rng.standard_normal(canvas.shape, dtype=np.float32), estimate)
        for i in range(sampler.num_steps):
            level = sampler.network_input(i)[0]

            def denoise(planes: list[np.ndarray], level: np.float32 = level) -> np.ndarray:
                lr_up, y_t = planes
                return sr3.predict(lr_up, y_t, np.full((lr_up.shape[0],), level, dtype=np.float32))

            output = run_tiled(denoise, [canvas.condition, y], grid, batch, should_stop)
            # step writes pred_y0 into ``output`` (a fresh array each step: run_tiled's blend, or the
            # session's own output untiled) and reads y; nothing here uses ``output`` again.
            y, pred = sampler.step(output, i, y, rng, lr_up_clip)
            evaluations += 1
            step = k * sampler.num_steps + i + 1
            last = i + 1 == sampler.num_steps
            if last:
                image = back_project(canvas.to_image(pred, residual), lr, scale, back_projection)
                _check_finite(image, sr3)
                images.append(image)
            if step == total:
                result = _combine(images, preset_name, evaluations, started, notes)
                yield RefineStep(step, total, result.image, result.image, result)
            elif step % options.preview_every == 0:
                # Lazy previews: the planes they read are never written again (the next step writes
                # a fresh network output and a fresh y), so they are safe to build on another thread.
                yield RefineStep(step, total, partial(canvas.to_image, y, residual),
                                 partial(canvas.to_image, pred, residual))


def _combine(images: list[np.ndarray], preset: str, evaluations: int, started: float, notes: list[str]) -> RefineResult:
    if len(images) == 1:
        image, uncertainty = images[0], None
    else:
        stack = np.stack(images)
        image = stack.mean(axis=0).astype(np.float32)
        uncertainty = stack.std(axis=0).mean(axis=2).astype(np.float32)
    return RefineResult(image, uncertainty, "sr3", preset, evaluations, time.perf_counter() - started, tuple(notes))


def run(
    lr: np.ndarray,
    options: RefineOptions,
    sr3: OnnxDenoiser | None,
    regression: OnnxDenoiser | None = None,
    scale: int | None = None,
) -> RefineResult:
    """Drain ``refine`` and return its result."""
    result: RefineResult | None = None
    for step in refine(lr, options, sr3, regression, scale):
        result = step.result or result
    if result is None:  # only if refine() stopped early, which run() never asks for
        raise SR3Error("refinement stopped before it finished")
    return result
