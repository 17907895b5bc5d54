"""SR3 training objective (paper Algorithm 1) and the conversions between eps / x0 / v.

Notation as in the paper: y0 is the clean target (HR, or HR - bicubic with target="residual"),
gamma is the cumulative signal level, y_t = sqrt(gamma) y0 + sqrt(1 - gamma) eps (Eq. 4).
The network is fed noise_level = sqrt(gamma), as in the paper and WaveGrad.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from exporter.config import TrainConfig
from sr3_desktop.core.diffusion.sampler import Sampler
from sr3_desktop.core.diffusion.schedule import ScheduleSpec


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


def scales(gamma: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(gamma) and sqrt(1 - gamma) as (N, 1, 1, 1) in ``like``'s dtype, computed in float64:
    1 - gamma in float32 is off by ~0.7 % at the cleanest level gamma = 1 - 1e-6 (the core uses float64)."""
    g = gamma.double()[:, None, None, None]
    return g.sqrt().to(like.dtype), (1.0 - g).sqrt().to(like.dtype)


def q_sample(y0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 4: y_t = sqrt(gamma) y0 + sqrt(1 - gamma) eps; gamma has shape (N,)."""
    sg, s1g = scales(gamma, y0)
    return sg * y0 + s1g * eps


def prediction_target(prediction: str, y0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """What the network should output for a given parametrisation."""
    if prediction == "epsilon":
        return eps
    if prediction == "x0":
        return y0
    if prediction == "v":  # Salimans & Ho 2022: v = sqrt(g) eps - sqrt(1 - g) y0
        sg, s1g = scales(gamma, y0)
        return sg * eps - s1g * y0
    raise ValueError(f"unknown prediction {prediction!r}")


def to_x0_eps(
    prediction: str, output: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a network output to (predicted y0, predicted eps)."""
    sg, s1g = scales(gamma, y_t)
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


def focused_gammas(config: TrainConfig, gamma: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Replace a ``focus_fraction`` of the gammas by ones with sigma = sqrt((1 - g) / g) log-uniform in
    [focus_sigma_min, focus_sigma_max]: the low-noise end where a short chain from an estimate runs."""
    if config.focus_fraction <= 0.0:
        return gamma
    n = gamma.shape[0]
    chosen = torch.rand(n, generator=generator, dtype=torch.float64) < config.focus_fraction
    low, high = np.log(config.focus_sigma_min), np.log(config.focus_sigma_max)
    sigma = torch.exp(low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64))
    return torch.where(chosen.to(gamma.device), (1.0 / (1.0 + sigma.square())).to(gamma.device), gamma)


def focus_mask(config: TrainConfig, gamma: torch.Tensor) -> torch.Tensor:
    """1.0 where gamma lies in the focused range (sigma <= focus_sigma_max), else 0.0."""
    return (gamma >= 1.0 / (1.0 + config.focus_sigma_max**2)).float()


def gradient_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample L1 of horizontal and vertical finite differences: true edges, no noise on flat areas."""
    def grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]

    (px, py), (tx, ty) = grads(prediction.float()), grads(target.float())
    return (px - tx).abs().mean(dim=(1, 2, 3)) + (py - ty).abs().mean(dim=(1, 2, 3))


def spectrum_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample L1 of log(1 + |FFT|): the energy of every frequency band, whatever its phase.

    The FFT is unnormalised: a 64 px crop's fine-band coefficients then reach ~1, inside log1p's
    logarithmic range, so a missing (blurred) band costs its log power ratio. With norm="ortho" they
    sit near 0.03, where log1p is linear, and the term all but vanishes beside the pixel L1.
    """
    def log_magnitude(x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(torch.fft.rfft2(x.float()).abs())

    return (log_magnitude(prediction) - log_magnitude(target)).abs().mean(dim=(1, 2, 3))


def luma_fine_band(image: torch.Tensor) -> torch.Tensor:
    """The finest band of the luma: luma - its 3x3 box mean (replicated edges), one channel."""
    luma = image.float().mean(dim=1, keepdim=True)
    return luma - nn.functional.avg_pool2d(nn.functional.pad(luma, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def fine_band_energy(image: torch.Tensor, window: int = 8) -> torch.Tensor:
    """Local energy of the finest band: the mean |fine band| over ``window`` px cells."""
    return nn.functional.avg_pool2d(luma_fine_band(image).abs(), window)


def texture_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample L1 between the local fine-band energies of prediction and target, at the crop's scale
    and at half of it: texture where the photo has it, and none (no grain) where it is flat. A pixel L1
    alone learns the median of the plausible textures, which is no texture."""
    loss = (fine_band_energy(prediction) - fine_band_energy(target)).abs().mean(dim=(1, 2, 3))
    half_p, half_t = (nn.functional.avg_pool2d(x.float(), 2) for x in (prediction, target))
    return loss + (fine_band_energy(half_p, 4) - fine_band_energy(half_t, 4)).abs().mean(dim=(1, 2, 3))


def block_l1(prediction: torch.Tensor, target: torch.Tensor, cell: int) -> torch.Tensor:
    """Per-sample L1 of the steps across the borders of ``cell`` px cells (between pixels cell*k - 1 and
    cell*k, both axes) against the target's: the grid a depth-to-space output can leave."""
    def steps(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        across_x = x[..., :, cell::cell] - x[..., :, cell - 1 : -1 : cell]
        return across_x, x[..., cell::cell, :] - x[..., cell - 1 : -1 : cell, :]

    (px, py), (tx, ty) = steps(prediction), steps(target)
    return (px - tx).abs().mean(dim=(1, 2, 3)) + (py - ty).abs().mean(dim=(1, 2, 3))


PHASE_ENERGY_FLOOR = 1e-4
"""Added to a crop's mean fine-band energy (squared, luma in [-1, 1]) before the phase profile is divided by it,
so a flat crop's profile stays near 0 instead of amplifying noise."""


def phase_energy_l1(prediction: torch.Tensor, target: torch.Tensor, cell: int) -> torch.Tensor:
    """Per-sample L1 between the profiles of fine-band energy over the ``cell`` x ``cell`` phases of the LR
    pixels' cells (each phase's mean energy over the crop's, as ``metrics.cell_grid`` reads it) of prediction
    and target: 0 when every phase carries the detail the photo's does."""
    def profile(x: torch.Tensor) -> torch.Tensor:
        phases = nn.functional.pixel_unshuffle(luma_fine_band(x).square(), cell).mean(dim=(2, 3))  # (n, cell^2)
        return phases / (phases.mean(dim=1, keepdim=True) + PHASE_ENERGY_FLOOR)

    return (profile(prediction) - profile(target)).abs().mean(dim=1)


class Sr3Terms(NamedTuple):
    """One SR3 training step's loss, and the HR predicted from the output with the focused-sample mask
    (what the adversarial term of ``exporter/training/adversarial.py`` judges)."""

    loss: torch.Tensor
    hr_prediction: torch.Tensor
    focus: torch.Tensor


def sr3_loss(
    model: nn.Module, config: TrainConfig, sampler: GammaSampler, lr_up: torch.Tensor, hr: torch.Tensor,
    generator: torch.Generator | None = None, noise_generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The loss of ``sr3_terms``."""
    return sr3_terms(model, config, sampler, lr_up, hr, generator, noise_generator).loss


def sr3_terms(
    model: nn.Module, config: TrainConfig, sampler: GammaSampler, lr_up: torch.Tensor, hr: torch.Tensor,
    generator: torch.Generator | None = None, noise_generator: torch.Generator | None = None,
) -> Sr3Terms:
    """Paper Algorithm 1, one step: E || f(x, y_t, sqrt(gamma)) - target ||_p (plus the options above).

    ``lr_up`` is the condition: the bicubic upsample, or a regression output (``condition = "regression"``).
    ``generator`` (CPU) draws gamma, and eps too unless ``noise_generator`` (on the model's device) is given.
    With gradient_loss / spectrum_loss, the HR predicted from the output is also compared with the HR
    on the focused (low-noise) samples, where the short chains that people run make their prediction.
    """
    y0 = hr - lr_up if config.target == "residual" else hr
    gamma = focused_gammas(config, sampler.sample(hr.shape[0], generator), generator).to(hr.device)
    if noise_generator is not None:
        eps = torch.randn(y0.shape, generator=noise_generator, dtype=y0.dtype, device=y0.device)
    else:
        eps = torch.randn(y0.shape, generator=generator, dtype=y0.dtype).to(y0.device)
    y_t = q_sample(y0, gamma, eps)
    if config.start_fraction > 0.0:  # the chain's real start: the condition noised, no residual in it (Eq. 4)
        start = torch.rand(hr.shape[0], generator=generator, dtype=torch.float64) < config.start_fraction
        start = (start.to(hr.device) & (focus_mask(config, gamma) > 0))[:, None, None, None]
        estimate = torch.zeros_like(y0) if config.target == "residual" else lr_up.to(y0.dtype)  # y0 of the start
        y_t = torch.where(start, q_sample(estimate, gamma, eps), y_t)
        # the noise y_t really holds over y0 (Eq. 4 solved for eps): what epsilon and v targets must use
        sg, s1g = scales(gamma, y0)
        eps = torch.where(start, (y_t - sg * y0) / s1g, eps)
    output = model(lr_up, y_t, gamma.sqrt().float())
    target = prediction_target(config.prediction, y0, eps, gamma)
    weights = loss_weight(config, gamma).float()
    loss = (weights * per_sample_loss(config.loss, output, target)).mean()
    x0, _ = to_x0_eps(config.prediction, output.float(), y_t.float(), gamma)
    hr_pred = x0 + lr_up.float() if config.target == "residual" else x0
    mask = focus_mask(config, gamma)
    share = mask.sum().clamp_min(1.0)
    if config.gradient_loss > 0.0:
        loss = loss + config.gradient_loss * (mask * gradient_l1(hr_pred, hr)).sum() / share
    if config.spectrum_loss > 0.0:
        loss = loss + config.spectrum_loss * (mask * spectrum_l1(hr_pred, hr)).sum() / share
    if config.texture_loss > 0.0:
        loss = loss + config.texture_loss * (mask * texture_l1(hr_pred, hr)).sum() / share
    if config.block_loss > 0.0 and config.unet.unshuffle > 1:
        loss = loss + config.block_loss * (mask * block_l1(hr_pred, hr, config.unet.unshuffle)).sum() / share
    if config.phase_loss > 0.0 and config.unet.unshuffle > 1:
        loss = loss + config.phase_loss * (mask * phase_energy_l1(hr_pred, hr, config.unet.unshuffle)).sum() / share
    return Sr3Terms(loss, hr_pred, mask)


class RegressionCondition(nn.Module):
    """A frozen regression U-Net whose HR estimate is the SR3 condition (predict-and-refine).

    Its output is what the app computes with onnxruntime before the chain: the network's y,
    plus lr_up when the regression model predicts the residual over bicubic; not clipped.
    """

    def __init__(self, model: nn.Module, residual: bool) -> None:
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        self.residual = residual

    @torch.no_grad()
    def forward(self, lr_up: torch.Tensor) -> torch.Tensor:
        with torch.autocast(lr_up.device.type, enabled=False):
            out = self.model(lr_up.float()).float()
        return out + lr_up.float() if self.residual else out


def regression_loss(model: nn.Module, config: TrainConfig, lr_up: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Regression baseline: predict y (HR, or the residual HR - lr_up) directly from lr_up."""
    target = hr - lr_up if config.target == "residual" else hr
    return per_sample_loss(config.loss, model(lr_up), target).mean()


@torch.no_grad()
def ddim_sample(
    model: nn.Module, config: TrainConfig, lr_up: torch.Tensor, levels: np.ndarray, generator: torch.Generator
) -> torch.Tensor:
    """A short deterministic DDIM chain (eta = 0) over ``levels`` (noisiest first) for validation images,
    stepped by the app's own Sampler (core/sampler.py), so validation measures the chain users run.

    Returns the HR estimate in [-1, 1] (the residual is added back to lr_up when target="residual").
    """
    sampler = Sampler(levels, "ddim", 0.0, config.prediction, config.target, "sqrt_gamma")  # type: ignore[arg-type]
    y = torch.randn(lr_up.shape, generator=generator).numpy()
    condition = lr_up.float().cpu().numpy()
    clip = condition if config.target == "residual" else None
    pred = y
    for i in range(sampler.num_steps):
        level = torch.from_numpy(sampler.network_input(i, lr_up.shape[0])).to(lr_up.device)
        output = model(lr_up, torch.from_numpy(y).to(lr_up.device), level).float().cpu().numpy()
        y, pred = sampler.step(output, i, y, None, clip)
    result = pred + condition if config.target == "residual" else pred
    return torch.from_numpy(np.clip(result, -1.0, 1.0)).to(lr_up.device)
