"""`python -m exporter export CKPT -o model.onnx`: EMA weights to a single-file ONNX graph with the model card.

The graph, the card builder and the writer are the ones `convert` uses too (exporter/export/graph_io.py).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

import torch
from torch import nn

from exporter.config import TrainConfig
from exporter.export.graph_io import OPSET, ExportError, GraphIO, build_card, to_onnx, write_onnx
from exporter.training.checkpoint import load_checkpoint
from exporter.unet import UNet, count_parameters
from sr3_desktop.core.diffusion.schedule import ScheduleSpec, inference_levels
from sr3_desktop.core.model_files.card import InferencePreset, ModelCard

__all__ = ["ExportError", "export", "model_from_checkpoint", "unet_io"]


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


def unet_io(model: UNet) -> GraphIO:
    """The graph interface of one of our U-Nets."""
    return GraphIO("sr3" if model.conditional else "regression", model.config.size_multiple,
                   model.config.image_channels)


def checkpoint_card(ckpt: dict[str, Any], config: TrainConfig, model: UNet, name: str | None, fp16: bool) -> ModelCard:
    """The model card of a checkpoint (fields: sr3_desktop/core/model_files/card.py; README.md, "The model card")."""
    sr3 = config.kind == "sr3"
    unet = config.unet
    architecture = {
        "base_channels": unet.base_channels, "channel_mults": list(unet.channel_mults),
        "num_res_blocks": unet.num_res_blocks, "attention_levels": list(unet.attention_levels),
        "dropout": unet.dropout, "image_channels": unet.image_channels, "unshuffle": unet.unshuffle,
        "full_res_head": unet.full_res_head,
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
    return build_card(
        unet_io(model),
        default_presets(schedule) if schedule else {},
        "balanced",
        name=name or default_name,
        scale=config.scale,
        attention_downsample=unet.attention_downsample(),
        prediction=config.prediction if sr3 else "x0",
        target=config.target,
        noise_conditioning="sqrt_gamma",
        condition=config.condition if sr3 else "bicubic",
        condition_model=str(ckpt.get("condition_model_name", "")) if sr3 else "",
        train_schedule=schedule,
        description=_description(sr3, config.scale, training, config.crop),
        training=training,
        architecture=architecture,
    )


def _description(sr3: bool, scale: int, training: dict[str, Any], crop: int) -> str:
    """One line for the details pane: the steps of the whole lineage, and of the last run when it continued one."""
    total, last = int(training["total_steps"]), int(training["steps"])
    steps = f"{total:,} steps" + (f" in all ({last:,} in its last run)" if total != last else "")
    return (f"{'SR3 denoiser' if sr3 else 'Regression U-Net'} for {scale}x, trained {steps} on "
            f"{training['train_images']} photos ({crop} px crops).")


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


def export(checkpoint: str | Path, out: str | Path, name: str | None = None, fp16: bool = False,
           opset: int = OPSET) -> ModelCard:
    """Export a checkpoint's EMA weights to ``out`` (one file, card embedded); returns the card."""
    ckpt = load_checkpoint(checkpoint)
    model, config = model_from_checkpoint(ckpt)
    card = checkpoint_card(ckpt, config, model, name, fp16)
    proto = to_onnx(Fp16Graph(model) if fp16 else model, unet_io(model), opset=opset)
    write_onnx(proto, card, out)
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
