"""The adversarial texture term (exporter/training/adversarial.py): a critic that learns to tell the
photo's detail from a prediction's, a denoiser term whose gradients reach only the prediction, and a
critic that a run saves and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_factory import make_photo_folder, train_tiny
from torch import nn

from exporter.config import ConfigError, TrainConfig
from exporter.training.adversarial import Adversary
from exporter.training.checkpoint import load_checkpoint
from exporter.training.objective import fine_band_energy


def photo_and_blur(seed: int, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(real, fake, condition): a textured 'photo', its 3x3-box-blurred copy, and a smoother condition."""
    generator = torch.Generator().manual_seed(seed)
    base = nn.functional.avg_pool2d(torch.rand(batch, 3, 32, 32, generator=generator) * 2 - 1, 2)
    condition = nn.functional.interpolate(base, scale_factor=4, mode="bilinear", align_corners=False)
    real = (condition + 0.25 * torch.randn(condition.shape, generator=generator)).clamp(-1, 1)
    fake = nn.functional.avg_pool2d(nn.functional.pad(real, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return real, fake, condition


def test_the_critic_learns_to_tell_the_photos_detail_from_a_blurred_prediction() -> None:
    adversary = Adversary(lr=1e-3, device=torch.device("cpu"))
    mask = torch.ones(8)
    first = adversary.update(*photo_and_blur(0), mask)
    for seed in range(1, 60):
        last = adversary.update(*photo_and_blur(seed), mask)
    assert first == pytest.approx(2 * float(torch.log(torch.tensor(2.0))), abs=0.1)  # cannot tell at the start
    assert last < 0.6 * first  # a critic that never steps (or trains the wrong way) stays at log 4 or rises
    real, fake, condition = photo_and_blur(99)  # unseen crops
    with torch.no_grad():
        assert float(adversary.critic(real, condition).mean()) > float(adversary.critic(fake, condition).mean()) + 1.0
    assert adversary.steps == 60


def test_the_denoiser_term_moves_the_prediction_towards_the_photos_texture_and_leaves_the_critic_alone() -> None:
    adversary = Adversary(lr=1e-3, device=torch.device("cpu"))
    for seed in range(60):
        adversary.update(*photo_and_blur(seed), torch.ones(8))
    _, fake, condition = photo_and_blur(123)
    prediction = fake.clone().requires_grad_(True)
    before = [p.detach().clone() for p in adversary.critic.parameters()]
    optimiser = torch.optim.SGD([prediction], lr=5.0)
    for _ in range(20):
        optimiser.zero_grad()
        adversary.generator_loss(prediction, condition, torch.ones(8)).backward()
        optimiser.step()
    assert all(p.grad is None for p in adversary.critic.parameters())  # no critic gradients
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, adversary.critic.parameters(), strict=True))
    gained = fine_band_energy(prediction.detach()).mean() / fine_band_energy(fake).mean()
    assert gained > 1.2  # the blurred prediction regains fine band (the sign of the term is right)


def test_masked_samples_do_not_reach_the_critic_or_the_denoiser_term() -> None:
    real, fake, condition = photo_and_blur(5)
    half = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    scrambled_real = torch.cat([real[:4], torch.rand_like(real[4:]) * 2 - 1])
    a, b = Adversary(1e-3, torch.device("cpu")), Adversary(1e-3, torch.device("cpu"))
    assert a.update(real, fake, condition, half) == pytest.approx(b.update(scrambled_real, fake, condition, half))
    for pa, pb in zip(a.critic.parameters(), b.critic.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)
    prediction = fake.clone().requires_grad_(True)
    a.generator_loss(prediction, condition, half).backward()
    assert prediction.grad is not None and prediction.grad[:4].abs().sum() > 0
    assert not prediction.grad[4:].any()


def test_adversarial_loss_is_refused_for_regression_and_needs_a_positive_critic_lr() -> None:
    with pytest.raises(ConfigError, match="adversarial_loss is for SR3"):
        TrainConfig(kind="regression", adversarial_loss=0.01).validate()
    with pytest.raises(ConfigError, match="critic_lr"):
        TrainConfig(kind="sr3", adversarial_loss=0.01, critic_lr=0.0).validate()


def test_a_run_with_the_adversarial_term_trains_its_critic_saves_it_and_resumes_it(tmp_path: Path) -> None:
    photos = make_photo_folder(tmp_path / "photos")
    run = train_tiny(photos, tmp_path / "run", "--kind", "sr3", "--target", "residual", "--prediction", "x0",
                     "--focus-fraction", "1", "--adversarial-loss", "0.05", "--critic-lr", "1e-3",
                     "--log-every", "1", steps=3)
    saved = load_checkpoint(run)
    assert saved["adversary"]["steps"] == 3
    initial = Adversary(1e-3, torch.device("cpu")).critic.state_dict()
    trained = saved["adversary"]["critic"]
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)  # the critic stepped
    assert train_tiny(photos, run, "--resume", steps=5) == run
    resumed = load_checkpoint(run)["adversary"]
    assert resumed["steps"] == 5  # continued from 3, not restarted at 0
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [row["critic_loss"] for row in rows if "critic_loss" in row]
    assert len(losses) == 5 and all(0.0 < value < 3.0 for value in losses)
