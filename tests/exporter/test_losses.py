"""The training objective's options: focused noise levels, the chain's real start, gradient and spectrum terms."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from exporter.config import TrainConfig, get_preset
from exporter.training.objective import (
    GammaSampler,
    block_l1,
    focus_mask,
    focused_gammas,
    gradient_l1,
    phase_energy_l1,
    q_sample,
    spectrum_l1,
    sr3_loss,
    texture_l1,
    to_x0_eps,
)

N = 20_000


def config(**changes: object) -> TrainConfig:
    return TrainConfig.from_dict({**get_preset("tiny").to_dict(), **changes}).validate()


def sigma(gamma: torch.Tensor) -> torch.Tensor:
    return ((1.0 - gamma) / gamma).sqrt()


class FixedGammas:
    """A gamma sampler that returns the given levels (sr3_loss draws its gammas from its ``sampler``)."""

    def __init__(self, gammas: list[float]) -> None:
        self.gammas = torch.tensor(gammas, dtype=torch.float64)

    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        assert batch == len(self.gammas)
        return self.gammas.clone()


class Recorder(nn.Module):
    """Records what the network is fed; outputs a fixed, non-trivial function of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, lr_up: torch.Tensor, y_t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        self.calls.append((lr_up.clone(), y_t.clone(), level.clone()))
        return 0.5 * y_t - 0.25 * lr_up


class Oracle(nn.Module):
    """Knows the clean y0 and outputs the exact eps / x0 / v target for whatever y_t it is given (Eq. 4)."""

    def __init__(self, y0: torch.Tensor, prediction: str) -> None:
        super().__init__()
        self.y0, self.prediction = y0, prediction

    def forward(self, lr_up: torch.Tensor, y_t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        sg = level.double()[:, None, None, None]
        s1g = (1.0 - sg.square()).sqrt()
        y0 = self.y0.double()
        eps = (y_t.double() - sg * y0) / s1g
        out = {"epsilon": eps, "x0": y0, "v": sg * eps - s1g * y0}[self.prediction]
        return out.float()


def images(batch: int, seed: int = 0, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lr_up = torch.rand(batch, 3, size, size, generator=generator) * 1.6 - 0.8
    hr = (lr_up + 0.2 * torch.randn(batch, 3, size, size, generator=generator)).clamp(-1.0, 1.0)
    return lr_up, hr


# --- focused noise levels ------------------------------------------------------------------------
def test_focused_gammas_replace_exactly_the_chosen_share_with_sigmas_in_the_range() -> None:
    cfg = config(focus_fraction=0.3, focus_sigma_min=0.02, focus_sigma_max=0.5)
    before = torch.full((N,), 0.01, dtype=torch.float64)  # sigma = 9.95: far outside the range
    after = focused_gammas(cfg, before, torch.Generator().manual_seed(0))
    changed = after != before
    assert abs(changed.double().mean().item() - 0.3) < 4.0 * np.sqrt(0.3 * 0.7 / N)
    s = sigma(after[changed])
    assert s.min() >= 0.02 * (1 - 1e-9) and s.max() <= 0.5 * (1 + 1e-9)
    assert after.dtype == torch.float64
    assert torch.equal(focused_gammas(config(focus_fraction=0.0), before, None), before)


def test_focused_sigmas_are_log_uniform() -> None:
    low, high = 0.01, 0.6
    cfg = config(focus_fraction=1.0, focus_sigma_min=low, focus_sigma_max=high)
    gamma = GammaSampler(cfg.schedule()).sample(N, torch.Generator().manual_seed(1))
    u = ((sigma(focused_gammas(cfg, gamma, torch.Generator().manual_seed(2))).log() - np.log(low))
         / (np.log(high) - np.log(low))).numpy()
    assert u.min() >= -1e-9 and u.max() <= 1 + 1e-9  # focus_fraction = 1: every level is in the range
    # The median sigma is the geometric mean of the ends: the sample median of U(0, 1) has sd 1 / (2 sqrt(N)).
    assert abs(np.median(u) - 0.5) < 4.0 / (2.0 * np.sqrt(N))
    # And the whole distribution is uniform in log sigma (Kolmogorov-Smirnov, 0.1 % critical value).
    ks = np.max(np.abs(np.sort(u) - (np.arange(1, N + 1) - 0.5) / N))
    assert ks < 1.95 / np.sqrt(N)


def test_focus_mask_is_sigma_at_most_focus_sigma_max() -> None:
    cfg = config(focus_sigma_max=0.5)
    edge = 1.0 / (1.0 + 0.5**2)
    gamma = torch.tensor([0.999, edge, edge - 1e-9, 0.3], dtype=torch.float64)
    assert focus_mask(cfg, gamma).tolist() == [1.0, 1.0, 0.0, 0.0]


# --- the chain's real start ----------------------------------------------------------------------
@pytest.mark.parametrize("target", ["residual", "hr"])
def test_start_fraction_feeds_the_noised_start_estimate(target: str) -> None:
    """start_fraction = focus_fraction = 1: the network sees what a chain started from the estimate sees."""
    cfg = config(prediction="x0", target=target, focus_fraction=1.0, start_fraction=1.0,
                 focus_sigma_min=0.05, focus_sigma_max=0.6)
    lr_up, hr = images(64)
    recorder = Recorder()
    sr3_loss(recorder, cfg, GammaSampler(cfg.schedule()), lr_up, hr, torch.Generator().manual_seed(3),
             torch.Generator().manual_seed(4))
    (seen_lr_up, y_t, level), = recorder.calls
    eps = torch.randn(hr.shape, generator=torch.Generator().manual_seed(4))  # sr3_loss's draw, replayed
    g = level.double().square()[:, None, None, None]
    estimate = torch.zeros_like(hr) if target == "residual" else lr_up  # y0 of the start: no residual in it
    assert torch.equal(seen_lr_up, lr_up)
    torch.testing.assert_close(y_t.double(), g.sqrt() * estimate + (1 - g).sqrt() * eps, rtol=0, atol=2e-6)
    y0 = hr - lr_up if target == "residual" else hr
    assert (y_t.double() - q_sample(y0, level.double().square(), eps).double()).abs().mean() > 0.05


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_the_start_target_is_consistent_with_what_the_network_is_fed(prediction: str) -> None:
    """An oracle that knows y0 scores zero on start samples too: eps / v targets use the noise y_t holds."""
    cfg = config(prediction=prediction, target="residual", focus_fraction=1.0, start_fraction=1.0,
                 focus_sigma_min=0.3, focus_sigma_max=0.6)
    lr_up, hr = images(16)
    loss = sr3_loss(Oracle(hr - lr_up, prediction), cfg, GammaSampler(cfg.schedule()), lr_up, hr,
                    torch.Generator().manual_seed(5), torch.Generator().manual_seed(6))
    assert float(loss) < 1e-4


def test_start_fraction_only_touches_focused_levels() -> None:
    cfg = config(prediction="x0", target="residual", start_fraction=1.0, focus_sigma_max=0.6)
    gammas = [0.99, 0.2]  # sigma 0.1 (focused) and 2.0 (not)
    lr_up, hr = images(2)
    recorder = Recorder()
    sr3_loss(recorder, cfg, FixedGammas(gammas), lr_up, hr, torch.Generator().manual_seed(0),
             torch.Generator().manual_seed(1))
    y_t = recorder.calls[0][1]
    eps = torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))
    g = torch.tensor(gammas, dtype=torch.float32)[:, None, None, None]
    torch.testing.assert_close(y_t[0], ((1 - g).sqrt() * eps)[0])
    torch.testing.assert_close(y_t[1], (g.sqrt() * (hr - lr_up) + (1 - g).sqrt() * eps)[1])


# --- gradient and spectrum terms ------------------------------------------------------------------
@pytest.mark.parametrize("term", [gradient_l1, spectrum_l1, texture_l1])
def test_aux_terms_are_zero_for_identical_images_and_grow_with_noise(term: object) -> None:
    assert callable(term)
    _, hr = images(3, seed=1, size=32)
    assert torch.equal(term(hr, hr), torch.zeros(3))
    noise = torch.randn(hr.shape, generator=torch.Generator().manual_seed(2))
    values = [term(hr + s * noise, hr) for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(v.shape == (3,) for v in values)
    for weaker, stronger in itertools.pairwise(values):
        assert torch.all(stronger > 1.5 * weaker)


def test_gradient_term_punishes_noise_on_flat_areas_but_not_an_offset() -> None:
    flat = torch.zeros(1, 3, 16, 16)
    assert float(gradient_l1(flat + 0.3, flat)) == pytest.approx(0.0, abs=1e-7)  # no gradient changed
    bumpy = flat + 0.1 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(0))
    expected = (bumpy.diff(dim=3).abs().mean() + bumpy.diff(dim=2).abs().mean()).item()
    assert float(gradient_l1(bumpy, flat)) == pytest.approx(expected, rel=1e-6)


def test_the_block_term_costs_a_grid_of_cells_and_not_texture_inside_them() -> None:
    """A depth-to-space grid (each 4 px cell at its own level) costs its border steps; noise of the same size
    that leaves the borders alone costs nothing; a grid of other cells costs far less. Mutations caught:
    borders at the wrong phase (the grid costs nothing), or one axis only (half the cost)."""
    hr = torch.zeros(2, 3, 32, 32)
    levels = 0.1 * torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    grid = levels.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    steps_x = (grid[..., :, 4::4] - grid[..., :, 3:-1:4]).abs().mean(dim=(1, 2, 3))
    steps_y = (grid[..., 4::4, :] - grid[..., 3:-1:4, :]).abs().mean(dim=(1, 2, 3))
    assert torch.allclose(block_l1(grid, hr, 4), steps_x + steps_y)
    inside = torch.zeros_like(hr)
    inside[..., 1:3, 1:3] = 0.3  # every cell's inner 2x2, the same in each cell: no border step
    inside = inside[..., :4, :4].repeat(1, 1, 8, 8)
    assert torch.equal(block_l1(inside, hr, 4), torch.zeros(2))
    grid_3 = levels.repeat_interleave(3, dim=2).repeat_interleave(3, dim=3)[..., :32, :32]
    grid_3 = torch.nn.functional.pad(grid_3, (0, 32 - grid_3.shape[3], 0, 32 - grid_3.shape[2]))
    assert torch.all(block_l1(grid_3, hr, 4) < 0.6 * block_l1(grid, hr, 4))


@pytest.mark.parametrize(("field", "term"), [("block_loss", block_l1), ("phase_loss", phase_energy_l1)])
def test_a_cell_term_is_added_on_the_focused_samples_of_an_unshuffled_unet(
    field: str, term: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
) -> None:
    """block_loss / phase_loss add their weight times block_l1 / phase_energy_l1 of the predicted HR over the
    focused samples; a U-Net without an unshuffle has no cells, so the term is off. Mutations caught: the term
    never added, or added over every sample."""
    gammas = [0.995, 0.9, 0.3, 0.05]
    lr_up, hr = images(4, seed=2)
    changes = {"prediction": "x0", "target": "residual", "focus_sigma_max": 0.6}
    unshuffled = {"unet": {**get_preset("tiny").to_dict()["unet"], "unshuffle": 2}}

    def loss(**more: object) -> float:
        return float(sr3_loss(Recorder(), config(**changes, **more), FixedGammas(gammas), lr_up, hr,
                              torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)))

    eps = torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))
    g = torch.tensor(gammas, dtype=torch.float64)
    y_t = q_sample(hr - lr_up, g, eps)
    x0, _ = to_x0_eps("x0", 0.5 * y_t - 0.25 * lr_up, y_t, g)
    expected = (0.5 * term(x0 + lr_up, hr, 2)[:2].mean()).item()
    assert expected > 0.0
    assert loss(**{field: 0.5}, **unshuffled) - loss(**unshuffled) == pytest.approx(expected, rel=1e-4)
    assert loss(**{field: 0.5}) == loss()


def test_the_phase_term_costs_texture_laid_out_the_same_way_in_every_cell() -> None:
    """Noise whose energy sits on 4 of the 16 phases of every 4 px cell costs its uneven profile; other noise
    spread over all phases as the photo's is costs little; a flat crop beside a flat photo costs nothing.
    Mutations caught: the profile not normalised by the crop's energy (the quiet grid would cost less than
    the loud noise), phases taken over the wrong cell (the 4 px pattern would read as nearly even)."""
    gen = torch.Generator().manual_seed(0)
    hr = 0.1 * torch.randn(2, 3, 64, 64, generator=gen)
    mask = torch.full((4, 4), 0.2)
    mask[:2, :2] = 1.0
    grid = 0.05 * torch.randn(2, 3, 64, 64, generator=gen) * mask.repeat(16, 16)
    other = 0.3 * torch.randn(2, 3, 64, 64, generator=gen)
    assert torch.all(phase_energy_l1(grid, hr, 4) > 0.6)
    assert torch.all(phase_energy_l1(other, hr, 4) < 0.2 * phase_energy_l1(grid, hr, 4))
    assert torch.all(phase_energy_l1(grid, hr, 2) < 0.4 * phase_energy_l1(grid, hr, 4))
    flat = torch.zeros(2, 3, 64, 64)
    assert torch.equal(phase_energy_l1(flat, flat, 4), torch.zeros(2))


def test_aux_terms_act_only_on_focused_levels() -> None:
    """gradient_loss and spectrum_loss are added over the focused samples only, as their mean there."""
    gammas = [0.995, 0.9, 0.3, 0.05]  # sigma 0.07, 0.33 (focused), 1.53, 4.4 (not)
    lr_up, hr = images(4, seed=2)
    base = config(prediction="x0", target="residual", focus_sigma_max=0.6)
    with_aux = config(prediction="x0", target="residual", focus_sigma_max=0.6, gradient_loss=0.5, spectrum_loss=0.1)

    def loss(cfg: TrainConfig, hr: torch.Tensor) -> float:
        return float(sr3_loss(Recorder(), cfg, FixedGammas(gammas), lr_up, hr, torch.Generator().manual_seed(0),
                              torch.Generator().manual_seed(1)))

    # What the recorder's output means as an HR prediction, computed here from Eq. 4.
    eps = torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))
    g = torch.tensor(gammas, dtype=torch.float64)
    y_t = q_sample(hr - lr_up, g, eps)
    x0, _ = to_x0_eps("x0", 0.5 * y_t - 0.25 * lr_up, y_t, g)
    hr_pred = x0 + lr_up
    expected = (0.5 * gradient_l1(hr_pred, hr)[:2].mean() + 0.1 * spectrum_l1(hr_pred, hr)[:2].mean()).item()
    assert loss(with_aux, hr) - loss(base, hr) == pytest.approx(expected, rel=1e-4)
    # Changing the HR of the unfocused samples changes the plain loss, never the aux terms.
    other = hr.clone()
    other[2:] = -other[2:]
    assert loss(base, other) != pytest.approx(loss(base, hr), rel=1e-3)
    assert loss(with_aux, other) - loss(base, other) == pytest.approx(expected, rel=1e-4)


def test_a_missing_fine_band_costs_more_in_the_spectrum_term_than_in_pixels() -> None:
    """The spectrum term must see blur: on a textured crop, blurring it costs several times its pixel L1
    (an orthonormal FFT would put the fine band in log1p's linear range, where the term vanishes)."""
    generator = torch.Generator().manual_seed(0)
    sharp = torch.rand((2, 3, 64, 64), generator=generator) * 0.2 - 0.1
    blurred = torch.nn.functional.avg_pool2d(sharp, 3, stride=1, padding=1, count_include_pad=False)
    pixel = (blurred - sharp).abs().mean(dim=(1, 2, 3))
    spectrum = spectrum_l1(blurred, sharp)
    assert torch.all(spectrum > 5.0 * pixel), (spectrum, pixel)


def test_the_texture_term_wants_texture_where_the_photo_has_it_and_none_where_it_is_flat() -> None:
    """Half the crop flat, half textured. A blurred prediction (no texture) and one with grain on the flat
    half both cost; a different texture of the same local energy (the pattern shifted by a pixel) costs
    several times less than either, where the pixel L1 prefers the blur. Mutations caught: the energy
    taken over the whole crop (the grain would pay for the blur), or of the image rather than its fine
    band (an offset would cost)."""
    generator = torch.Generator().manual_seed(0)
    texture = torch.rand((1, 3, 64, 64), generator=generator) * 0.4 - 0.2
    hr = texture.clone()
    hr[..., :32] = 0.0  # flat left half
    blurred = torch.nn.functional.avg_pool2d(hr, 5, stride=1, padding=2, count_include_pad=False)
    grainy = hr.clone()
    grainy[..., :32] = 0.1 * torch.randn((1, 3, 64, 32), generator=generator)
    shifted = hr.clone()
    shifted[..., 32:] = torch.roll(texture[..., 32:], 1, dims=2)
    cost = {name: float(texture_l1(x, hr)) for name, x in (("blur", blurred), ("grain", grainy),
                                                            ("shift", shifted))}
    assert cost["shift"] * 3 < min(cost["blur"], cost["grain"]), cost
    assert float((shifted - hr).abs().mean()) > float((blurred - hr).abs().mean())  # pixel L1 prefers the blur
    assert float(texture_l1(hr + 0.3, hr)) == pytest.approx(0.0, abs=1e-6)
