"""`python -m exporter search-schedule`: the paper's search over inference noise schedules.

SR3 trains with T = 2000 steps and then, for each inference budget, searches the schedule on
validation data (Saharia et al., Sec. 4). Here the search space per budget is: where the chain
starts (pure noise, or a noised bicubic / regression estimate as in Come-Closer-Diffuse-Faster),
at which strength, the sampler (DDPM, DDIM eta = 0), the step spacing and the back-projection
iterations. Winners are written into the card's `inference_presets`:

* `fast`: at most 10 network evaluations, the best PSNR-Y among chains sharper than regression;
* `balanced`: at most 50, the best PSNR-Y among chains whose sharpness matches HR (0.85-1.15);
* `quality`: the paper's algorithm, the full chain from pure noise (DDPM, ``--quality-steps``),
  no back-projection; only the step spacing is searched.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from exporter.evaluate import EvalCrop, load_crops, run_method, score
from sr3_desktop.core.denoiser import OnnxDenoiser
from sr3_desktop.core.model_card import InferencePreset, ModelCard, embed_card
from sr3_desktop.core.pipeline import RefineOptions, back_project
from sr3_desktop.core.schedule import levels_from_preset_schedule

SHARPNESS_RANGE = (0.85, 1.15)
MAX_COLOUR_SHIFT = 1.0
FAST_EVALUATIONS = 10
BALANCED_EVALUATIONS = 50


@dataclass(frozen=True)
class Candidate:
    """One point of the search space."""

    steps: int
    start: str
    strength: float
    sampler: str
    eta: float
    spacing: str
    back_projection: int = 0
    scores: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def evaluations(self) -> int:
        return self.steps + (1 if self.start == "regression" else 0)

    def label(self) -> str:
        sampler = self.sampler if self.sampler == "ddpm" else f"{self.sampler}(eta={self.eta:g})"
        return f"{self.start}@{self.strength:g} {sampler} {self.spacing} {self.steps} steps bp={self.back_projection}"


def candidates_for_budget(budget: int, has_regression: bool, strengths: Sequence[float]) -> list[Candidate]:
    """Chains that start from an estimate, within `budget` network evaluations."""
    starts = ["regression", "bicubic"] if has_regression else ["bicubic"]
    out = []
    for start, strength, (sampler, eta) in itertools.product(starts, strengths, [("ddim", 0.0), ("ddpm", 1.0)]):
        steps = budget - (1 if start == "regression" else 0)
        out.append(Candidate(steps, start, strength, sampler, eta, "uniform"))
    return out


def quality_candidates(budget: int) -> list[Candidate]:
    """The paper's algorithm (full chain from noise, DDPM), with the step spacing searched."""
    return [Candidate(budget, "noise", 1.0, "ddpm", 1.0, spacing) for spacing in ("uniform", "quadratic")]


def evaluate_candidate(cand: Candidate, crops: Sequence[EvalCrop], sr3: OnnxDenoiser,
                       regression: OnnxDenoiser | None, bp_options: Sequence[int], seed: int) -> list[Candidate]:
    """Sample once, then score every back-projection count on the same samples."""
    options = RefineOptions(method="sr3", preset="candidate", custom_preset=to_preset(cand, sr3.card), seed=seed,
                            back_projection=0)
    outputs, seconds = run_method(crops, options, sr3, regression, sr3.card.scale)
    scale = sr3.card.scale
    scored = []
    for bp in bp_options:
        projected = [back_project(o, c.lr, scale, bp) for o, c in zip(outputs, crops, strict=True)]
        scored.append(replace(cand, back_projection=bp, scores={**score(projected, crops, scale),
                                                                 "seconds_per_crop": seconds}))
    return scored


def to_preset(cand: Candidate, card: ModelCard, description: str = "") -> InferencePreset:
    assert card.train_schedule is not None
    schedule = {"type": "train_subsequence", "spacing": cand.spacing}
    levels = levels_from_preset_schedule(schedule, card.train_schedule, cand.steps, cand.strength)
    return InferencePreset(
        steps=len(levels), noise_levels=tuple(float(g) for g in levels), sampler=cand.sampler,  # type: ignore[arg-type]
        eta=cand.eta, start=cand.start, strength=cand.strength, back_projection=cand.back_projection,  # type: ignore[arg-type]
        schedule=schedule, description=description,
        scores={k: round(v, 5) for k, v in cand.scores.items()},
    )


def pick(cands: Sequence[Candidate], sharpness_range: tuple[float, float]) -> Candidate:
    """Highest PSNR-Y among candidates within the sharpness range and colour limit (else least violating)."""
    low, high = sharpness_range

    def ok(c: Candidate) -> bool:
        return low <= c.scores["sharpness"] <= high and c.scores["colour_shift"] <= MAX_COLOUR_SHIFT

    valid = [c for c in cands if ok(c)]
    if valid:
        return max(valid, key=lambda c: c.scores["psnr_y"])
    return min(cands, key=lambda c: abs(c.scores["sharpness"] - 1.0) * 10 + max(0.0, c.scores["colour_shift"] - 1.0)
               - c.scores["psnr_y"] * 0.1)


def describe(cand: Candidate) -> str:
    start = ("pure Gaussian noise (the paper's full chain)" if cand.start == "noise"
             else f"the {cand.start} output noised to strength {cand.strength:g}")
    sampler = "DDPM (paper Alg. 2)" if cand.sampler == "ddpm" else f"DDIM (eta={cand.eta:g})"
    bp = f", then {cand.back_projection} back-projection iterations" if cand.back_projection else ""
    return f"{cand.steps} {sampler} steps from {start}, {cand.spacing} spacing{bp}."


def write_card(model_path: Path, out_path: Path, card: ModelCard) -> None:
    """Embed the new card; write atomically (temp file next to the target, then os.replace)."""
    proto = onnx.load(str(model_path))
    embed_card(proto, card)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="exported SR3 .onnx model; its card is updated in place unless --out")
    parser.add_argument("--data", type=Path, required=True, help="folder of held-out HR photos")
    parser.add_argument("--regression", type=Path, help="regression .onnx, enabling chains that start from it")
    parser.add_argument("--budgets", default="10,20,50", help="network-evaluation budgets of chains that start from "
                        "an estimate (default 10,20,50)")
    parser.add_argument("--quality-steps", type=int, default=100, help="steps of the full chain from noise")
    parser.add_argument("--strengths", default="0.1,0.2,0.3,0.5", help="start strengths to try")
    parser.add_argument("--back-projection", default="0,1,2,3", help="back-projection counts to try (default 0,1,2,3)")
    parser.add_argument("--crop", type=int, default=128, help="HR crop size (default 128)")
    parser.add_argument("--crops-per-image", type=int, default=2, help="crops per image (default 2)")
    parser.add_argument("--max-images", type=int, default=4, help="images to use (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed for crops and sampling")
    parser.add_argument("--device", default="cpu", help="auto|cpu|cuda|... (default cpu)")
    parser.add_argument("--out", type=Path, help="write the updated model here instead of in place")
    parser.add_argument("--report", type=Path, help="JSON with every candidate's scores")


def run(args: argparse.Namespace) -> int:
    sr3 = OnnxDenoiser(args.model, args.device)
    if sr3.card.kind != "sr3":
        raise SystemExit("search-schedule needs an SR3 model")
    regression = OnnxDenoiser(args.regression, args.device) if args.regression else None
    budgets = sorted(int(b) for b in args.budgets.split(","))
    strengths = [float(s) for s in args.strengths.split(",")]
    bps = [int(b) for b in args.back_projection.split(",")]
    crops = load_crops(args.data, args.crop, sr3.card.scale, args.crops_per_image, args.max_images, args.seed)
    started = time.perf_counter()
    reference = {}
    for method, model in (("bicubic", None), ("regression", regression)):
        if method == "bicubic" or model is not None:
            outputs, _ = run_method(crops, RefineOptions(method=method), None, model, sr3.card.scale)
            reference[method] = score(outputs, crops, sr3.card.scale)
            ref = reference[method]
            print(f"{method:<10} PSNR-Y {ref['psnr_y']:.2f} sharpness {ref['sharpness']:.3f}")
    # fast: the most faithful chain that is still sharper than the regression baseline;
    # balanced: the most faithful chain whose sharpness matches the HR photos' (0.85-1.15).
    sharper_than_regression = (reference.get("regression", reference["bicubic"])["sharpness"] + 1e-3,
                               SHARPNESS_RANGE[1])

    tried: dict[int, list[Candidate]] = {}
    for budget in budgets:
        base = candidates_for_budget(budget, regression is not None, strengths)
        tried[budget] = []
        for cand in base:
            for scored in evaluate_candidate(cand, crops, sr3, regression, bps, args.seed):
                tried[budget].append(scored)
                s = scored.scores
                print(f"[{budget:>3}] {scored.label():<58} PSNR-Y {s['psnr_y']:6.2f} sharp {s['sharpness']:.3f} "
                      f"colour {s['colour_shift']:.2f} consist {s['consistency']:.2f}", flush=True)

    tried[args.quality_steps] = tried.get(args.quality_steps, [])
    for cand in quality_candidates(args.quality_steps):
        for scored in evaluate_candidate(cand, crops, sr3, regression, [0], args.seed):
            tried[args.quality_steps].append(scored)
            s = scored.scores
            print(f"[quality] {scored.label():<54} PSNR-Y {s['psnr_y']:6.2f} sharp {s['sharpness']:.3f} "
                  f"colour {s['colour_shift']:.2f} consist {s['consistency']:.2f}", flush=True)

    every = [c for cs in tried.values() for c in cs]
    fast = pick([c for c in every if c.evaluations <= FAST_EVALUATIONS and c.start != "noise"],
                sharper_than_regression)
    balanced = pick([c for c in every if c.evaluations <= BALANCED_EVALUATIONS and c.start != "noise"],
                    SHARPNESS_RANGE)
    quality = pick([c for c in every if c.start == "noise"], (0.0, float("inf")))
    presets = {name: to_preset(c, sr3.card, describe(c))
               for name, c in (("fast", fast), ("balanced", balanced), ("quality", quality))}
    search_info = {"crop": args.crop, "crops": len(crops), "data": args.data.name, "budgets": budgets,
                   "reference": reference, "candidates": len(every),
                   "seconds": round(time.perf_counter() - started, 1)}
    card = sr3.card.with_updates(inference_presets=presets, default_preset="balanced",
                                 metrics={**sr3.card.metrics, "schedule_search": search_info})
    write_card(args.model, args.out or args.model, card)
    for name, preset in presets.items():
        print(f"{name:<9} {preset.description}  scores: {json.dumps(preset.scores)}")
    if args.report:
        args.report.write_text(json.dumps({"reference": reference, "candidates": [
            {"label": c.label(), "evaluations": c.evaluations, **c.scores} for c in every]}, indent=1))
    return 0
