"""Train-time validation on held-out crops: metrics for log.jsonl and a sample grid PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from exporter.config import TrainConfig
from exporter.training.objective import (
    GammaSampler,
    block_l1,
    ddim_sample,
    gradient_l1,
    phase_energy_l1,
    sr3_loss,
    texture_l1,
    to_x0_eps,
)
from sr3_desktop.core.diffusion.schedule import inference_levels
from sr3_desktop.core.metrics import cell_grid, gmsd, grain, spectral_gap

GRID_ROWS = 4


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR (dB) over a batch of [-1, 1] images, measured on [0, 1]."""
    mse = ((a.float() - b.float()) / 2.0).square().mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return float((10.0 * torch.log10(1.0 / mse)).mean())


@torch.no_grad()
def predict(model: nn.Module, config: TrainConfig, lr_up: torch.Tensor) -> torch.Tensor:
    """The model's HR estimate in [-1, 1]: a short DDIM chain for SR3, one pass for regression."""
    if config.kind == "regression":
        out = model(lr_up).float()
        return (out + lr_up if config.target == "residual" else out).clamp(-1.0, 1.0)
    if config.val_start_sigma > 0.0:
        return one_step_from_condition(model, config, lr_up, config.val_start_sigma)
    levels = inference_levels(config.schedule(), max(config.val_sample_steps, 1), 1.0)
    return ddim_sample(model, config, lr_up, levels, torch.Generator().manual_seed(0))


@torch.no_grad()
def one_step_from_condition(model: nn.Module, config: TrainConfig, lr_up: torch.Tensor, sigma: float) -> torch.Tensor:
    """The one-step chain that starts from the condition noised to ``sigma`` (Eq. 4 with y0 = the condition,
    so a residual target's start is pure scaled noise) and takes the network's x0, clipped as the app does."""
    gamma = torch.full((lr_up.shape[0],), 1.0 / (1.0 + sigma**2), dtype=torch.float64, device=lr_up.device)
    noise = torch.randn(lr_up.shape, generator=torch.Generator().manual_seed(0)).to(lr_up.device)
    start = torch.zeros_like(lr_up) if config.target == "residual" else lr_up
    y_t = (gamma.sqrt()[:, None, None, None] * start + (1.0 - gamma).sqrt()[:, None, None, None] * noise).float()
    x0, _ = to_x0_eps(config.prediction, model(lr_up, y_t, gamma.sqrt().float()).float(), y_t, gamma)
    return (x0 + lr_up if config.target == "residual" else x0).clamp(-1.0, 1.0)


def image_metrics(output: torch.Tensor, hr: torch.Tensor, config: TrainConfig) -> dict[str, float]:
    """The people metrics of the app's evaluation (grain, spectral gap, GMSD) and the training objective on
    the validation outputs: what the run is meant to improve, logged so a collapse shows."""
    pairs = [(_to_unit(o), _to_unit(h)) for o, h in zip(output, hr, strict=True)]
    objective = (output.float() - hr.float()).abs().mean(dim=(1, 2, 3))
    if config.gradient_loss > 0.0:
        objective = objective + config.gradient_loss * gradient_l1(output, hr)
    if config.texture_loss > 0.0:
        objective = objective + config.texture_loss * texture_l1(output, hr)
    if config.block_loss > 0.0 and config.unet.unshuffle > 1:
        objective = objective + config.block_loss * block_l1(output, hr, config.unet.unshuffle)
    if config.phase_loss > 0.0 and config.unet.unshuffle > 1:
        objective = objective + config.phase_loss * phase_energy_l1(output, hr, config.unet.unshuffle)
    return {
        "grain": float(np.mean([grain(o, h) for o, h in pairs])),
        "spectral_gap": float(np.mean([spectral_gap(o, h) for o, h in pairs])),
        "gmsd": float(np.mean([gmsd(o, h) for o, h in pairs])),
        "grid": float(np.mean([cell_grid(o, h, config.scale) for o, h in pairs])),
        "objective": float(objective.mean()),
    }


def _to_unit(image: torch.Tensor) -> np.ndarray:
    """CHW [-1, 1] -> HWC float32 [0, 1], as the app's metrics take it."""
    return ((image.float().clamp(-1, 1) + 1.0) * 0.5).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def validate(
    model: nn.Module, config: TrainConfig, batch: dict[str, torch.Tensor], device: torch.device
) -> tuple[dict[str, float], torch.Tensor | None]:
    """Metrics on the fixed validation crops, and the model's outputs (None if not sampled)."""
    lr_up, hr = batch["lr_up"].to(device), batch["hr"].to(device)
    metrics = {"psnr_bicubic" if config.condition == "bicubic" else "psnr_condition": psnr(lr_up, hr)}
    was_training = model.training
    model.eval()
    try:
        output: torch.Tensor | None = None
        if config.kind == "sr3":
            generator = torch.Generator().manual_seed(1)
            metrics["val_loss"] = float(sr3_loss(model, config, GammaSampler(config.schedule()), lr_up, hr, generator))
            if config.val_sample_steps > 0:
                output = predict(model, config, lr_up)
        else:
            output = predict(model, config, lr_up)
            metrics["val_loss"] = float((output - hr).abs().mean())
        if output is not None:
            metrics["psnr_model"] = psnr(output, hr)
            metrics.update(image_metrics(output, hr, config))
    finally:
        model.train(was_training)
    return metrics, output


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """CHW [-1, 1] -> HWC uint8."""
    array = ((image.float().clamp(-1, 1) + 1.0) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.asarray(array)


def save_grid(path: Path, batch: dict[str, torch.Tensor], output: torch.Tensor | None, scale: int) -> Path:
    """Rows of LR (nearest, enlarged) | bicubic | model | HR, written as PNG."""
    rows = []
    for i in range(min(GRID_ROWS, batch["hr"].shape[0])):
        lr = _to_uint8(batch["lr"][i]).repeat(scale, axis=0).repeat(scale, axis=1)
        model_img = _to_uint8(output[i]) if output is not None else np.zeros_like(lr)
        tiles = [lr, _to_uint8(batch["lr_up"][i]), model_img, _to_uint8(batch["hr"][i])]
        rows.append(np.concatenate(tiles, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path
