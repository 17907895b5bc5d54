"""The exporter's torch parametrisation against the core's numpy one, on the same tensors.

Training (exporter/training/objective.py: q_sample, prediction_target, to_x0_eps, the validation chain
ddim_sample) and inference (sr3_desktop/core/diffusion/sampler.py: Sampler.start, split_prediction, clip_y0,
Sampler.step) must agree for every prediction x target, or a model would be trained for one
convention and sampled with another without any error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exporter.config import apply_overrides, get_preset
from exporter.training.objective import ddim_sample, prediction_target, q_sample, to_x0_eps
from sr3_desktop.core.diffusion.sampler import Sampler, clip_y0, split_prediction
from sr3_desktop.core.diffusion.schedule import ScheduleSpec, inference_levels

PREDICTIONS = ["epsilon", "x0", "v"]
TARGETS = ["hr", "residual"]
SHAPE = (4, 3, 6, 5)
GAMMAS = torch.tensor([0.9999, 0.6, 0.02, 4.5e-5], dtype=torch.float64)
"""One per sample: nearly clean, middle, noisy, the paper's noisiest level (T = 2000)."""


def tensors(target: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lr_up, y0, eps) in float64; y0 is HR or HR - lr_up."""
    gen = torch.Generator().manual_seed(seed)
    hr = torch.rand(SHAPE, generator=gen, dtype=torch.float64) * 2 - 1
    lr_up = (hr + 0.3 * torch.randn(SHAPE, generator=gen, dtype=torch.float64)).clamp(-1, 1)
    eps = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    return lr_up, (hr - lr_up if target == "residual" else hr), eps


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_training_targets_are_what_the_core_inverts(prediction: str, target: str) -> None:
    """q_sample is the core's Eq. 4, and split_prediction turns the exporter's training target back
    into the very y0 and eps that made y_t."""
    _, y0, eps = tensors(target)
    y_t = q_sample(y0, GAMMAS, eps)
    wanted = prediction_target(prediction, y0, eps, GAMMAS)
    for n, gamma in enumerate(GAMMAS.tolist()):
        noised = Sampler(np.array([gamma])).start(eps[n].numpy(), y0[n].numpy())  # Eq. 4 in float32
        np.testing.assert_allclose(noised, y_t[n].numpy(), atol=2e-6, rtol=0)
        got_y0, got_eps = split_prediction(wanted[n].numpy(), y_t[n].numpy(), gamma, prediction)  # type: ignore[arg-type]
        scale = 1.0 / np.sqrt(min(gamma, 1 - gamma))  # float64 rounding magnified by the inversion
        np.testing.assert_allclose(got_y0, y0[n].numpy(), atol=1e-13 * scale, rtol=0)
        np.testing.assert_allclose(got_eps, eps[n].numpy(), atol=1e-13 * scale, rtol=0)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_x0_and_eps_recovery_agree_for_any_network_output(prediction: str, target: str) -> None:
    """to_x0_eps (the exporter's gradient and spectrum losses) equals split_prediction on outputs that
    are no one's true target, and the core's clip of that y0 keeps the HR estimate in [-1, 1]."""
    lr_up, y0, eps = tensors(target, seed=1)
    y_t = q_sample(y0, GAMMAS, eps)
    output = 1.5 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    x0, eps_hat = to_x0_eps(prediction, output, y_t, GAMMAS)
    for n, gamma in enumerate(GAMMAS.tolist()):
        core_y0, core_eps = split_prediction(output[n].numpy(), y_t[n].numpy(), gamma, prediction)  # type: ignore[arg-type]
        np.testing.assert_allclose(x0[n].numpy(), core_y0, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(eps_hat[n].numpy(), core_eps, rtol=1e-12, atol=1e-12)
        condition = lr_up[n].numpy() if target == "residual" else None
        hr = clip_y0(core_y0, target, condition) + (0 if condition is None else condition)  # type: ignore[arg-type]
        assert hr.min() >= -1 - 1e-12 and hr.max() <= 1 + 1e-12


class NonOracle(torch.nn.Module):
    """A fixed network that does not know the answer: its y0 estimate is ``amplitude * tanh`` of the
    condition plus ``weight * tanh(y_t)``, shrinking with the noise-level input, returned as eps / x0 / v
    consistent with y_t. With (0.5, 0.1) it never leaves the clip range; with (1.0, 0.8) it leaves it
    at some steps and not at others, so how a step clips changes the next ones."""

    def __init__(self, prediction: str, amplitude: float, weight: float) -> None:
        super().__init__()
        self.prediction, self.amplitude, self.weight = prediction, amplitude, weight

    def forward(self, lr_up: torch.Tensor, y_t: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        level = noise_level.double()[:, None, None, None]
        gamma = (level**2).flatten()  # the exporter feeds sqrt(gamma), as the paper does
        y0 = self.amplitude * torch.tanh(2 * lr_up.double())
        y0 = y0 + self.weight * torch.tanh(y_t.double()) * (1 - 0.5 * level)
        eps = (y_t.double() - level * y0) / (1 - level**2).sqrt()
        return prediction_target(self.prediction, y0, eps, gamma).float()


def both_chains(prediction: str, target: str, amplitude: float, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """HR from the exporter's validation chain and from the core's DDIM (eta = 0) chain, same start."""
    config = apply_overrides(get_preset("tiny"), {"prediction": prediction, "target": target})
    model = NonOracle(prediction, amplitude, weight)
    lr_up = 0.3 * torch.tanh(torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(4)))
    # From gamma ~ 0.41 to 0.96: without the chain's usual last level 1 - 1e-6, where the exporter's
    # float32 1 - gamma differs (see test_noise_scales_keep_their_precision_near_gamma_one).
    levels = inference_levels(ScheduleSpec("linear", 2000, 1e-6, 1e-2), 6, 0.3)[:-1]
    exporter_hr = ddim_sample(model, config, lr_up, levels, torch.Generator().manual_seed(0)).numpy()
    start = torch.randn(lr_up.shape, generator=torch.Generator().manual_seed(0)).numpy()  # ddim_sample's draw
    sampler = Sampler(levels, "ddim", 0.0, prediction, target, "sqrt_gamma")  # type: ignore[arg-type]
    condition = lr_up.numpy() if target == "residual" else None
    y = sampler.start(start)
    for i in range(sampler.num_steps):
        level = torch.from_numpy(sampler.network_input(i, lr_up.shape[0]))
        out = model(lr_up, torch.from_numpy(y), level).numpy()
        y, _ = sampler.step(out, i, y, None, condition)
    core_hr = np.clip(y + (0 if condition is None else condition), -1, 1)
    return exporter_hr, core_hr


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_the_validation_chain_is_the_cores_ddim_chain(prediction: str, target: str) -> None:
    """Inside the clip range, ddim_sample and Sampler.step give the same HR step for step."""
    exporter_hr, core_hr = both_chains(prediction, target, 0.5, 0.1)
    np.testing.assert_allclose(exporter_hr, core_hr, atol=2e-5, rtol=0)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_the_validation_chain_clips_as_the_core_does(prediction: str, target: str) -> None:
    exporter_hr, core_hr = both_chains(prediction, target, 1.0, 0.8)
    np.testing.assert_allclose(exporter_hr, core_hr, atol=2e-5, rtol=0)


def test_noise_scales_keep_their_precision_near_gamma_one() -> None:
    gamma = torch.tensor([1 - 1e-6, 1 - 1e-5], dtype=torch.float64)
    y0, eps = tensors("hr", seed=2)[1][:2].float(), tensors("hr", seed=3)[2][:2].float()
    y_t = q_sample(y0, gamma, eps)
    output = torch.randn(y0.shape, generator=torch.Generator().manual_seed(5))
    x0, _ = to_x0_eps("epsilon", output, y_t, gamma)
    for n, g in enumerate(gamma.tolist()):
        np.testing.assert_allclose(y_t[n].numpy(), Sampler(np.array([g])).start(eps[n].numpy(), y0[n].numpy()),
                                   atol=1e-6, rtol=0)
        core_y0, _ = split_prediction(output[n].numpy(), y_t[n].numpy(), g, "epsilon")
        np.testing.assert_allclose(x0[n].numpy(), core_y0, atol=1e-6, rtol=0)
