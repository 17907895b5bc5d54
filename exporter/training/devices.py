"""Devices, precision and the torchrun process group for training (CPU bf16, CUDA AMP, DDP)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from exporter.config import ConfigError
from sr3_desktop.core.errors import SR3Error


def cpu_has_bf16() -> bool:
    """True when bf16 autocast is faster than fp32 on this CPU: with AMX tiles. AVX512-BF16 alone is not
    enough: on a 2-core AVX512-BF16 machine without AMX, a training step of the low-resolution U-Net took
    0.37 s in bf16 against 0.30 s in fp32 (measured alternately in one process; issue 19)."""
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SR3Error("--device cuda was requested but torch sees no CUDA device; use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for this run, or None for plain fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        if precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "fp16":
        raise ConfigError("fp16 autocast is for CUDA; use --precision bf16 or fp32 on a CPU")
    if precision == "bf16" or cpu_has_bf16():
        return torch.bfloat16
    return None


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(torch.distributed.get_rank(), local_rank, world)
