"""`python -m exporter search-schedule`: the paper's search over inference noise schedules, by what people see.

SR3 trains with T = 2000 steps and then, for each inference budget, searches the schedule on
validation data (Saharia et al., Sec. 4). Here a budget is a number of SR3 network evaluations and
the search space is: where the chain starts (a noised regression or bicubic estimate, Come-Closer-
Diffuse-Faster), at which sigma, how the sigmas fall over the steps, the sampler (DDPM, DDIM eta = 0)
and the back-projection iterations. Chains are chosen by the product's targets, relative to the
regression model measured on the same crops, never by sharpness (noise raises sharpness too):
grain 0.85-1.2 on average and <= 1.5 on the worst crop, spectral gap <= 0.45 x regression's,
GMSD <= 1.05 x, PSNR-Y >= regression - 0.5 dB, consistency <= 1e-5, colour shift <= 1 (issue 19), and since the
seventh sitting the 4 px cell grid (metrics.cell_grid) <= 1.1 x regression's: no more grid than the estimate
SR3 refines (regression: 1.43 x the photo's phase spread on the report crops, Real-ESRGAN 1.39; docs/models.md).
Among chains that meet all of them the most faithful (highest PSNR-Y) wins; when none does, the one
that misses by the least.

* `fast`: 1 SR3 evaluation; `balanced`: 2; the default is the one that meets the targets (the faster
  one on a tie) among those of at most 2 network evaluations, the regression pass included; a preset
  worse than regression on every metric is dropped;
* `quality`: the paper's algorithm, the full chain from pure noise (DDPM, ``--quality-steps``); the step
  spacing is searched, and the finish of its last prediction where asked (``--quality-texture-caps``,
  ``--quality-back-projection``; by default none), by PSNR-Y >= bicubic, grain <= 1.5, colour <= 1.5.
The search uses the *search* crops of `load_crops`, disjoint from the crops `evaluate` reports.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from exporter.evaluation.eval_crops import PEOPLE_METRICS, EvalCrop, as_jpeg, load_crops, run_method, score
from exporter.evaluation.targets import CompressedTargets, Targets, quality_misses
from sr3_desktop.core.diffusion.schedule import gamma_of_sigma, levels_from_preset_schedule, strength_of_gamma
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio.atomic import atomic_file
from sr3_desktop.core.model_files.card import (
    COMPRESSED_QUALITY,
    FLAT_AMPLITUDE,
    InferencePreset,
    ModelCard,
    embed_card,
)
from sr3_desktop.core.model_files.denoiser import OnnxDenoiser
from sr3_desktop.core.upscale.grain_floor import add_grain, noise_amplitude
from sr3_desktop.core.upscale.model_space import output_cell
from sr3_desktop.core.upscale.refine_types import RefineOptions
from sr3_desktop.core.upscale.sr3_chain import back_project
from sr3_desktop.core.upscale.texture_cap import cap_texture

PRESET_BUDGETS = {"fast": 1, "balanced": 2}
"""SR3 network evaluations of the short presets (a regression pass comes on top where one is used)."""
MAX_DEFAULT_EVALUATIONS = 2
"""The default preset costs at most this many network evaluations, the regression pass included (issue 19)."""
HIGHER_IS_BETTER = {"psnr_y", "detail_fidelity"}


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: a chain of ``steps`` SR3 evaluations and its back-projection."""

    steps: int
    start: str
    sigma_start: float
    sigma_end: float
    sampler: str
    eta: float
    back_projection: int = 0
    spacing: str = "sigma_geometric"
    texture_cap: float = 0.0
    texture_gain: float = 1.0
    flat_amplitude: float = FLAT_AMPLITUDE
    deblock: bool = False
    grain: float = 0.0
    scores: dict[str, float] = field(default_factory=dict, compare=False)

    def label(self) -> str:
        sampler = self.sampler if self.sampler == "ddpm" else f"{self.sampler}(eta={self.eta:g})"
        sigmas = f"sigma {self.sigma_start:g}" + (f"->{self.sigma_end:g}" if self.steps > 1 else "")
        cap = f" cap={self.texture_cap:g}" if self.texture_cap else ""
        cap += f" knee={self.flat_amplitude:g}" if self.texture_cap and self.flat_amplitude != FLAT_AMPLITUDE else ""
        cap += f" gain={self.texture_gain:g}" if self.texture_gain != 1.0 else ""
        cap += " deblock" if self.deblock else ""
        cap += f" grain={self.grain:g}" if self.grain else ""
        return f"{self.start} {sigmas} {sampler} {self.spacing} {self.steps} steps bp={self.back_projection}{cap}"


def short_candidates(budget: int, starts: Sequence[str], sigmas: Sequence[float], ratios: Sequence[float],
                     ) -> list[Candidate]:
    """Chains of ``budget`` steps from a noised estimate; sigma falls geometrically by ``ratio`` overall."""
    out = []
    samplers = [("ddpm", 1.0)] if budget == 1 else [("ddpm", 1.0), ("ddim", 0.0)]
    for start, sigma, ratio, (sampler, eta) in itertools.product(starts, sigmas, ratios if budget > 1 else [1.0],
                                                                 samplers):
        out.append(Candidate(budget, start, sigma, sigma * ratio, sampler, eta))
    return out


def quality_candidates(steps: int) -> list[Candidate]:
    """The paper's algorithm (full chain from noise, DDPM), with the step spacing searched."""
    return [Candidate(steps, "noise", 0.0, 0.0, "ddpm", 1.0, spacing=spacing) for spacing in ("uniform", "quadratic")]


def to_preset(cand: Candidate, card: ModelCard, description: str = "") -> InferencePreset:
    assert card.train_schedule is not None
    schedule: dict[str, str | float]
    if cand.start == "noise":
        schedule = {"type": "train_subsequence", "spacing": cand.spacing}
        strength = 1.0
    else:
        schedule = {"type": "sigma_geometric", "sigma_start": cand.sigma_start, "sigma_end": cand.sigma_end}
        strength = strength_of_gamma(card.train_schedule, gamma_of_sigma(cand.sigma_start))
    levels = levels_from_preset_schedule(schedule, card.train_schedule, cand.steps, strength)
    return InferencePreset(
        steps=len(levels), noise_levels=tuple(float(g) for g in levels), sampler=cand.sampler,  # type: ignore[arg-type]
        eta=cand.eta, start=cand.start, strength=strength, back_projection=cand.back_projection,  # type: ignore[arg-type]
        texture_cap=cand.texture_cap, texture_gain=cand.texture_gain, flat_amplitude=cand.flat_amplitude,
        grain=cand.grain, deblock=cand.deblock, schedule=schedule, description=description,
        scores={k: round(v, 5) for k, v in cand.scores.items()},
    )


def evaluate_candidate(cand: Candidate, crops: Sequence[EvalCrop], sr3: OnnxDenoiser,
                       regression: OnnxDenoiser | None, bp_options: Sequence[int], seed: int,
                       anchors: Sequence[np.ndarray] | None = None, caps: Sequence[float] = (0.0,),
                       gains: Sequence[float] = (1.0,), deblocks: Sequence[bool] = (False,),
                       flats: Sequence[float] = (FLAT_AMPLITUDE,), grains: Sequence[float] = (0.0,),
                       ) -> list[Candidate]:
    """Sample once, then score every deblocking, texture cap, cap knee (``flats``, tried with a cap > 0 only),
    gain, grain floor and back-projection count on the same samples (the chain deblocks and caps, adds the
    grain, then back-projects; ``anchors``: each crop's condition as an image, needed for a cap > 0, a gain
    other than 1 or deblocking)."""
    options = RefineOptions(method="sr3", preset="candidate", custom_preset=to_preset(cand, sr3.card), seed=seed,
                            back_projection=0)
    outputs, seconds = run_method(crops, options, sr3, regression, sr3.card.scale)
    scale = sr3.card.scale
    if anchors is None and (any(caps) or any(g != 1.0 for g in gains) or any(deblocks)):
        raise ValueError("a texture cap, gain or deblocking needs the crops' anchors")
    scored = []
    finishes = [(deblock, cap, flat, gain) for deblock, cap, gain in itertools.product(deblocks, caps, gains)
                for flat in (flats if cap > 0.0 else flats[:1])]  # the knee shapes the cap only
    noise = [noise_amplitude(c.lr) for c in crops] if any(grains) else [0.0] * len(crops)
    for deblock, cap, flat, gain in finishes:
        cell = output_cell(sr3.card) if deblock else 1
        capped = [cap_texture(o, a, cap, gain, cell, flat=flat) for o, a in zip(outputs, anchors, strict=True)] \
            if anchors is not None else outputs
        for grain in grains:
            grained = [add_grain(o, grain * n, seed) for o, n in zip(capped, noise, strict=True)]
            for bp in bp_options:
                projected = [back_project(o, c.lr, scale, bp) for o, c in zip(grained, crops, strict=True)]
                scored.append(replace(cand, back_projection=bp, texture_cap=cap, texture_gain=gain,
                                      flat_amplitude=flat, deblock=deblock, grain=grain,
                                      scores={**score(projected, crops, scale), "seconds_per_crop": seconds}))
    return scored


def pick(cands: Sequence[Candidate], misses: dict[Candidate, dict[str, float]]) -> Candidate:
    """The highest PSNR-Y among candidates that miss nothing, else the one that misses by the least."""
    met = [c for c in cands if not any(misses[c].values())]
    if met:
        return max(met, key=lambda c: c.scores["psnr_y"])
    return min(cands, key=lambda c: (sum(misses[c].values()), -c.scores["psnr_y"]))


def worse_than_regression_everywhere(s: dict[str, float], regression: dict[str, float]) -> bool:
    """True if regression is at least as good on every metric people judge by (grain: nearer 1)."""
    def better(key: str) -> bool:
        if key == "grain":
            return abs(s[key] - 1.0) < abs(regression[key] - 1.0)
        return s[key] > regression[key] if key in HIGHER_IS_BETTER else s[key] < regression[key]

    # grid is a defect to avoid, not a merit: having none (a flat output has none) keeps no preset
    return not any(better(key) for key in PEOPLE_METRICS if key != "grid")


def _finish(cand: Candidate, anchor: str, cell: int) -> str:
    """The texture cap, gain and back-projection of a chain, in words (empty when there are none)."""
    parts = [f"its added detail smoothed across the U-Net's {cell} px cells"] if cand.deblock else []
    if cand.texture_cap:
        knee = f" (fading below a fine band of {cand.flat_amplitude:g})" if cand.flat_amplitude != FLAT_AMPLITUDE \
            else ""
        parts.append(f"its added detail capped at {cand.texture_cap:g}x the {anchor}'s on flat areas{knee}")
    if cand.texture_gain != 1.0:
        parts.append(f"amplified up to {cand.texture_gain:g}x" + (" where the cap leaves room" if cand.texture_cap
                                                                  else ""))
    if cand.grain:
        parts.append(f"grain where it is smoother than {cand.grain:g}x the input's noise")
    if cand.back_projection:
        parts.append(f"then {cand.back_projection} back-projection iterations")
    return "".join(", " + part for part in parts)


def describe(cand: Candidate, card: ModelCard) -> str:
    if cand.start == "noise":
        finish = _finish(cand, card.condition, output_cell(card)) + (
            "" if cand.back_projection else ", no back-projection")
        return (f"The paper's algorithm: {cand.steps} DDPM steps (Alg. 2) from pure Gaussian noise, "
                f"{cand.spacing} spacing{finish}.")
    sampler = "DDPM (Alg. 2)" if cand.sampler == "ddpm" else f"DDIM (eta={cand.eta:g})"
    base = "regression" if cand.start == "regression" else "bicubic"
    sigmas = f"sigma {cand.sigma_start:g}" + (f" down to {cand.sigma_end:g}" if cand.steps > 1 else "")
    word = "step" if cand.steps == 1 else "steps"
    finish = _finish(cand, base, output_cell(card))
    return f"{cand.steps} SR3 {sampler} {word} refining the {base} output noised to {sigmas}{finish}."


def write_card(model_path: Path, out_path: Path, card: ModelCard) -> None:
    """Embed the new card; write with the atomic writer (temp file next to the target, then os.replace)."""
    proto = onnx.load(str(model_path))
    embed_card(proto, card)
    with atomic_file(out_path) as handle:
        onnx.save_model(proto, handle)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="exported SR3 .onnx model; its card is updated in place unless --out")
    parser.add_argument("--data", type=Path, required=True, help="folder of held-out HR photos")
    parser.add_argument("--regression", type=Path, help="regression .onnx: the reference the targets are relative to "
                        "(without it, bicubic; allowed only when no preset starts from regression), "
                        "and the condition / start estimate of the chains")
    parser.add_argument("--quality-steps", type=int, default=50, help="steps of the full chain from noise (default 50)")
    parser.add_argument("--texture-gains", default="1",
                        help="texture gains to try with each cap on the short chains (1: the detail as sampled, "
                             "e.g. 1,1.25,1.5: amplified up to that factor where the cap leaves room)")
    parser.add_argument("--flat-amplitudes", default=f"{FLAT_AMPLITUDE:g}",
                        help="knees of the texture cap to try with each cap > 0 (anchor fine-band amplitudes below "
                             "which the cap shrinks by the square of the shortfall; default "
                             f"{FLAT_AMPLITUDE:g}, e.g. 5e-4,1e-3,2e-3: larger keeps more flat areas flat)")
    parser.add_argument("--grains", default="0",
                        help="grain floors to try on the short chains, as multiples of the input's noise (0: none, "
                             "e.g. 0,1.5,2; see upscale.grain_floor)")
    parser.add_argument("--deblock", default="0",
                        help="deblocking of the added detail to try on every chain (0,1: both; see "
                             "upscale.texture_cap.smooth_cell_borders)")
    parser.add_argument("--quality-texture-caps", default="0",
                        help="texture caps to try on the full chain's last prediction (default 0: off)")
    parser.add_argument("--quality-grains", default="0", help="grain floors to try on the full chain (default 0)")
    parser.add_argument("--quality-back-projection", default="0",
                        help="back-projection counts to try after the full chain (default 0)")
    parser.add_argument("--sigmas", default="0.05,0.1,0.2,0.3,0.45,0.6",
                        help="start sigmas sqrt((1 - gamma) / gamma) to try (default 0.05,...,0.6)")
    parser.add_argument("--end-ratios", default="0.5,0.25", help="sigma_end / sigma_start of 2-step chains")
    parser.add_argument("--back-projection", default="0,1,2,3", help="back-projection counts to try (default 0,1,2,3)")
    parser.add_argument("--texture-caps", default="0",
                        help="texture caps to try on the short chains (0: off, e.g. 0,2.5,3; see upscale.texture_cap)")
    parser.add_argument("--crop", type=int, default=256, help="HR crop size (default 256)")
    parser.add_argument("--crops-per-image", type=int, default=3, help="search crops per image (default 3)")
    parser.add_argument("--max-images", type=int, help="images to use (default all)")
    parser.add_argument("--seed", type=int, default=0, help="seed for crops and sampling")
    parser.add_argument("--device", default="cpu", help="auto|cpu|cuda|... (default cpu)")
    parser.add_argument("--out", type=Path, help="write the updated model here instead of in place")
    parser.add_argument("--report", type=Path, help="JSON with every candidate's scores")
    parser.add_argument("--jpeg", type=int, default=0,
                        help="also search the compressed preset, the one-step chain that inputs saved as JPEG at "
                             "quality <= 90 run in place of the default, on the crops saved at this quality "
                             "(e.g. 75; default 0: none)")
    parser.add_argument("--jpeg-texture-caps", default="2,4,6", help="texture caps to try on JPEG inputs")
    parser.add_argument("--jpeg-flat-amplitudes", default="1e-3,2e-3,4e-3", help="cap knees to try on JPEG inputs")
    parser.add_argument("--jpeg-grains", default="0", help="grain floors to try on JPEG inputs (default 0)")


def search_compressed(args: argparse.Namespace, crops: Sequence[EvalCrop], sr3: OnnxDenoiser,
                      regression: OnnxDenoiser) -> tuple[Candidate, dict[str, Any], list[dict[str, Any]]]:
    """The compressed preset: among one-step chains from the regression output (the default's budget), the one
    that best meets ``CompressedTargets`` on ``crops`` saved as JPEG at ``args.jpeg``; with the search's
    summary and every candidate's row for the report."""
    jpeg_crops, scale = as_jpeg(crops, args.jpeg), sr3.card.scale
    bicubic, _ = run_method(jpeg_crops, RefineOptions(method="bicubic"), None, None, scale)
    anchors, _ = run_method(jpeg_crops, RefineOptions(method="regression"), None, regression, scale)
    reference = {"bicubic": score(bicubic, jpeg_crops, scale), "regression": score(anchors, jpeg_crops, scale)}
    targets, misses, every = CompressedTargets(), {}, []
    for cand in short_candidates(1, ["regression"], _floats(args.sigmas), [1.0]):
        for scored in evaluate_candidate(cand, jpeg_crops, sr3, regression, _ints(args.back_projection), args.seed,
                                         anchors, _floats(args.jpeg_texture_caps) or [0.0], (1.0,), (False,),
                                         _floats(args.jpeg_flat_amplitudes) or [FLAT_AMPLITUDE],
                                         _floats(args.jpeg_grains) or [0.0]):
            misses[scored] = targets.misses(scored.scores, reference["bicubic"], reference["regression"])
            every.append(scored)
            _print(f"jpeg{args.jpeg}", scored, misses[scored])
    chosen = pick(every, misses)
    summary = {"quality": args.jpeg, "reference": reference, "candidates": len(every), "chosen": chosen.label(),
               "targets_met": not any(misses[chosen].values())}
    rows = [{"label": c.label(), "set": f"jpeg{args.jpeg}", "steps": c.steps, "misses": misses[c], **c.scores}
            for c in every]
    return chosen, summary, rows


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def run(args: argparse.Namespace) -> int:
    if args.quality_steps < 1:  # found before the search, not after it
        raise SR3Error(f"--quality-steps must be >= 1 (the full chain's steps from noise), got {args.quality_steps}")
    sr3 = OnnxDenoiser(args.model, args.device)
    if sr3.card.kind != "sr3":
        raise SR3Error(f"search-schedule needs an SR3 model; {args.model.name} is a {sr3.card.kind} model")
    card = sr3.card
    needs_regression = card.condition == "regression" or any(
        p.start == "regression" for p in card.inference_presets.values())
    if args.regression is None and needs_regression:
        raise SR3Error("search-schedule needs --regression: this model is conditioned on a regression model, or "
                       "one of its presets starts from a regression estimate")
    regression = OnnxDenoiser(args.regression, args.device) if args.regression is not None else None
    baseline = "regression" if regression is not None else "bicubic"
    if regression is None:  # a converted model: no preset uses regression, so the chains are judged against bicubic
        print("no --regression and no preset starts from one: the targets are relative to bicubic", flush=True)
    scale = sr3.card.scale
    crops = load_crops(args.data, args.crop, scale, args.crops_per_image, args.max_images, args.seed, "search")
    started = time.perf_counter()
    reference, anchors = {}, {}
    for method in ("bicubic", "regression") if regression is not None else ("bicubic",):
        outputs, _ = run_method(crops, RefineOptions(method=method), None, regression, scale)
        reference[method], anchors[method] = score(outputs, crops, scale), outputs
        ref = reference[method]
        print(f"{method:<10} PSNR-Y {ref['psnr_y']:.2f} GMSD {ref['gmsd']:.4f} grain {ref['grain']:.2f} "
              f"spectral gap {ref['spectral_gap']:.3f} grid {ref['grid']:.2f}", flush=True)
    targets = Targets()
    starts = ["regression"] if card.condition == "regression" else ["regression", "bicubic"]
    starts = starts if regression is not None else ["bicubic"]
    bps = _ints(args.back_projection)
    deblocks = [bool(v) for v in _ints(args.deblock)] or [False]
    flats = _floats(args.flat_amplitudes) or [FLAT_AMPLITUDE]
    condition = "regression" if card.condition == "regression" and regression is not None else "bicubic"
    misses: dict[Candidate, dict[str, float]] = {}
    every: list[Candidate] = []
    for name, budget in PRESET_BUDGETS.items():
        for cand in short_candidates(budget, starts, _floats(args.sigmas), _floats(args.end_ratios)):
            for scored in evaluate_candidate(cand, crops, sr3, regression, bps, args.seed, anchors[condition],
                                             _floats(args.texture_caps) or [0.0], _floats(args.texture_gains) or [1.0],
                                             deblocks, flats, _floats(args.grains) or [0.0]):
                misses[scored] = targets.misses(scored.scores, reference[baseline])
                every.append(scored)
                _print(name, scored, misses[scored])
    for cand in quality_candidates(args.quality_steps):
        for scored in evaluate_candidate(cand, crops, sr3, regression, _ints(args.quality_back_projection),
                                         args.seed, anchors[condition], _floats(args.quality_texture_caps) or [0.0],
                                         (1.0,), deblocks, flats, _floats(args.quality_grains) or [0.0]):
            misses[scored] = quality_misses(scored.scores, reference["bicubic"])
            every.append(scored)
            _print("quality", scored, misses[scored])

    chosen = {name: pick([c for c in every if c.start != "noise" and c.steps == budget], misses)
              for name, budget in PRESET_BUDGETS.items()}
    dropped = [name for name, c in chosen.items()
               if worse_than_regression_everywhere(c.scores, reference[baseline])]
    kept = {name: c for name, c in chosen.items() if name not in dropped}
    chosen_quality = pick([c for c in every if c.start == "noise"], misses)
    affordable = [n for n, c in kept.items() if c.steps + (c.start == "regression") <= MAX_DEFAULT_EVALUATIONS]
    default = min(affordable, key=lambda n: (sum(misses[kept[n]].values()), kept[n].steps)) if affordable \
        else "quality"
    presets = {name: to_preset(c, sr3.card, describe(c, sr3.card)) for name, c in kept.items()}
    presets["quality"] = to_preset(chosen_quality, sr3.card, describe(chosen_quality, sr3.card))
    compressed: dict[str, Any] = {}
    jpeg_rows: list[dict[str, Any]] = []
    if args.jpeg and regression is not None:
        cand, compressed, jpeg_rows = search_compressed(args, crops, sr3, regression)
        presets["compressed"] = to_preset(cand, sr3.card, describe(cand, sr3.card) + (
            f" Runs in place of the default on inputs saved as JPEG at quality <= {COMPRESSED_QUALITY}."))
    search_info = {
        "crop": args.crop, "crops": len(crops), "role": "search", "data": args.data.name,
        "reference": reference, "candidates": len(every), "dropped": dropped, "default": default,
        "targets_met": {name: not any(misses[c].values()) for name, c in [*kept.items(), ("quality", chosen_quality)]},
        "seconds": round(time.perf_counter() - started, 1), **({"compressed": compressed} if compressed else {}),
    }
    card = sr3.card.with_updates(inference_presets=presets, default_preset=default,
                                 compressed_preset="compressed" if compressed else "",
                                 metrics={**sr3.card.metrics, "schedule_search": search_info})
    write_card(args.model, args.out or args.model, card)
    for name, preset in presets.items():
        flag = " (default)" if name == default else ""
        print(f"{name:<9}{flag} {preset.description}  scores: {json.dumps(preset.scores)}")
    if dropped:
        print(f"dropped (worse than regression on every metric): {', '.join(dropped)}")
    if args.report:
        with atomic_file(args.report) as handle:
            handle.write(json.dumps({"reference": reference, "default": default, "candidates": [
                {"label": c.label(), "steps": c.steps, "misses": misses[c], **c.scores} for c in every],
                **({"compressed_candidates": jpeg_rows} if jpeg_rows else {})},
                indent=1).encode())
    return 0


def _print(name: str, cand: Candidate, missed: dict[str, float]) -> None:
    s = cand.scores
    flag = "ok" if not any(missed.values()) else "miss " + ",".join(k for k, v in missed.items() if v)
    print(f"[{name:>8}] {cand.label():<62} PSNR-Y {s['psnr_y']:6.2f} GMSD {s['gmsd']:.4f} grain {s['grain']:.2f} "
          f"gap {s['spectral_gap']:.3f} consist {s['consistency']:.2f} colour {s['colour_shift']:.2f} "
          f"grid {s.get('grid', 0.0):.2f}  {flag}", flush=True)
