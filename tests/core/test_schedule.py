"""Pinned schedule values: the app and the exporter must agree on every gamma."""

import numpy as np
import pytest

from sr3_desktop.core.schedule import (
    ScheduleError,
    ScheduleSpec,
    inference_levels,
    levels_from_preset_schedule,
    linear_beta_levels,
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
