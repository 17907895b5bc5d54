"""The SR3 refinement chain (paper Alg. 2, or DDIM over a sub-sequence) over one image, as a generator.

The condition is the bicubic upsample (or, for a card with ``condition == "regression"``, the
regression model's output); y_T is drawn from a seeded numpy Generator for the whole padded image;
at every step each tile is denoised, the tile outputs are blended into one output plane, and the
sampler steps on it. An image in memory steps as one piece, exactly as it always did. A large one
keeps its planes in scratch files (``np.memmap``) and steps band by band (its noise is drawn band by
band, so it is deterministic per seed and size), with two buffers for y and for the network output
so that a lazy preview stays valid until the chain has gone two steps further.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import NamedTuple

import numpy as np

from sr3_desktop.core.diffusion.sampler import Sampler
from sr3_desktop.core.diffusion.schedule import ScheduleError, levels_from_preset_schedule
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio import resample
from sr3_desktop.core.model_files.card import InferencePreset, ModelCard
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.bands import array_reader, resize_region
from sr3_desktop.core.upscale.grain_floor import add_grain, add_grain_canvas, noise_amplitude
from sr3_desktop.core.upscale.model_space import ModelSpace, check_finite, into_plane, output_cell, run_regression
from sr3_desktop.core.upscale.output_canvas import OutputCanvas, bands, resize_bands
from sr3_desktop.core.upscale.refine_types import RefineOptions, RefineResult, RefineStep
from sr3_desktop.core.upscale.run_models import compressed_input, preset_name, preset_of
from sr3_desktop.core.upscale.texture_cap import cap_texture, cap_texture_canvas
from sr3_desktop.core.upscale.tiling import run_tiled


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


def native_size_note(card: ModelCard, height: int, width: int) -> str | None:
    """A warning when the input is far (over 2x either way) from the LR size the model was trained on."""
    native = card.native_input_size
    if native is None or (native / 2 <= min(height, width) and max(height, width) <= 2 * native):
        return None
    return (f"{card.name} was trained on {native}x{native} px inputs; this one is {width}x{height} px, "
            "so its results may be poor")


def back_project(image: np.ndarray, lr: np.ndarray, scale: int, iterations: int) -> np.ndarray:
    """y += up(LR - down(y)) with the training bicubic, in [0, 1] image space, clipped each time."""
    if iterations == 0:
        return image
    canvas = OutputCanvas.of(np.array(image, dtype=np.float32))
    back_project_canvas(canvas, lr, scale, iterations)
    return canvas.image


def back_project_canvas(canvas: OutputCanvas, lr: np.ndarray, scale: int, iterations: int) -> None:
    """``back_project`` in place on a canvas, band by band: down(y) is finished before y changes."""
    in_size, out_size = lr.shape[:2], (canvas.width, canvas.height)
    for _ in range(iterations):
        if not canvas.on_disk:  # the whole image at once, as the paper's Eq. writes it
            image = canvas.image
            residual = lr - resample.downscale(image, scale)
            image[...] = np.clip(image + resample.upscale(residual, scale), 0.0, 1.0)
            continue
        down = np.empty_like(lr)
        for top, bottom in resize_bands(out_size[::-1], in_size, True):
            down[top:bottom] = resize_region(canvas.read, out_size[::-1], in_size[::-1], (top, bottom))
        read_residual = array_reader(lr - down)
        for top, bottom in resize_bands(in_size, out_size[::-1], True):
            up = resize_region(read_residual, in_size, out_size, (top, bottom))
            canvas.write(top, np.clip(canvas.read(top, bottom) + up, 0.0, 1.0))


def refine_sr3(lr: np.ndarray, options: RefineOptions, sr3: OnnxDenoiser, regression: OnnxDenoiser | None,
               scale: int, started: float, should_stop: Callable[[], bool] | None) -> Iterator[RefineStep]:
    card = sr3.card
    name = "custom" if options.custom_preset and not options.preset else preset_name(card, options)
    preset = preset_of(card, options)
    levels = resolve_levels(card, preset, options.steps, options.strength)
    gain = preset.texture_gain if options.texture_gain is None else options.texture_gain
    grain = preset.grain if options.grain is None else options.grain
    floor = grain * noise_amplitude(lr) if grain > 0.0 else 0.0  # one floor for the whole image, every tile
    notes: list[str] = [note] if (note := native_size_note(card, lr.shape[0], lr.shape[1])) else []
    if compressed_input(card, options):
        notes.append(f"the input was saved as JPEG at quality {options.input_quality}: preset {name!r}, made for "
                     f"compressed inputs, runs instead of {card.default_preset!r}")
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
        notes.append(f"preset {name!r} starts from a regression estimate, but no regression model "
                     "is available: started from bicubic instead")
    residual = card.target == "residual"
    sampler = Sampler(levels, preset.sampler, preset.eta, card.prediction, card.target, card.noise_conditioning)
    multiple = card.size_multiple
    uses_regression = (start == "regression" or conditioned) and regression is not None
    if uses_regression:
        assert regression is not None
        multiple = math.lcm(multiple, regression.card.size_multiple)
    if options.ensemble > 1 and not uses_regression:
        notes.append("this chain runs no regression pass: the self-ensemble does nothing")
    space = ModelSpace(lr, scale, multiple, options.tile, sr3.budget_pixels)
    grid, batch = space.grid(card)
    evaluations = 0
    regression_plane: np.ndarray | None = None
    if uses_regression:
        assert regression is not None
        regression_plane = space.plane()
        run_regression(space, regression, should_stop, into_plane(regression_plane), options.ensemble)
        evaluations += options.ensemble
    bicubic = space.bicubic_plane() if not conditioned or start == "bicubic" else None
    condition = regression_plane if conditioned else bicubic
    assert condition is not None
    estimate = {"bicubic": bicubic, "regression": regression_plane}.get(start)  # in the HR space
    back_projection = preset.back_projection if options.back_projection is None else options.back_projection
    lr_up_clip = condition if residual else None
    total = sampler.num_steps * options.samples
    images: list[OutputCanvas] = []
    for k in range(options.samples):
        rng = np.random.default_rng(options.seed + k)
        y = _start(space, sampler, rng, estimate, condition if residual else None)
        spare_y, outputs = (space.plane(), (space.plane(), space.plane())) if space.on_disk else (None, (None, None))
        for i in range(sampler.num_steps):
            level = sampler.network_input(i)[0]

            def denoise(planes: list[np.ndarray], level: np.float32 = level) -> np.ndarray:
                lr_up, y_t = planes
                return sr3.predict(lr_up, y_t, np.full((lr_up.shape[0],), level, dtype=np.float32))

            output = run_tiled(denoise, [condition, y], grid, batch, should_stop, out=outputs[i % 2])
            # step writes pred_y0 into ``output`` (in memory a fresh array each step: run_tiled's blend, or
            # the session's own output untiled) and reads y; nothing here uses ``output`` again.
            y, spare_y, pred = _step(space, sampler, output, i, y, spare_y, rng, lr_up_clip)
            evaluations += 1
            step = k * sampler.num_steps + i + 1
            if i + 1 == sampler.num_steps:
                finish = Finish(preset.texture_cap, gain, preset.flat_amplitude,
                                output_cell(card) if preset.deblock else 1, floor, options.seed + k, back_projection)
                images.append(_final_image(space, pred, residual, condition, finish, sr3))
            if step == total:
                result = _combine(space, images, name, evaluations, started, notes)
                yield RefineStep(step, total, partial(_image_of, result), partial(_image_of, result), result)
            elif step % options.preview_every == 0:
                # Lazy previews: in memory the planes they read are never written again (the next step
                # writes a fresh network output and a fresh y), so they are safe to build on another thread.
                yield RefineStep(step, total, partial(space.to_image, y, residual, condition),
                                 partial(space.to_image, pred, residual, condition))


def _image_of(result: RefineResult) -> np.ndarray:
    return result.image


def _start(space: ModelSpace, sampler: Sampler, rng: np.random.Generator, estimate: np.ndarray | None,
           condition: np.ndarray | None) -> np.ndarray:
    """y at the first level: pure noise, or the estimate (minus the condition for a residual) noised (Eq. 4)."""
    if not space.on_disk:
        start = None if estimate is None else (estimate - condition if condition is not None else estimate.copy())
        return sampler.start(rng.standard_normal(space.shape, dtype=np.float32), start)
    y = space.plane()
    for top, bottom in space.bands():
        part = None if estimate is None else np.array(estimate[:, top:bottom])
        if part is not None and condition is not None:
            part -= condition[:, top:bottom]
        noise = rng.standard_normal((3, bottom - top, space.padded_width), dtype=np.float32)
        y[:, top:bottom] = sampler.start(noise, part)
    return y


def _step(space: ModelSpace, sampler: Sampler, output: np.ndarray, i: int, y: np.ndarray, spare: np.ndarray | None,
          rng: np.random.Generator, clip: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(new y, the buffer free for the next step, pred_y0): in memory in one piece, on disk band by band."""
    if spare is None:
        new_y, pred = sampler.step(output, i, y, rng, clip)
        return new_y, None, pred
    for top, bottom in space.bands():
        part, _ = sampler.step(output[:, top:bottom], i, y[:, top:bottom], rng,
                               None if clip is None else clip[:, top:bottom])
        spare[:, top:bottom] = part
    return spare, y, output


class Finish(NamedTuple):
    """What is done to the last prediction: the texture cap, its gain and knee (``texture_cap``), the cell side
    to deblock (1: none), the grain floor's amplitude and seed (``grain_floor``), then the back-projection
    iterations."""

    cap: float
    gain: float
    flat: float
    cell: int
    grain_floor: float
    grain_seed: int
    back_projection: int


def _final_image(space: ModelSpace, pred: np.ndarray, residual: bool, condition: np.ndarray, finish: Finish,
                 model: OnnxDenoiser) -> OutputCanvas:
    """pred_y0 of the last step as an image, its texture capped (and gained) against the condition (the
    regression estimate or bicubic), its grain floor added, then back-projected (``finish``); on disk as float32
    for a large image."""
    cap, gain, flat, cell, floor, seed, back_projection = finish
    if not space.on_disk:
        image = space.to_image(pred, residual, condition)
        check_finite(image, model)
        image = cap_texture(image, space.to_image(condition, False, condition), cap, gain, cell, flat=flat)
        image = add_grain(image, floor, seed)
        return OutputCanvas.of(back_project(image, space.lr, space.scale, back_projection))
    canvas = space.canvas(np.float32)
    for top, bottom in bands(space.height, space.width):
        block = space.to_image(pred, residual, condition, top, bottom)
        check_finite(block, model)
        canvas.write(top, block)
    cap_texture_canvas(canvas, lambda top, bottom: space.to_image(condition, False, condition, top, bottom), cap,
                       gain, cell, flat)
    add_grain_canvas(canvas, floor, seed)
    back_project_canvas(canvas, space.lr, space.scale, back_projection)
    return canvas


def _combine(space: ModelSpace, images: list[OutputCanvas], preset: str, evaluations: int, started: float,
             notes: list[str]) -> RefineResult:
    """One sample, or the mean and the per-pixel std (averaged over RGB) of K samples, band by band."""
    seconds = time.perf_counter() - started
    if len(images) == 1:
        return RefineResult(images[0], None, "sr3", preset, evaluations, seconds, tuple(notes))
    mean = space.canvas()
    std = OutputCanvas((space.height, space.width), on_disk=space.on_disk)
    for top, bottom in bands(space.height, space.width):
        stack = np.stack([image.read(top, bottom) for image in images])
        mean.write(top, stack.mean(axis=0).astype(np.float32))
        std.write(top, stack.std(axis=0).mean(axis=2).astype(np.float32))
    return RefineResult(mean, std, "sr3", preset, evaluations, time.perf_counter() - started, tuple(notes))
