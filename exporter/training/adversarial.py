"""An adversarial texture term for SR3's one-step prediction: a small conditional patch critic.

A pixel L1 learns the median of the plausible textures, which is no texture, and a matched local energy
(``texture_l1``) says how much fine band a cell needs but not what it looks like. A critic trained beside
the denoiser to tell the photo's detail from the predicted detail, given the condition, rewards texture
that looks like the photo's (pix2pix's conditional patch GAN, Isola et al. 2017; the weight and the
one-pass use as in ESRGAN / Real-ESRGAN, Wang et al. 2018, 2021). Spectral normalisation (Miyato et al.
2018) keeps the critic's gradients tame without a penalty term.

The critic sees (HR - condition, condition): the detail the denoiser adds, and what it is added to. Its
losses are the non-saturating ones of Goodfellow et al. 2014: the critic minimises
softplus(-D(real)) + softplus(D(fake)), the denoiser softplus(-D(fake)), on the focused samples only,
where the short chains people run take their prediction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchCritic(nn.Module):
    """A spectrally normalised conv net giving one logit per ~16 px patch of an HR crop (4x down)."""

    def __init__(self, channels: int = 3, width: int = 32) -> None:
        super().__init__()

        def conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(c_in, c_out, kernel, stride, padding=(kernel - stride + 1) // 2))

        act = nn.LeakyReLU(0.2)
        self.net = nn.Sequential(
            conv(2 * channels, width, 4, 2), act,
            conv(width, 2 * width, 4, 2), act,
            conv(2 * width, 2 * width, 3, 1), act,
            conv(2 * width, 1, 3, 1),
        )

    def forward(self, hr: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Per-patch logits (N, 1, H/4, W/4): high where the detail looks like a photo's."""
        return self.net(torch.cat([hr - condition, condition], dim=1))


class Adversary:
    """The critic and its Adam optimiser, trained one step for each denoiser step.

    ``generator_loss`` is the denoiser's term (gradients reach the prediction, not the critic);
    ``update`` trains the critic on the photo against the detached prediction, on the focused samples.
    Under torchrun the critic's gradients are averaged over the processes, so every copy stays the same.
    """

    def __init__(self, lr: float, device: torch.device, seed: int = 0) -> None:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed + 7919)  # the critic's weights: not drawn from the denoiser's seed stream
        self.critic = PatchCritic().to(device)
        torch.random.set_rng_state(generator_state)
        self.optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.999))
        self.steps = 0

    def generator_loss(self, prediction: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the masked samples of softplus(-D(prediction)): low when the critic takes it for a photo."""
        self.critic.requires_grad_(False)
        try:
            logits = self.critic(prediction.float(), condition.float())
        finally:
            self.critic.requires_grad_(True)
        per_sample = nn.functional.softplus(-logits).mean(dim=(1, 2, 3))
        return (mask * per_sample).sum() / mask.sum().clamp_min(1.0)

    def update(self, real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor) -> float:
        """One critic step on the masked samples; returns its loss (log 2 x 2 = 1.386 when it cannot tell)."""
        self.steps += 1
        real, fake, condition = real.float(), fake.detach().float(), condition.float()
        per_sample = nn.functional.softplus(-self.critic(real, condition)).mean(dim=(1, 2, 3)) + \
            nn.functional.softplus(self.critic(fake, condition)).mean(dim=(1, 2, 3))
        loss = (mask * per_sample).sum() / mask.sum().clamp_min(1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            for parameter in self.critic.parameters():
                if parameter.grad is not None:
                    torch.distributed.all_reduce(parameter.grad)
                    parameter.grad /= world
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # none left over for the denoiser's term to add to
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
