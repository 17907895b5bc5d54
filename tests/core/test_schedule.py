"""Pinned schedule values: the app and the exporter must agree on every gamma."""

import numpy as np
import pytest

from sr3_desktop.core.diffusion.schedule import (
    ScheduleError,
    ScheduleSpec,
    gamma_of_sigma,
    inference_levels,
    levels_from_preset_schedule,
    linear_beta_levels,
    sigma_geometric_levels,
    sigma_of_gamma,
    strength_of_gamma,
    timestep_for_strength,
    validate_levels,
)

PAPER = ScheduleSpec("linear", 2000, 1e-6, 1e-2)


@pytest.mark.parametrize(
    ("t", "gamma"),
    [
        (1, 0.999999),
        (2, 0.9999929980050014),
        (500, 0.5352504087336928),
        (1000, 0.08178379205169121),
        (1500, 0.0035560036659287877),
        (2000, 4.3859782361332086e-05),
    ],
)
def test_paper_linear_schedule_is_pinned(t: int, gamma: float) -> None:
    assert PAPER.gammas()[t - 1] == pytest.approx(gamma, rel=1e-12)


def test_gammas_are_the_product_of_alphas() -> None:
    betas = np.linspace(1e-6, 1e-2, 2000)
    expected = 1.0
    for t, beta in enumerate(betas, start=1):
        expected *= 1.0 - beta
        if t in (1, 777, 2000):
            assert PAPER.gammas()[t - 1] == pytest.approx(expected, rel=1e-12)
    # second-order check of the last value: log gamma ~ -sum(beta) - sum(beta^2) / 2
    assert np.log(PAPER.gammas()[-1]) == pytest.approx(-betas.sum() - (betas**2).sum() / 2, rel=1e-4)
    assert PAPER.gammas().dtype == np.float64


def test_other_kinds_are_pinned() -> None:
    cosine = ScheduleSpec("cosine", 1000).gammas()[[0, 499, 999]]
    np.testing.assert_allclose(cosine, [9.99958716e-01, 4.93843590e-01, 2.42876691e-09], rtol=1e-8)
    quadratic = ScheduleSpec("quadratic", 1000, 1e-4, 2e-2).gammas()[[0, 499, 999]]
    np.testing.assert_allclose(quadratic, [9.99900000e-01, 3.33187767e-01, 7.33412460e-04], rtol=1e-8)


def test_inference_levels_are_a_training_subsequence() -> None:
    levels = inference_levels(PAPER, 4, 1.0)
    np.testing.assert_allclose(levels, [4.38597824e-05, 1.15786332e-02, 3.28603228e-01, 9.99999000e-01], rtol=1e-8)
    assert set(np.round(levels, 15)) <= set(np.round(PAPER.gammas(), 15))
    np.testing.assert_allclose(
        inference_levels(PAPER, 5, 0.3, "quadratic"), [0.4064232, 0.75173028, 0.94477078, 0.99645168, 0.999999],
        rtol=1e-7,
    )


def test_strength_and_linear_levels() -> None:
    assert timestep_for_strength(2000, 1.0) == 2000
    assert timestep_for_strength(2000, 0.3) == 600
    assert timestep_for_strength(2000, 1e-9) == 1
    np.testing.assert_allclose(linear_beta_levels(3, 1e-4, 0.5), [0.3749375, 0.74987501, 0.9999], rtol=1e-7)
    rebuilt = levels_from_preset_schedule({"type": "train_subsequence"}, PAPER, 4, 1.0)
    np.testing.assert_array_equal(rebuilt, inference_levels(PAPER, 4, 1.0))
    partial = levels_from_preset_schedule({"type": "linear", "beta_start": 1e-4, "beta_end": 0.1}, PAPER, 50, 0.2)
    assert partial[0] >= PAPER.gammas()[399]


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ScheduleError):
        ScheduleSpec("sigmoid", 10)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError):
        ScheduleSpec("linear", 10, 0.2, 0.1)
    with pytest.raises(ScheduleError):
        validate_levels(np.array([0.5, 0.4]))
    with pytest.raises(ScheduleError):
        validate_levels(np.array([0.5, 1.0]))
    with pytest.raises(ScheduleError):
        timestep_for_strength(100, 0.0)
    with pytest.raises(ScheduleError):
        levels_from_preset_schedule({"type": "magic"}, PAPER, 4, 1.0)


# --- sigma = sqrt((1 - gamma) / gamma): the noise-to-signal ratio of Eq. 4 ---------------------------
def test_sigma_and_gamma_are_inverse() -> None:
    assert sigma_of_gamma(0.8) == pytest.approx(0.5, rel=1e-15)  # (1 - 0.8) / 0.8 = 0.25
    assert gamma_of_sigma(0.5) == pytest.approx(0.8, rel=1e-15)
    for sigma in (1e-3, 0.05, 0.3, 1.0, 7.0):
        assert sigma_of_gamma(gamma_of_sigma(sigma)) == pytest.approx(sigma, rel=1e-12)
    # y_t / sqrt(gamma) = y0 + sigma eps: the noise std relative to the signal
    gamma = PAPER.gammas()[99]
    assert sigma_of_gamma(gamma) == pytest.approx(np.sqrt(1 - gamma) / np.sqrt(gamma), rel=1e-12)


def test_strength_of_gamma_is_the_nearest_training_step() -> None:
    gammas = PAPER.gammas()
    for t in (1, 37, 600, 2000):
        assert strength_of_gamma(PAPER, gammas[t - 1]) == t / 2000
        assert timestep_for_strength(2000, strength_of_gamma(PAPER, gammas[t - 1])) == t
    nearer_100 = gammas[99] + 0.2 * (gammas[100] - gammas[99])  # between steps 100 and 101, nearer 100
    assert strength_of_gamma(PAPER, nearer_100) == 100 / 2000
    assert strength_of_gamma(PAPER, 1.0) == 1 / 2000


def test_sigma_geometric_levels_fall_geometrically_in_sampling_order() -> None:
    levels = sigma_geometric_levels(3, 0.4, 0.1)
    np.testing.assert_allclose(levels, [1 / (1 + 0.4**2), 1 / (1 + 0.2**2), 1 / (1 + 0.1**2)], rtol=1e-14)
    validate_levels(levels)  # noisiest first, gamma strictly increasing
    sigmas = np.sqrt((1 - levels) / levels)
    np.testing.assert_allclose(sigmas[1:] / sigmas[:-1], [0.5, 0.5], rtol=1e-12)
    np.testing.assert_allclose(sigma_geometric_levels(1, 0.3, 0.05), [gamma_of_sigma(0.3)], rtol=1e-15)
    assert sigma_geometric_levels(2, 0.3, 0.3).size == 2
    for bad in ((0, 0.3, 0.1), (2, 0.1, 0.3), (2, 0.3, 0.0)):
        with pytest.raises(ScheduleError):
            sigma_geometric_levels(*bad)


def test_sigma_geometric_presets_keep_their_sigmas_and_follow_an_overridden_strength() -> None:
    schedule = {"type": "sigma_geometric", "sigma_start": 0.3, "sigma_end": 0.075}
    own = strength_of_gamma(PAPER, gamma_of_sigma(0.3))
    np.testing.assert_allclose(levels_from_preset_schedule(schedule, PAPER, 2, own),
                               [gamma_of_sigma(0.3), gamma_of_sigma(0.075)], rtol=1e-14)
    three = levels_from_preset_schedule(schedule, PAPER, 3, own)  # more steps: same ends, geometric between
    np.testing.assert_allclose(three, [gamma_of_sigma(0.3), gamma_of_sigma(0.15), gamma_of_sigma(0.075)], rtol=1e-14)
    # --strength 0.1 starts at the training step t = 200 and keeps sigma_end / sigma_start = 1 / 4.
    start = sigma_of_gamma(PAPER.gammas()[199])
    np.testing.assert_allclose(levels_from_preset_schedule(schedule, PAPER, 2, 0.1),
                               [gamma_of_sigma(start), gamma_of_sigma(start / 4)], rtol=1e-12)
    with pytest.raises(KeyError):
        levels_from_preset_schedule({"type": "sigma_geometric"}, PAPER, 2, own)


@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.7, 0.9])
def test_one_step_sigma_geometric_presets_rebuild_at_any_strength(sigma: float) -> None:
    """A 1-step preset has sigma_end == sigma_start; rounding must not turn the ratio 1 into end > start."""
    schedule = {"type": "sigma_geometric", "sigma_start": sigma, "sigma_end": sigma}
    for strength in (strength_of_gamma(PAPER, gamma_of_sigma(sigma)), 0.05, 0.3, 1.0):
        levels = levels_from_preset_schedule(schedule, PAPER, 1, strength)
        assert levels.size == 1 and 0.0 < levels[0] < 1.0
        assert levels_from_preset_schedule(schedule, PAPER, 2, strength)[1] == levels[0]  # ratio 1: flat
