"""How long a run will take, before it starts: network evaluations x pixels x this machine's speed.

A run's work is planned exactly as the pipeline will run it (``plan_work``: the same tile grids,
padding and chain length), as pixel-evaluations per model: the pixels of every tile the network
sees (overlaps included) times the evaluations. The speed is seconds per pixel-evaluation, measured
on this machine for each (model file, device, thread count), plus the pipeline's own time per image
pixel and step (blending the tiles, the sampler step, fresh noise): a calibration of a second or two
the first time (``calibrate``), then refreshed from every real run (``record_run``). Speeds are
kept in ``<data folder>/speeds.json``.

    seconds = sum over models of  evaluations x (tile pixels x (network speed + call cost / pixels of a tile)
                                                  + image pixels x step overhead)
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sr3_desktop.core.diffusion.sampler import Sampler
from sr3_desktop.core.imageio import write_atomically
from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.denoiser import CPU_BUDGET_PIXELS, OnnxDenoiser, default_threads
from sr3_desktop.core.model_files.folders import data_dir
from sr3_desktop.core.upscale.model_space import max_auto_tile, plan_grid
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.run_models import preset_of
from sr3_desktop.core.upscale.sr3_chain import resolve_levels
from sr3_desktop.core.upscale.tiling import batch_size, padded_size, plan_tiles, run_tiled

CONSENT_SECONDS = 120.0
"""Runs estimated to take longer than two minutes are started only after the user agrees."""
CALIBRATION_SIDES = (64, 128, 256)
"""The calibration times the network on tiles of 64², 128² and 256² and fits a call's time as a fixed cost per
call plus a cost per pixel (the marginal cost near 256², which already carries part of the growth that
self-attention and the caches give larger tiles)."""
CALIBRATION_SECONDS = 0.3
"""Timed runs of each size go on for this long (after one warm-up run), at least two of them."""
RUN_WEIGHT = 0.5
"""A real run's speed moves the remembered one halfway towards it."""
SPEED_FILE = "speeds.json"
_LOCK = threading.Lock()


class ModelRef(Protocol):
    """An installed model (``ModelEntry``) or a session (``OnnxDenoiser``): its file and its card."""

    @property
    def path(self) -> Path: ...

    @property
    def card(self) -> ModelCard: ...


@dataclass(frozen=True)
class Speed:
    """Seconds per pixel per network evaluation of one model on one device, and how it was found."""

    seconds_per_pixel: float
    """The cost of each further pixel of a tile (the calibration's slope of seconds against pixels)."""
    budget_pixels: int
    """Pixels per session run on that device (the tile budget the pipeline uses there)."""
    provider: str
    source: str
    """"calibration" or "runs"."""
    runs: int = 0
    step_overhead: float = 0.0
    """The pipeline's own seconds per image pixel per network evaluation (blend, sampler step, noise)."""
    fixed: float = 0.0
    """Seconds per network call whatever its size (the session's own cost)."""

    def per_pixel(self, tile_pixels: int) -> float:
        """Seconds per pixel per evaluation on tiles of ``tile_pixels`` (0: the per-pixel cost alone)."""
        return self.seconds_per_pixel + (self.fixed / tile_pixels if tile_pixels > 0 else 0.0)


@dataclass(frozen=True)
class Work:
    """What one model does in a run: ``evaluations`` network passes over ``pixels`` tile pixels each."""

    model: ModelRef
    evaluations: int
    pixels: int
    image_pixels: int = 0
    """Pixels of the (padded) image that each evaluation blends and steps."""
    tile_pixels: int = 0
    """Pixels of one tile (each call's fixed cost is shared by them); 0: leave the fixed cost out."""

    @property
    def pixel_evaluations(self) -> int:
        return self.evaluations * self.pixels

    def seconds(self, speed: Speed) -> float:
        return self.evaluations * (self.pixels * speed.per_pixel(self.tile_pixels)
                                   + self.image_pixels * speed.step_overhead)


@dataclass(frozen=True)
class RunEstimate:
    """The estimated seconds of a run, or None when a model's speed on this device is not known yet."""

    seconds: float | None
    work: tuple[Work, ...]
    missing: tuple[ModelRef, ...] = ()
    """Models without a speed yet: calibrate them first."""

    @property
    def needs_consent(self) -> bool:
        return self.seconds is not None and self.seconds > CONSENT_SECONDS

    def text(self) -> str:
        return "unknown (the speed of this computer is not measured yet)" if self.seconds is None else \
            f"about {format_duration(self.seconds)}"


def combine(parts: Sequence[RunEstimate]) -> RunEstimate:
    """Several runs one after the other (the app's bicubic, regression and SR3 panes)."""
    missing = tuple(model for part in parts for model in part.missing)
    work = tuple(item for part in parts for item in part.work)
    return RunEstimate(None if missing else sum(part.seconds or 0.0 for part in parts), work, missing)


def fastest_preset(card: ModelCard) -> str | None:
    """The card's preset with the fewest network evaluations (None for a card without presets); never the compressed
    preset, which is made for JPEG inputs (a JPEG run with no preset named takes it by itself)."""
    names = [n for n in card.preset_names() if n != card.compressed_preset]
    if not names:
        return None
    return min(names, key=lambda n: (card.preset(n).network_evaluations, n))


def format_duration(seconds: float) -> str:
    """'under a second', '12 s', '3 min 20 s', '1 h 05 min'."""
    if seconds < 1.0:
        return "under a second"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s" if whole < 600 else f"{round(whole / 60)} min"
    return f"{whole // 3600} h {whole // 60 % 60:02d} min"


# --- the work of a run -------------------------------------------------------------------------------
def plan_work(lr_size: tuple[int, int], options: RefineOptions, sr3: ModelRef | None, regression: ModelRef | None,
              scale: int, budget: int = CPU_BUDGET_PIXELS) -> tuple[Work, ...]:
    """The network work of refining a (width, height) input, planned as ``pipeline.refine`` runs it."""
    height, width = lr_size[1] * scale, lr_size[0] * scale
    if options.method in ("bicubic", "onepass"):
        return ()  # bicubic costs no network time; a one-pass model's speed is not modelled (one pass, no estimate)
    if options.method == "regression":
        assert regression is not None
        return (_pass(regression, regression.card.size_multiple, height, width, options, budget, options.ensemble),)
    assert sr3 is not None
    card = sr3.card
    preset = preset_of(card, options)
    steps = len(resolve_levels(card, preset, options.steps, options.strength)) * options.samples
    uses_regression = regression is not None and (preset.start == "regression" or card.condition == "regression")
    multiple = math.lcm(card.size_multiple, regression.card.size_multiple) if uses_regression and regression \
        else card.size_multiple
    work = [_pass(sr3, multiple, height, width, options, budget, steps)]
    if uses_regression and regression is not None:
        work.insert(0, _pass(regression, multiple, height, width, options, budget, options.ensemble))
    return tuple(work)


def _pass(model: ModelRef, multiple: int, height: int, width: int, options: RefineOptions, budget: int,
          evaluations: int) -> Work:
    grid, _ = plan_grid(model.card, padded_size(height, multiple), padded_size(width, multiple), options.tile, budget)
    return Work(model, evaluations, grid.pixels_run, grid.height * grid.width, grid.tile_height * grid.tile_width)


def estimate(lr_size: tuple[int, int], options: RefineOptions, sr3: ModelRef | None, regression: ModelRef | None,
             scale: int, device: str) -> RunEstimate:
    """The run's seconds from the remembered speeds (None, with the models to calibrate, when unknown)."""
    models = [m for m in ((sr3 if options.method == "sr3" else None),
                          (regression if options.method != "bicubic" else None)) if m is not None]
    speeds = {id(m): known_speed(m.path, device) for m in models}
    budget = next((s.budget_pixels for s in speeds.values() if s is not None), CPU_BUDGET_PIXELS)
    work = plan_work(lr_size, options, sr3, regression, scale, budget)
    total, missing = 0.0, []
    for item in work:
        speed = speeds.get(id(item.model))
        if speed is None:
            missing.append(item.model)
        else:
            total += item.seconds(speed)
    return RunEstimate(None if missing else total, work, tuple(missing))


# --- speeds --------------------------------------------------------------------------------------
def speed_key(path: str | Path, device: str) -> str:
    """The model file (resolved path, size, modification time), the device asked for, and the thread count."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    return f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}|{device}|threads={default_threads()}"


def speed_file() -> Path:
    return data_dir() / SPEED_FILE


def known_speed(path: str | Path, device: str) -> Speed | None:
    """The remembered speed of this model file on this device, or None."""
    try:
        entry = _read_book().get(speed_key(path, device))
    except OSError:
        return None
    if not isinstance(entry, dict):
        return None
    try:
        return Speed(float(entry["seconds_per_pixel"]), int(entry["budget_pixels"]), str(entry["provider"]),
                     str(entry["source"]), int(entry.get("runs", 0)), float(entry.get("step_overhead", 0.0)),
                     float(entry.get("fixed", 0.0)))
    except (KeyError, TypeError, ValueError):
        return None


def calibrate(model: OnnxDenoiser) -> Speed:
    """Time the network on tiles of 64², 128² and 256² (1.5 s for a bundled model here) and remember its speed here."""
    card = model.card
    largest = max(card.size_multiple, max_auto_tile(card) // card.size_multiple * card.size_multiple)
    sides = sorted({max(card.size_multiple, min(side, largest) // card.size_multiple * card.size_multiple)
                    for side in CALIBRATION_SIDES})
    pixels = np.array([side * side for side in sides], dtype=np.float64)
    seconds = np.array([_time_tile(model, side) for side in sides])
    fixed, per_pixel = _fit_run_time(pixels, seconds)
    speed = Speed(per_pixel, model.budget_pixels, model.providers[0], "calibration",
                  step_overhead=measure_step_overhead(), fixed=fixed)
    store_speed(model.path, model.requested_device, speed, card.name)
    return speed


def _fit_run_time(pixels: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """(a, b) >= 0 of seconds = a + b P, least squares through the timings (b alone if a came out negative)."""
    if len(pixels) > 1:
        (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(pixels), pixels], axis=1), seconds, rcond=None)
        if a >= 0.0 and b > 0.0:
            return float(a), float(b)
    return 0.0, float(np.sum(seconds * pixels) / np.sum(pixels * pixels))


def _time_tile(model: OnnxDenoiser, side: int) -> float:
    """Median seconds of one network run on a side x side tile (after a warm-up run of that shape)."""
    rng = np.random.default_rng(0)
    image = rng.uniform(-1.0, 1.0, (1, 3, side, side)).astype(np.float32)
    if model.card.kind == "sr3":
        noise = rng.standard_normal((1, 3, side, side), dtype=np.float32)
        level = np.full((1,), 0.5, dtype=np.float32)

        def once() -> None:
            model.predict(image, noise, level)
    else:
        def once() -> None:
            model.predict_image(image)

    once()  # warm-up: the session allocates its buffers for this shape
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 2 or (time.perf_counter() - started < CALIBRATION_SECONDS and len(times) < 25):
        begin = time.perf_counter()
        once()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def measure_step_overhead(side: int = 256, tile: int = 128, steps: int = 3) -> float:
    """Seconds per image pixel per step of the pipeline's own work: ``run_tiled``'s blend of 128 px tiles
    and a DDPM ``Sampler.step`` with fresh noise, on a 256 x 256 plane, the network replaced by a scaling."""
    rng = np.random.default_rng(0)
    grid = plan_tiles(side, side, tile, 8)
    condition = rng.uniform(-1.0, 1.0, (3, side, side)).astype(np.float32)
    y = rng.standard_normal((3, side, side), dtype=np.float32)
    sampler = Sampler(np.linspace(0.3, 0.9, steps), "ddpm")
    started = time.perf_counter()
    for i in range(steps):
        output = run_tiled(lambda planes: planes[1] * np.float32(0.5), [condition, y], grid,
                           batch_size(grid, CPU_BUDGET_PIXELS))
        y, _ = sampler.step(output, i, y, rng)
    return (time.perf_counter() - started) / (steps * side * side)


def ensure_speeds(models: Sequence[OnnxDenoiser],
                  announce: Callable[[OnnxDenoiser], None] | None = None) -> list[OnnxDenoiser]:
    """Calibrate every model whose speed on its device is not known yet (``announce`` is told first);
    returns those calibrated."""
    calibrated = []
    for model in models:
        if model.card.kind != "onepass" and known_speed(model.path, model.requested_device) is None:
            if announce is not None:
                announce(model)
            calibrate(model)
            calibrated.append(model)
    return calibrated


def record_run(work: Sequence[Work], seconds: float) -> None:
    """Refresh the speeds from a finished run (``work`` planned with the run's sessions): the time the other
    models' work should have taken is taken off, the rest is this model's, and the remembered speed moves
    ``RUN_WEIGHT`` of the way towards it."""
    sessions = [w for w in work if isinstance(w.model, OnnxDenoiser)]
    if seconds <= 0.0 or len(sessions) != len(work):
        return
    speeds = {id(w.model): known_speed(w.model.path, w.model.requested_device)  # type: ignore[attr-defined]
              for w in work}
    for item in work:
        if item.pixel_evaluations <= 0 or not isinstance(item.model, OnnxDenoiser):
            continue
        old = speeds[id(item.model)]
        overhead = old.step_overhead if old is not None else 0.0
        others = sum(w.seconds(s) for w in work if w is not item and (s := speeds[id(w.model)]) is not None)
        own_overhead = item.evaluations * item.image_pixels * overhead
        observed = (seconds - others - own_overhead) / item.pixel_evaluations  # at this run's tile size
        if observed <= 0.0:
            continue
        # the per-pixel cost moves so that this tile size's cost moves halfway towards what it took
        value = observed if old is None else max(0.1 * observed, old.seconds_per_pixel + RUN_WEIGHT * (
            observed - old.per_pixel(item.tile_pixels)))
        runs = (old.runs if old else 0) + 1
        store_speed(item.model.path, item.model.requested_device,
                    Speed(value, item.model.budget_pixels, item.model.providers[0], "runs", runs, overhead,
                          old.fixed if old is not None else 0.0), item.model.card.name)


def store_speed(path: str | Path, device: str, speed: Speed, name: str = "") -> None:
    """Remember ``speed`` for this model file on ``device`` (calibration and runs use this)."""
    key = speed_key(path, device)
    entry = {"seconds_per_pixel": speed.seconds_per_pixel, "budget_pixels": speed.budget_pixels,
             "provider": speed.provider, "source": speed.source, "runs": speed.runs,
             "step_overhead": speed.step_overhead, "fixed": speed.fixed, "model": name,
             "updated": datetime.now().isoformat(timespec="seconds")}
    with _LOCK:
        book = _read_book()
        book[key] = entry
        try:
            speed_file().parent.mkdir(parents=True, exist_ok=True)
            write_atomically(speed_file(), json.dumps({"version": 1, "speeds": book}, indent=1).encode())
        except OSError:
            pass  # an unwritable data folder only costs a calibration next time


def _read_book() -> dict[str, Any]:
    try:
        data = json.loads(speed_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # a damaged file is rebuilt
    speeds = data.get("speeds") if isinstance(data, dict) else None
    return dict(speeds) if isinstance(speeds, dict) else {}
