"""`python -m exporter convert CHECKPOINT --config CONFIG.json -o OUT.onnx [--name NAME]`.

Converts a checkpoint of the public SR3 implementation (Janspiry/Image-Super-Resolution-via-Iterative-
Refinement, ``which_model_G: "sr3"``) to an ONNX model with our card: the network is rebuilt from what its
weights tell, the rest comes from its options file, and where the two disagree the conversion is refused
naming the key. PyTorch and onnxruntime are compared before anything is written; any refusal exits 1 and
leaves no file behind.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from exporter.convert import sr3_reference
from exporter.convert.reference_files import (
    CheckpointFiles,
    ConvertError,
    network_state,
    option,
    read_options,
    reference_betas,
    resolve,
)
from exporter.export.graph_io import OPSET, PARITY_TOLERANCE, GraphIO, build_card, parity, to_onnx, write_onnx
from exporter.unet import count_parameters
from sr3_desktop.core.diffusion.schedule import ScheduleError, ScheduleSpec, inference_levels
from sr3_desktop.core.model_files.card import InferencePreset, ModelCard

IMPLEMENTATION = "Janspiry/Image-Super-Resolution-via-Iterative-Refinement"
NAMED_KINDS = {"linear": "linear", "quad": "quadratic", "cosine": "cosine"}
"""The reference's schedules the core knows by name; the others are stored as explicit betas."""
DDIM_PRESETS = (("fast", 20), ("balanced", 50))


@dataclass
class Conversion:
    """A converted network, its card, and what was read from where (printed by the command)."""

    model: torch.nn.Module
    card: ModelCard
    report: list[str] = field(default_factory=list)


def _check(config: dict[str, Any], key: str, from_weights: Any, file: str) -> None:
    """Refuse a config value that contradicts the weights (an absent key is fine: the weights tell)."""
    value = option(config, key)
    if value is None:
        return
    if isinstance(from_weights, tuple):
        value = tuple(value) if isinstance(value, list) else value
    if value != from_weights:
        raise ConvertError(f"{file} says {key} = {option(config, key)!r}, but the weights have {from_weights!r}")


def _scale(config: dict[str, Any], file: str) -> tuple[int, int, int]:
    """(l_resolution, r_resolution, scale) from the datasets; every dataset must agree."""
    datasets = option(config, "datasets", {}) or {}
    sizes = {(d.get("l_resolution"), d.get("r_resolution")) for d in datasets.values() if isinstance(d, dict)}
    sizes.discard((None, None))
    if len(sizes) != 1:
        raise ConvertError(f"{file} must give one datasets.*.l_resolution / r_resolution pair, found {sorted(sizes)}")
    low, high = sizes.pop()
    if not isinstance(low, int) or not isinstance(high, int) or low < 1 or high % low or not 1 <= high // low <= 16:
        raise ConvertError(f"{file}: datasets.*.r_resolution {high} / l_resolution {low} is not a whole scale 1..16")
    return low, high, high // low


def _train_schedule(config: dict[str, Any], state: dict[str, torch.Tensor], file: str) -> tuple[ScheduleSpec, str]:
    """The training schedule from the config, checked against the checkpoint's ``betas`` buffer."""
    buffer = state.get("betas")
    entry = option(config, "model.beta_schedule.train")
    if isinstance(entry, dict):
        kind, betas = reference_betas(entry, "model.beta_schedule.train")
        if buffer is not None and (buffer.numel() != betas.size or not np.allclose(
                buffer.double().numpy(), betas, rtol=1e-5, atol=1e-9)):
            raise ConvertError(f"{file} says model.beta_schedule.train = {entry}, but the checkpoint's betas "
                               f"buffer ({buffer.numel()} steps, {float(buffer[0]):.3g} .. {float(buffer[-1]):.3g}) "
                               "is another schedule")
        note = "from the config, matching the checkpoint's betas" if buffer is not None else "from the config"
    elif buffer is not None:
        kind, betas, note = "buffer", buffer.double().numpy(), "the checkpoint's betas buffer"
    else:
        raise ConvertError(f"neither the checkpoint nor {file} (model.beta_schedule.train) gives the schedule")
    return _schedule_spec(kind, betas, entry if isinstance(entry, dict) else {}), note


def _schedule_spec(kind: str, betas: np.ndarray, entry: dict[str, Any]) -> ScheduleSpec:
    try:
        if kind in NAMED_KINDS:
            return ScheduleSpec(NAMED_KINDS[kind], betas.size, float(entry.get("linear_start", 1e-4)),  # type: ignore[arg-type]
                                float(entry.get("linear_end", 2e-2)))
        return ScheduleSpec("explicit", betas.size, explicit_betas=tuple(float(b) for b in betas))
    except ScheduleError as err:
        raise ConvertError(f"the {kind} schedule cannot be run by this app: {err}") from None


def presets(config: dict[str, Any], train: ScheduleSpec) -> dict[str, InferencePreset]:
    """quality: the implementation's own chain over the val schedule (every step, from pure noise, DDPM);
    fast / balanced: DDIM over the training schedule from noise, not searched (no regression model needed)."""
    entry = option(config, "model.beta_schedule.val")
    if not isinstance(entry, dict):
        raise ConvertError("the config has no model.beta_schedule.val, the schedule of the implementation's own chain")
    kind, betas = reference_betas(entry, "model.beta_schedule.val")
    levels = np.cumprod(1.0 - betas)[::-1]  # its p_sample_loop: t = T-1 .. 0 sees alphas_cumprod[t]
    if kind == "linear":
        schedule = {"type": "linear", "beta_start": float(betas[0]), "beta_end": float(betas[-1])}
    else:
        schedule = {"type": "reference_val", "schedule": kind}
    result = {}
    for name, steps in DDIM_PRESETS:
        chain = inference_levels(train, steps, 1.0, "uniform")
        result[name] = InferencePreset(
            steps=len(chain), noise_levels=tuple(float(g) for g in chain), sampler="ddim", eta=0.0,
            start="noise", schedule={"type": "train_subsequence", "spacing": "uniform"},
            description=f"Not searched: {len(chain)} DDIM steps from pure noise over the training schedule "
                        "(run `python -m exporter search-schedule` on your photos to tune it).")
    try:
        result["quality"] = InferencePreset(
            steps=betas.size, noise_levels=tuple(float(g) for g in levels), sampler="ddpm", start="noise",
            schedule=schedule, description=f"The implementation's own chain: {betas.size} DDPM steps from "
                                           f"pure noise over its val schedule ({kind}).")
    except ValueError as err:
        raise ConvertError(f"model.beta_schedule.val cannot be run by this app: {err}") from None
    return result


def convert_state(state: dict[str, torch.Tensor], config: dict[str, Any], files: CheckpointFiles, config_file: str,
                  name: str | None = None) -> Conversion:
    """The module and card of a reference checkpoint; refuses what is not one, or contradicts its config."""
    ckpt = files.network.name
    kind = option(config, "model.which_model_G")
    if kind is not None and kind != "sr3":
        raise ConvertError(f"{config_file}: model.which_model_G is {kind!r}; only the 'sr3' network converts")
    if option(config, "model.diffusion.conditional") is False:
        raise ConvertError(f"{config_file}: model.diffusion.conditional is false: an unconditional model "
                           "generates images without an input, it does not upscale one")
    if not sr3_reference.detect(state):
        raise ConvertError(f"{ckpt} is not a checkpoint of that implementation's SR3 network "
                           f"(no {sr3_reference.PREFIX}{sr3_reference.SIGNATURE[0]})")
    groups = option(config, "model.unet.norm_groups") or 32  # its default when absent
    try:
        hyper = sr3_reference.infer(state, int(groups))
    except sr3_reference.ArchitectureError as err:
        raise ConvertError(f"{ckpt}: {err}") from None
    if hyper.in_channel != 2 * hyper.out_channel or hyper.out_channel != 3:
        raise ConvertError(f"{ckpt} takes {hyper.in_channel} channels to {hyper.out_channel}: not an RGB model "
                           "conditioned on its input (6 -> 3); an unconditional model cannot upscale")
    low, high, scale = _scale(config, config_file)
    image_size = int(option(config, "model.diffusion.image_size") or high)
    for key, value in (("model.unet.in_channel", hyper.in_channel), ("model.unet.out_channel", hyper.out_channel),
                       ("model.unet.inner_channel", hyper.inner_channel), ("model.unet.res_blocks", hyper.res_blocks),
                       ("model.unet.channel_multiplier", hyper.channel_multiplier),
                       ("model.unet.attn_res", hyper.attn_res(image_size))):
        _check(config, key, value, config_file)
    if image_size % hyper.size_multiple:
        raise ConvertError(f"{config_file}: model.diffusion.image_size {image_size} is not a multiple of "
                           f"{hyper.size_multiple}, which the network's {len(hyper.channel_multiplier)} levels need")
    try:
        model = sr3_reference.SR3ReferenceUNet(hyper)
    except ValueError as err:  # GroupNorm: groups must divide every width
        raise ConvertError(f"{config_file}: model.unet.norm_groups = {groups} does not divide "
                           f"the widths ({err})") from None
    try:
        model.load_state_dict({k: v for k, v in state.items() if k.startswith(sr3_reference.PREFIX)}, strict=True)
    except RuntimeError as err:
        raise ConvertError(f"{ckpt} does not load into the network its weights describe: "
                           f"{str(err).splitlines()[1].strip()[:300]}") from None
    model.eval().requires_grad_(False)
    train, schedule_note = _train_schedule(config, state, config_file)
    card = _card(hyper, model, config, files, config_file, name, (low, high, scale, image_size), train)
    report = [
        f"read {ckpt} ({_iteration(files)}): the SR3 U-Net of {IMPLEMENTATION}",
        f"  from the weights: {hyper.in_channel} -> {hyper.out_channel} channels, inner_channel "
        f"{hyper.inner_channel}, channel_multiplier {list(hyper.channel_multiplier)}, res_blocks "
        f"{hyper.res_blocks}, attention at {list(hyper.attn_res(image_size))} px and in the middle block, "
        f"{count_parameters(model)} parameters",
        f"  from {config_file}: norm_groups {groups}, image_size {image_size}, {low} -> {high} px ({scale}x), "
        f"train schedule {train.kind} T={train.steps} ({schedule_note}), "
        f"val schedule {card.preset('quality').steps} steps",
    ]
    return Conversion(model, card, report)


def _iteration(files: CheckpointFiles) -> str:
    return f"iteration {files.iteration}, epoch {files.epoch}" if files.iteration is not None else "no iteration"


def _card(hyper: sr3_reference.Hyper, model: torch.nn.Module, config: dict[str, Any], files: CheckpointFiles,
          config_file: str, name: str | None, sizes: tuple[int, int, int, int], train: ScheduleSpec) -> ModelCard:
    low, high, scale, image_size = sizes
    levels = hyper.attention_levels
    run = str(config.get("name") or files.network.parent.name or "converted")
    return build_card(
        GraphIO("sr3", hyper.size_multiple), presets(config, train), "balanced",
        name=name or f"SR3 {scale}x ({run}, {_iteration(files)})", scale=scale,
        prediction="epsilon", target="hr", noise_conditioning="sqrt_gamma", condition="bicubic",
        train_schedule=train,
        description=(f"SR3 {scale}x from {low} px to {high} px, converted from {files.network.name} of "
                     f"{IMPLEMENTATION}; its self-attention spans the whole {image_size} px image it was trained on."),
        architecture={"family": "sr3-reference", "in_channel": hyper.in_channel, "inner_channel": hyper.inner_channel,
                      "channel_multiplier": list(hyper.channel_multiplier), "res_blocks": hyper.res_blocks,
                      "attn_res": list(hyper.attn_res(image_size)), "norm_groups": hyper.norm_groups,
                      "image_size": image_size, "parameters": count_parameters(model), "precision": "fp32"},
        attention_downsample=2 ** min(levels) if levels else hyper.size_multiple,
        native_input_size=low,
        fixed_tile_size=image_size,
        source={"implementation": IMPLEMENTATION, "file": files.network.name, "iteration": files.iteration,
                "epoch": files.epoch, "config": config_file},
    )


def convert(checkpoint: str | Path, config: str | Path, out: str | Path, name: str | None = None,
            opset: int = OPSET) -> tuple[Conversion, list[dict[str, float | int]]]:
    """Convert, check parity (PyTorch against onnxruntime, two sizes), then write ``out`` atomically."""
    out, config = Path(out), Path(config)
    files = resolve(checkpoint)
    if out.resolve() in (files.network.resolve(), config.resolve()):
        raise ConvertError(f"-o {out} would overwrite an input; choose another output file")
    conversion = convert_state(network_state(files), read_options(config), files, config.name, name)
    spec = GraphIO("sr3", conversion.card.size_multiple)
    proto = to_onnx(conversion.model, spec, opset)
    entries = parity(conversion.model, proto, spec)
    worst = max(float(e["max_abs_diff"]) for e in entries)
    if not worst <= PARITY_TOLERANCE:
        raise ConvertError(f"onnxruntime differs from PyTorch by {worst:.3g} (tolerance {PARITY_TOLERANCE:g}); "
                           "nothing was written")
    write_onnx(proto, conversion.card, out)
    return conversion, entries


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path,
                        help="I<iter>_E<epoch>_gen.pth, its _opt.pth, or the prefix I<iter>_E<epoch>")
    parser.add_argument("--config", required=True, type=Path, help="the options JSON it was trained with")
    parser.add_argument("-o", "--output", required=True, type=Path, help="the .onnx file to write")
    parser.add_argument("--name", help="model name shown in the app (default: made from scale, run and iteration)")
    parser.add_argument("--opset", type=int, default=OPSET, choices=(17, 18), help=f"ONNX opset (default {OPSET})")


def run(args: argparse.Namespace) -> int:
    conversion, entries = convert(args.checkpoint, args.config, args.output, args.name, args.opset)
    card = conversion.card
    for line in conversion.report:
        print(line)
    sizes = ", ".join(f"{e['max_abs_diff']:.1e} at {e['width']}x{e['height']}" for e in entries)
    print(f"parity: onnxruntime matches PyTorch within {PARITY_TOLERANCE:g} (max abs diff {sizes}, batch 2)")
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.1f} MB): {card.name!r}, sr3 {card.scale}x, "
          f"native input {card.native_input_size} px, tiles of {card.fixed_tile_size} px or none, presets "
          f"{', '.join(card.preset_names())} (default {card.default_preset}; fast and balanced not searched)")
    return 0
