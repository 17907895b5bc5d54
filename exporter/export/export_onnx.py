"""`python -m exporter export CKPT -o model.onnx`: EMA weights to a single-file ONNX graph with the model card.

The graph has dynamic N, H and W (exported from a batch-2 example so N is not frozen). SR3 takes
(lr_up, y_t, noise_level) and returns ``prediction``; regression takes lr_up and returns ``y``.
"""

from __future__ import annotations

import argparse
import io
import shlex
import warnings
from pathlib import Path
from typing import Any, cast

import onnx
import torch
from torch import nn

from exporter.config import TrainConfig
from exporter.training.checkpoint import load_checkpoint
from exporter.unet import UNet, count_parameters
from sr3_desktop.core.diffusion.schedule import ScheduleSpec, inference_levels
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.imageio.atomic import atomic_file
from sr3_desktop.core.model_files.card import (
    REGRESSION_INPUTS,
    REGRESSION_OUTPUTS,
    SR3_INPUTS,
    SR3_OUTPUTS,
    InferencePreset,
    ModelCard,
    embed_card,
)

OPSET = 17
DYNAMIC = {0: "N", 2: "H", 3: "W"}


class ExportError(SR3Error):
    """The model could not be exported to ONNX."""


# --- model and card --------------------------------------------------------------------------------
def model_from_checkpoint(ckpt: dict[str, Any], weights: str = "ema") -> tuple[UNet, TrainConfig]:
    """Rebuild the U-Net of a checkpoint with its EMA (default) or raw weights, in eval mode on the CPU."""
    config = TrainConfig.from_dict(ckpt["config"])
    model = UNet(config.unet, conditional=config.kind == "sr3")
    model.load_state_dict(ckpt[weights])
    return model.eval(), config


def default_presets(train_schedule: ScheduleSpec) -> dict[str, InferencePreset]:
    """fast / balanced / quality before any schedule search (``search-schedule`` replaces them)."""

    def make(steps: int, strength: float, **kw: Any) -> InferencePreset:
        levels = inference_levels(train_schedule, steps, strength, "uniform")
        return InferencePreset(
            steps=len(levels), noise_levels=tuple(float(g) for g in levels), strength=strength,
            schedule={"type": "train_subsequence", "spacing": "uniform"}, **kw,
        )

    return {
        "fast": make(8, 0.2, sampler="ddim", eta=0.0, start="bicubic", back_projection=1,
                     description="8 DDIM steps refining a lightly noised bicubic upscale."),
        "balanced": make(20, 0.3, sampler="ddim", eta=0.0, start="regression", back_projection=2,
                         description="20 DDIM steps from a noised regression estimate, then back-projection."),
        "quality": make(100, 1.0, sampler="ddpm", start="noise", back_projection=0,
                        description="The paper's algorithm: the full chain from pure noise (100 steps)."),
    }


def build_card(ckpt: dict[str, Any], config: TrainConfig, model: nn.Module, name: str | None, fp16: bool) -> ModelCard:
    """The model card of a checkpoint (fields: sr3_desktop/core/model_files/card.py; README.md, "The model card")."""
    sr3 = config.kind == "sr3"
    unet = config.unet
    architecture = {
        "base_channels": unet.base_channels, "channel_mults": list(unet.channel_mults),
        "num_res_blocks": unet.num_res_blocks, "attention_levels": list(unet.attention_levels),
        "dropout": unet.dropout, "image_channels": unet.image_channels, "unshuffle": unet.unshuffle,
        "parameters": count_parameters(model), "precision": "fp16" if fp16 else "fp32",
    }
    data = ckpt.get("data") or {}
    training = {
        "data": data.get("folder", ""), "train_images": len(data.get("train_images", [])),
        "val_images": list(data.get("val_images", [])), "credits": data.get("credits", ""),
        "steps": int(ckpt["step"]), "wall_seconds": round(float(ckpt.get("wall_seconds", 0.0)), 1),
        "images_seen": int(ckpt.get("images_seen", 0)), "code_version": str(ckpt.get("code_version", "")),
        "command": shlex.join(ckpt.get("command", [])), "loss": config.loss, "loss_weighting": config.loss_weighting,
        "crop": config.crop, "batch_size": config.batch_size, "lr": config.lr, "ema_decay": config.ema_decay,
        "final_loss": float(ckpt["loss_log"][-1][1]) if ckpt.get("loss_log") else None,
        "device": str(ckpt.get("device", "")),
        "degradation": config.degradation, "second_order": config.second_order,
    }
    lineage = [dict(entry) for entry in ckpt.get("lineage", [])]
    if lineage:  # --init-from: the runs this one continued, oldest first
        training["lineage"] = lineage
    training["total_steps"] = training["steps"] + sum(int(e.get("steps") or 0) for e in lineage)
    training["total_wall_seconds"] = round(
        training["wall_seconds"] + sum(float(e.get("wall_seconds") or 0.0) for e in lineage), 1
    )
    folder = data.get("folder", "custom")
    default_name = f"{'SR3' if sr3 else 'Regression'} {config.scale}x ({folder}, {ckpt['step']} steps)"
    schedule = config.schedule() if sr3 else None
    return ModelCard(
        name=name or default_name,
        kind=config.kind,
        scale=config.scale,
        size_multiple=unet.size_multiple,
        attention_downsample=unet.attention_downsample(),
        inputs=SR3_INPUTS if sr3 else REGRESSION_INPUTS,
        outputs=SR3_OUTPUTS if sr3 else REGRESSION_OUTPUTS,
        prediction=config.prediction if sr3 else "x0",
        target=config.target,
        noise_conditioning="sqrt_gamma",
        condition=config.condition if sr3 else "bicubic",
        condition_model=str(ckpt.get("condition_model_name", "")) if sr3 else "",
        train_schedule=schedule,
        inference_presets=default_presets(schedule) if schedule else {},
        default_preset="balanced",
        description=(
            f"{'SR3 denoiser' if sr3 else 'Regression U-Net'} for {config.scale}x, trained "
            f"{ckpt['step']} steps on {training['train_images']} photos ({config.crop} px crops)."
        ),
        training=training,
        architecture=architecture,
    )


# --- graph -----------------------------------------------------------------------------------------
class Fp16Graph(nn.Module):
    """fp16 weights and activations with float32 graph IO; noise_level and its embedding stay fp32,
    because early sqrt(gamma) values round to 1.0 in fp16."""

    def __init__(self, model: UNet) -> None:
        super().__init__()
        self.model = model.half()
        if model.conditional:
            self.model.noise_mlp.float()

    def forward(self, lr_up: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        halves = [lr_up.half()] + ([rest[0].half(), rest[1].float()] if rest else [])
        return self.model(*halves).float()


def example_inputs(model: UNet, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs in the card's value range, (lr_up, y_t, noise_level) or (lr_up,), at a non-square size."""
    gen = torch.Generator().manual_seed(seed)
    unit = max(model.config.size_multiple, 8)
    shape = (batch, model.config.image_channels, 2 * unit, 3 * unit)
    lr_up = torch.rand(shape, generator=gen) * 2 - 1
    if not model.conditional:
        return (lr_up,)
    y_t = torch.randn(shape, generator=gen)
    noise_level = torch.rand(batch, generator=gen) * 0.98 + 0.01
    return lr_up, y_t, noise_level


def to_onnx(model: UNet, fp16: bool = False, opset: int = OPSET) -> onnx.ModelProto:
    """Trace to an ONNX proto with dynamic N, H, W (TorchScript exporter: small, fast, clean graph)."""
    graph: nn.Module = Fp16Graph(model) if fp16 else model
    args = example_inputs(model)
    inputs = SR3_INPUTS if model.conditional else REGRESSION_INPUTS
    outputs = SR3_OUTPUTS if model.conditional else REGRESSION_OUTPUTS
    axes: dict[str, dict[int, str]] = {n: ({0: "N"} if n == "noise_level" else DYNAMIC) for n in inputs}
    axes[outputs[0]] = DYNAMIC
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic: shapes stay symbolic
        torch.onnx.export(
            graph, args, cast(Any, buffer), input_names=list(inputs), output_names=list(outputs),
            dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def export(checkpoint: str | Path, out: str | Path, name: str | None = None, fp16: bool = False,
           opset: int = OPSET) -> ModelCard:
    """Export a checkpoint's EMA weights to ``out`` (one file, card embedded); returns the card."""
    ckpt = load_checkpoint(checkpoint)
    model, config = model_from_checkpoint(ckpt)
    card = build_card(ckpt, config, model, name, fp16)
    try:
        proto = to_onnx(model, fp16=fp16, opset=opset)
    except Exception as err:  # the exporter raises many types; the user needs the gist
        raise ExportError(f"ONNX export failed: {type(err).__name__}: {err}") from err
    embed_card(proto, card)
    onnx.checker.check_model(proto)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as handle:
        onnx.save_model(proto, handle, save_as_external_data=False)
    return card


# --- command line -----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="checkpoint.pt, or the run directory holding it")
    parser.add_argument("-o", "--output", required=True, type=Path, help="the .onnx file to write")
    parser.add_argument("--name", help="model name shown in the app (default: made from kind, scale, data, steps)")
    parser.add_argument("--fp16", action="store_true",
                        help="fp16 weights for GPU use; graph IO stays float32 and noise_level + its embedding fp32")
    parser.add_argument("--opset", type=int, default=OPSET, choices=(17, 18), help=f"ONNX opset (default {OPSET})")


def run(args: argparse.Namespace) -> int:
    card = export(args.checkpoint, args.output, name=args.name, fp16=args.fp16, opset=args.opset)
    size_mb = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output} ({size_mb:.1f} MB): {card.name!r}, {card.kind} {card.scale}x, "
          f"{card.architecture['parameters']} parameters, presets {card.preset_names() or '-'}")
    return 0
