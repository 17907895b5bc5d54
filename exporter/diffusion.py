"""SR3 training objective (paper Algorithm 1) and the conversions between eps / x0 / v.

Notation as in the paper: y0 is the clean target (HR, or HR - bicubic with target="residual"),
gamma is the cumulative signal level, y_t = sqrt(gamma) y0 + sqrt(1 - gamma) eps (Eq. 4).
The network is fed noise_level = sqrt(gamma), as in the paper and WaveGrad.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from exporter.config import TrainConfig
from sr3_desktop.core.schedule import ScheduleSpec


class GammaSampler:
    """gamma ~ p(gamma) = sum_t 1/T U(gamma_{t-1}, gamma_t), with gamma_0 = 1 (paper Sec. 2.4)."""

    def __init__(self, schedule: ScheduleSpec) -> None:
        gammas = np.concatenate([[1.0], schedule.gammas()])  # gamma_0 .. gamma_T, float64
        self.gammas = torch.from_numpy(gammas)

    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch`` continuous gammas as float64 on the CPU."""
        t = torch.randint(1, len(self.gammas), (batch,), generator=generator)
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        high, low = self.gammas[t - 1], self.gammas[t]
        return low + u * (high - low)


def q_sample(y0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 4: y_t = sqrt(gamma) y0 + sqrt(1 - gamma) eps; gamma has shape (N,)."""
    g = gamma.to(y0.dtype)[:, None, None, None]
    return g.sqrt() * y0 + (1.0 - g).sqrt() * eps


def prediction_target(prediction: str, y0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """What the network should output for a given parametrisation."""
    if prediction == "epsilon":
        return eps
    if prediction == "x0":
        return y0
    if prediction == "v":  # Salimans & Ho 2022: v = sqrt(g) eps - sqrt(1 - g) y0
        g = gamma.to(y0.dtype)[:, None, None, None]
        return g.sqrt() * eps - (1.0 - g).sqrt() * y0
    raise ValueError(f"unknown prediction {prediction!r}")


def to_x0_eps(
    prediction: str, output: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a network output to (predicted y0, predicted eps)."""
    g = gamma.to(y_t.dtype)[:, None, None, None]
    sg, s1g = g.sqrt(), (1.0 - g).sqrt()
    if prediction == "epsilon":
        return (y_t - s1g * output) / sg, output
    if prediction == "x0":
        return output, (y_t - sg * output) / s1g
    if prediction == "v":
        x0 = sg * y_t - s1g * output
        return x0, s1g * y_t + sg * output
    raise ValueError(f"unknown prediction {prediction!r}")


def loss_weight(config: TrainConfig, gamma: torch.Tensor) -> torch.Tensor:
    """Per-sample weight of the native loss, from SNR = gamma / (1 - gamma).

    All weightings are defined in x0 space, where a native loss equals w_native(SNR) * |y0 - y0_hat|^2
    with w_native = SNR (epsilon), 1 (x0), SNR + 1 (v):
      none           the plain loss of the chosen prediction (the paper, with epsilon);
      min-snr        x0-space weight min(SNR, k) (Hang et al. 2023): less effort on nearly clean levels;
      truncated-snr  x0-space weight max(SNR, 1) (Salimans & Ho 2022): more effort on very noisy levels,
                     where a short epsilon run leaves the colour drifting.
    With the L1 loss the same factors are applied to |.|, a heuristic rather than an identity.
    """
    if config.loss_weighting == "none":
        return torch.ones_like(gamma)
    snr = gamma / (1.0 - gamma).clamp_min(1e-12)
    native = {"epsilon": snr, "x0": torch.ones_like(snr), "v": snr + 1.0}[config.prediction]
    if config.loss_weighting == "min-snr":
        wanted = snr.clamp(max=config.min_snr_gamma)
    elif config.loss_weighting == "truncated-snr":
        wanted = snr.clamp(min=1.0)
    else:
        raise ValueError(f"unknown loss weighting {config.loss_weighting!r}")
    return wanted / native


def per_sample_loss(kind: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    diff = output.float() - target.float()
    values = diff.abs() if kind == "l1" else diff.square()
    return values.mean(dim=(1, 2, 3))


def sr3_loss(
    model: nn.Module, config: TrainConfig, sampler: GammaSampler, lr_up: torch.Tensor, hr: torch.Tensor,
    generator: torch.Generator | None = None, noise_generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Paper Algorithm 1, one step: E || f(x, y_t, sqrt(gamma)) - target ||_p (plus the options above).

    ``generator`` (CPU) draws gamma, and eps too unless ``noise_generator`` (on the model's device) is given.
    """
    y0 = hr - lr_up if config.target == "residual" else hr
    gamma = sampler.sample(hr.shape[0], generator).to(hr.device)
    if noise_generator is not None:
        eps = torch.randn(y0.shape, generator=noise_generator, dtype=y0.dtype, device=y0.device)
    else:
        eps = torch.randn(y0.shape, generator=generator, dtype=y0.dtype).to(y0.device)
    y_t = q_sample(y0, gamma, eps)
    output = model(lr_up, y_t, gamma.sqrt().float())
    target = prediction_target(config.prediction, y0, eps, gamma)
    weights = loss_weight(config, gamma).float()
    return (weights * per_sample_loss(config.loss, output, target)).mean()


def regression_loss(model: nn.Module, config: TrainConfig, lr_up: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Regression baseline: predict y (HR, or the residual HR - lr_up) directly from lr_up."""
    target = hr - lr_up if config.target == "residual" else hr
    return per_sample_loss(config.loss, model(lr_up), target).mean()


@torch.no_grad()
def ddim_sample(
    model: nn.Module, config: TrainConfig, lr_up: torch.Tensor, levels: np.ndarray, generator: torch.Generator
) -> torch.Tensor:
    """A short deterministic DDIM chain (eta = 0) over ``levels`` (noisiest first) for validation images.

    Returns the HR estimate in [-1, 1] (the residual is added back to lr_up when target="residual").
    """
    y = torch.randn(lr_up.shape, generator=generator).to(lr_up.device)
    gammas = [*list(levels), 1.0]
    x0 = y
    for g, g_next in itertools.pairwise(gammas):
        gamma = torch.full((lr_up.shape[0],), float(g), dtype=torch.float64, device=lr_up.device)
        output = model(lr_up, y, gamma.sqrt().float()).float()
        x0, eps = to_x0_eps(config.prediction, output, y, gamma)
        x0 = x0.clamp(-2.0, 2.0) if config.target == "residual" else x0.clamp(-1.0, 1.0)
        y = float(np.sqrt(g_next)) * x0 + float(np.sqrt(1.0 - g_next)) * eps
    result = x0 + lr_up if config.target == "residual" else x0
    return result.clamp(-1.0, 1.0)
