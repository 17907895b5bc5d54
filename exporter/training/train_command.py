"""`python -m exporter train`: the command line (presets, recipe overrides, resume, --init-from) over the loop."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from exporter.config import (
    BETA_SCHEDULES,
    CONDITIONS,
    DEVICES,
    KINDS,
    LOSS_WEIGHTINGS,
    LOSSES,
    LR_SCHEDULES,
    PRECISIONS,
    PREDICTIONS,
    PRESETS,
    TARGETS,
    ConfigError,
    TrainConfig,
    apply_overrides,
    field_docs,
    get_preset,
    load_toml,
)
from exporter.training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from exporter.training.onnx_weights import load_unet, unet_config_from_card
from exporter.training.train import Trainer
from exporter.unet import UNet, UNetConfig
from sr3_desktop.core.errors import SR3Error
from sr3_desktop.core.model_files.card import ModelCard

LOCKED_ON_RESUME = ("kind", "unet", "scale", "prediction", "target", "condition", "condition_model", "beta_schedule",
                    "beta_start", "beta_end", "timesteps")
_CHOICES = {"kind": KINDS, "prediction": PREDICTIONS, "target": TARGETS, "condition": CONDITIONS,
            "lr_schedule": LR_SCHEDULES, "loss": LOSSES,
            "loss_weighting": LOSS_WEIGHTINGS, "beta_schedule": BETA_SCHEDULES, "precision": PRECISIONS}


# --- command line ------------------------------------------------------------------------------
def preset_table() -> str:
    """One line per preset: U-Net width, multipliers, blocks, crop, batch, steps."""
    lines = ["presets (paper Table A.1 rows need GPUs; cpu-* train in hours on 2 cores; tiny is for tests):"]
    for name, p in PRESETS.items():
        u = p.unet
        lines.append(f"  {name:13s} {u.base_channels:3d} ch x {list(u.channel_mults)}, {u.num_res_blocks} blocks, "
                     f"{p.scale}x, crop {p.crop}, batch {p.batch_size}, lr {p.lr:g}, {p.steps} steps")
    lines += ["", "precedence: preset < --config TOML < flags; on --resume the checkpoint's recipe replaces the preset",
              "and only optimisation / bookkeeping fields may change (e.g. --steps, --lr, --val-every)."]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = preset_table()
    parser.add_argument("--data", required=True, type=Path, help="folder of training photos (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="run directory: checkpoint.pt, log.jsonl, samples")
    parser.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS),
                        help="starting recipe (default cpu-small); --config and the flags below override it")
    parser.add_argument("--config", type=Path, help="TOML file of overrides (top-level fields, or a [unet] table)")
    parser.add_argument("--resume", action="store_true",
                        help="continue RUN_DIR/checkpoint.pt: step count, optimiser, EMA and loss log")
    parser.add_argument("--init-from", type=Path, metavar="MODEL.onnx",
                        help="start from an exported model's weights (its card gives the U-Net; the optimiser "
                             "starts fresh, so keep a short --warmup-steps); the run's step count starts at 0")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA when available, else CPU")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--tensorboard", type=Path, metavar="DIR",
                        help="also write TensorBoard scalars (loss, lr, validation metrics) and the validation sample "
                             "grids to DIR (`tensorboard --logdir DIR`)")
    group = parser.add_argument_group("recipe overrides (default: the preset's value)")
    docs = field_docs(TrainConfig)
    for f in fields(TrainConfig):
        if f.name != "unet":
            _add_override(group, f.name, getattr(TrainConfig(), f.name), docs.get(f.name, ""))
    unet_docs = field_docs(UNetConfig)
    for f in fields(UNetConfig):
        _add_override(group, f.name, getattr(UNetConfig(), f.name), "U-Net: " + unet_docs.get(f.name, ""))


def _add_override(group: argparse._ArgumentGroup, name: str, default: Any, doc: str) -> None:
    flag = "--" + name.replace("_", "-")
    small = get_preset("cpu-small")
    value = getattr(small.unet, name) if hasattr(small.unet, name) else getattr(small, name)
    shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
    help_text = f"{doc} [cpu-small: {shown}]".replace("%", "%%")
    kw: dict[str, Any] = {"default": None, "dest": f"override_{name}", "help": help_text,
                          "metavar": name.upper()}
    if name in _CHOICES:
        kw["choices"] = _CHOICES[name]
        del kw["metavar"]
    elif isinstance(default, tuple):
        kw["metavar"] = "N,N,..."
    elif isinstance(default, bool):
        kw["type"] = int
    elif isinstance(default, (int, float)):
        kw["type"] = type(default)
    group.add_argument(flag, **kw)


def resolve_config(
    args: argparse.Namespace, checkpoint: dict[str, Any] | None, init_card: ModelCard | None = None
) -> TrainConfig:
    """preset < TOML < flags; on resume the checkpoint's config replaces the preset.

    With --init-from, the U-Net and the kind come from the model's card (the weights must fit them), but for
    a ``full_res_head`` the run asks for and the model lacks: that stage is grown (it starts as the identity).
    """
    overrides = {k[len("override_"):]: v for k, v in vars(args).items() if k.startswith("override_") and v is not None}
    base = TrainConfig.from_dict(checkpoint["config"]) if checkpoint else get_preset(args.preset)
    if args.config:
        base = apply_overrides(base, load_toml(args.config))
    config = apply_overrides(base, overrides)
    if init_card is not None:
        if init_card.kind != config.kind:
            raise ConfigError(f"--init-from {args.init_from.name} is a {init_card.kind} model, but this run trains "
                              f"--kind {config.kind}")
        unet = unet_config_from_card(init_card, args.init_from.name)
        if config.unet.full_res_head and not unet.full_res_head:  # grow the output stage, zero-initialised
            unet = replace(unet, full_res_head=config.unet.full_res_head)
        config = replace(config, unet=unet)
    config = config.validate()
    if checkpoint:
        old = TrainConfig.from_dict(checkpoint["config"])
        changed = [n for n in LOCKED_ON_RESUME if getattr(old, n) != getattr(config, n)]
        if changed:
            raise ConfigError(f"cannot change {', '.join(changed)} when resuming; start a new run directory instead")
    return config


def run(args: argparse.Namespace) -> int:
    checkpoint_path = args.out / CHECKPOINT_NAME
    checkpoint = None
    if args.resume:
        if not checkpoint_path.is_file():
            raise SR3Error(f"--resume: no checkpoint at {checkpoint_path}")
        checkpoint = load_checkpoint(checkpoint_path)
    elif checkpoint_path.exists():
        raise SR3Error(f"{checkpoint_path} exists; pass --resume to continue it, or choose another --out")
    init: tuple[UNet, ModelCard] | None = None
    if args.init_from is not None:
        if args.resume:
            raise ConfigError("--init-from starts a new run; it cannot be combined with --resume")
        init = load_unet(args.init_from)
    config = resolve_config(args, checkpoint, init[1] if init else None)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = list(getattr(args, "command_line", ["python", "-m", "exporter", *sys.argv[1:]]))
    trainer = Trainer(config, args.data, args.out, args.device, checkpoint, command=command)
    trainer.tensorboard_dir = args.tensorboard
    if init is not None:
        trainer.start_from(init[0], init[1], args.init_from)
    return trainer.run()


