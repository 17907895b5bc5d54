"""refine(...): one image through bicubic, regression or the SR3 refinement chain, as a generator.

Every method yields RefineSteps; the last one carries the RefineResult. A consumer cancels by no
longer iterating. The output is built block by block into an ``OutputCanvas``: a float32 array
while it is small (up to ``canvas.IN_MEMORY_PIXELS``), a scratch file on disk when it is large, so
memory is bounded by the tile and the band, not by the image. Bicubic is resized band by band,
regression runs tile by tile (``model_space``), a one-pass upscaler from elsewhere runs tile by tile
on the LR image (``onepass_runner``), SR3 runs its chain (``sr3_chain``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator

import numpy as np

from sr3_desktop.core.errors import ModelError, SR3Error
from sr3_desktop.core.imageio import check_output_size
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.bands import array_reader, resize_region
from sr3_desktop.core.upscale.model_space import (
    ModelSpace,
    into_image,
    run_regression,
)
from sr3_desktop.core.upscale.onepass_runner import run_onepass
from sr3_desktop.core.upscale.output_canvas import OutputCanvas, bands
from sr3_desktop.core.upscale.refine_types import MAX_SAMPLES, METHODS, RefineOptions, RefineResult, RefineStep
from sr3_desktop.core.upscale.run_models import preset_of
from sr3_desktop.core.upscale.self_ensemble import check_ensemble
from sr3_desktop.core.upscale.sr3_chain import refine_sr3
from sr3_desktop.core.upscale.tiling import TilingCancelled


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
    check_ensemble(options.ensemble)
    if options.texture_gain is not None and not (math.isfinite(options.texture_gain) and options.texture_gain > 0.0):
        raise SR3Error(f"--detail must be a number > 0, got {options.texture_gain}")
    if options.grain is not None and not (math.isfinite(options.grain) and options.grain >= 0.0):
        raise SR3Error(f"--grain must be a number >= 0, got {options.grain}")


def _check_lr(lr: np.ndarray) -> np.ndarray:
    """The input as float32 in [0, 1]; no copy when it already is (the loader's images are)."""
    array = np.asarray(lr, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise SR3Error(f"expected an RGB image of shape (H, W, 3), got {array.shape}")
    low, high = float(array.min()), float(array.max())  # NaN and inf show in the min or the max
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SR3Error("the input image contains invalid (NaN or infinite) values")
    return array if low >= 0.0 and high <= 1.0 else np.clip(array, 0.0, 1.0)


def _model_scale(options: RefineOptions, sr3: OnnxDenoiser | None, regression: OnnxDenoiser | None,
                 onepass: OnnxDenoiser | None, scale: int | None) -> int:
    model = {"sr3": sr3, "regression": regression, "onepass": onepass,
             "bicubic": sr3 or regression or onepass}[options.method]
    if options.method != "bicubic" and model is None:
        raise SR3Error(f"the {options.method} method needs a {options.method} model, and none was given")
    for needed, m in (("sr3", sr3), ("regression", regression), ("onepass", onepass)):
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


def refine(
    lr: np.ndarray,
    options: RefineOptions,
    sr3: OnnxDenoiser | None,
    regression: OnnxDenoiser | None = None,
    scale: int | None = None,
    *,
    onepass: OnnxDenoiser | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[RefineStep, None, None]:
    """Upscale ``lr`` (HWC [0, 1]); the generator yields RefineSteps, the last one with the result.

    ``onepass`` is the model of the "onepass" method (a one-pass upscaler from elsewhere).
    Options, models and the output size are checked here, before any work, so mistakes raise
    at the call. ``should_stop`` is checked between tile batches: when it returns True the
    generator ends without a result, so a cancel costs at most one batch of tiles. Closing
    the generator (a consumer that stops iterating) costs nothing further.
    """
    _check_options(options)
    scale = _model_scale(options, sr3, regression, onepass, scale)
    shape = np.shape(lr)
    if len(shape) == 3:  # before any copy of the input
        check_output_size(shape[1] * scale, shape[0] * scale)
    lr = _check_lr(lr)
    if options.method == "sr3":
        assert sr3 is not None
        if options.custom_preset is None:
            preset_of(sr3.card, options)  # an unknown preset fails now
        if sr3.card.condition == "regression" and regression is None:
            raise ModelError(f"{sr3.card.name} refines the output of the regression model "
                             f"{sr3.card.condition_model!r}, and no regression model was given")
    return _steps(lr, options, sr3, onepass if options.method == "onepass" else regression, scale, should_stop)


def _steps(lr: np.ndarray, options: RefineOptions, sr3: OnnxDenoiser | None, one_pass: OnnxDenoiser | None,
           scale: int, should_stop: Callable[[], bool] | None) -> Generator[RefineStep, None, None]:
    """``one_pass`` is the regression model (for the regression method and the SR3 chain) or the one-pass model."""
    started = time.perf_counter()
    try:
        if options.method == "bicubic":
            result = RefineResult(_bicubic(lr, scale), None, "bicubic", None, 0, time.perf_counter() - started,
                                  _deterministic_notes(options))
            yield RefineStep(1, 1, lambda: result.image, lambda: result.image, result)
        elif options.method in ("regression", "onepass"):
            assert one_pass is not None
            yield _one_pass_step(lr, options, one_pass, scale, started, should_stop)
        else:
            assert sr3 is not None
            yield from refine_sr3(lr, options, sr3, one_pass, scale, started, should_stop)
    except TilingCancelled:
        return


def _bicubic(lr: np.ndarray, scale: int) -> OutputCanvas:
    """The bicubic upsample, clipped, band by band."""
    height, width = lr.shape[0] * scale, lr.shape[1] * scale
    canvas = OutputCanvas((height, width, 3))
    for top, bottom in bands(height, width):
        rows = resize_region(array_reader(lr), lr.shape[:2], (width, height), (top, bottom))
        canvas.write(top, np.clip(rows, 0.0, 1.0))
    return canvas


def _one_pass_step(lr: np.ndarray, options: RefineOptions, model: OnnxDenoiser, scale: int, started: float,
                   should_stop: Callable[[], bool] | None) -> RefineStep:
    """A regression model (on the bicubic condition, in model space) or a one-pass model (on the LR image)."""
    space = ModelSpace(lr, scale, model.card.size_multiple, options.tile, model.budget_pixels)
    canvas = space.canvas()
    if options.method == "onepass":
        run_onepass(lr, model, options.tile, should_stop, canvas, options.ensemble)
    else:
        run_regression(space, model, should_stop, into_image(canvas, model), options.ensemble)
    result = RefineResult(canvas, None, options.method, None, options.ensemble, time.perf_counter() - started,
                          _deterministic_notes(options))
    return RefineStep(1, 1, lambda: result.image, lambda: result.image, result)


def _deterministic_notes(options: RefineOptions) -> tuple[str, ...]:
    notes = []
    if options.samples > 1:
        notes.append(f"{options.method} is deterministic: one image was made instead of {options.samples} samples")
    if options.ensemble > 1 and options.method == "bicubic":
        notes.append("bicubic runs no network: the self-ensemble does nothing")
    return tuple(notes)


def run(
    lr: np.ndarray,
    options: RefineOptions,
    sr3: OnnxDenoiser | None,
    regression: OnnxDenoiser | None = None,
    scale: int | None = None,
    *,
    onepass: OnnxDenoiser | None = None,
) -> RefineResult:
    """Drain ``refine`` and return its result."""
    result: RefineResult | None = None
    for step in refine(lr, options, sr3, regression, scale, onepass=onepass):
        result = step.result or result
    if result is None:  # only if refine() stopped early, which run() never asks for
        raise SR3Error("refinement stopped before it finished")
    return result
