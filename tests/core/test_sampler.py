"""Sampler maths: single steps against the papers, and whole chains on a fixed non-oracle model against
an independent float64 reference (reference_chain.py) and pinned values."""

import numpy as np
import pytest
import reference_chain
from hypothesis import given, settings
from hypothesis import strategies as st

from sr3_desktop.core.diffusion.sampler import (
    Sampler,
    clip_y0,
    ddim_sigma,
    eps_from_y0,
    network_input,
    split_prediction,
)
from sr3_desktop.core.diffusion.schedule import ScheduleSpec, inference_levels

PAPER = ScheduleSpec("linear", 2000, 1e-6, 1e-2)
SHAPE = (3, 6, 5)


def oracle_output(y_t: np.ndarray, y0: np.ndarray, gamma: float, prediction: str) -> np.ndarray:
    """What a perfect network returns for the known y0, in float64 so the test checks the sampler's
    maths alone: a float32 eps at gamma_T ~ 4.5e-5 carries ~1e-5 of rounding into y0 = (y - ..) / sqrt(gamma)."""
    eps = (y_t.astype(np.float64) - np.sqrt(gamma) * y0) / np.sqrt(1.0 - gamma)
    out = {"epsilon": eps, "x0": y0, "v": np.sqrt(gamma) * eps - np.sqrt(1.0 - gamma) * y0}[prediction]
    return np.asarray(out, dtype=np.float64)


def toy_model(y_t: np.ndarray, condition: np.ndarray, level: float) -> np.ndarray:
    """A fixed non-oracle "network": its output depends non-linearly on y_t, on the condition and on
    its noise-level input, so every step of a chain changes the result (unlike an oracle, which
    returns the exact answer for any y_t and lets the last step alone recover it)."""
    h = 1.4 * y_t - 0.6 * np.roll(y_t, 1, axis=-1) + 0.8 * condition
    return np.tanh(h) * (1.25 - 0.5 * level) + 0.3 * level * y_t - 0.2 * np.roll(y_t, 1, axis=-2)


def app_chain(sampler: Sampler, y: np.ndarray, condition: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The app's way: float32 network outputs through Sampler.step; the final clipped y0."""
    lr_up = condition if sampler.target == "residual" else None
    for i in range(sampler.num_steps):
        out = toy_model(y, condition, float(sampler.network_input(i)[0])).astype(np.float32)
        y, _ = sampler.step(out, i, y, rng, lr_up)
    return y


def reference(levels: np.ndarray, y: np.ndarray, condition: np.ndarray, rng: np.random.Generator, *, kind: str,
              eta: float, prediction: str, target: str, conditioning: str = "sqrt_gamma") -> tuple[np.ndarray, int]:
    """The independent float64 chain of reference_chain.py: (final y0, how many values were clipped)."""
    cond = condition.astype(np.float64)
    y0, clipped, _ = reference_chain.chain(
        lambda y_t, level: toy_model(y_t, cond, level), levels, y, kind=kind, eta=eta, prediction=prediction,
        target=target, conditioning=conditioning, condition=cond if target == "residual" else None, rng=rng)
    return y0, clipped


GOLDEN_LEVELS = inference_levels(PAPER, 8, 0.6)
"""8 gammas from 0.027 to 0.999999: the chain starts from a noised estimate, as the app's fast preset does."""
_golden_inputs = np.random.default_rng(20)
GOLDEN_CONDITION = _golden_inputs.uniform(-0.9, 0.9, SHAPE).astype(np.float32)
GOLDEN_ESTIMATE = _golden_inputs.uniform(-1, 1, SHAPE).astype(np.float32)
GOLDEN = {  # the final y0 at a few unclipped pixels, computed once with reference_chain.py in float64
    ("ddpm", 0.0, "epsilon", "hr"): {(0, 0, 0): 0.112993760, (1, 2, 1): 0.800975974, (2, 3, 3): 0.042629860},
    ("ddpm", 0.0, "epsilon", "residual"): {(0, 0, 0): 0.192202404, (1, 2, 2): -0.792740854, (2, 3, 4): -0.049296709},
    ("ddpm", 0.0, "x0", "hr"): {(0, 0, 0): 0.798393256, (1, 5, 4): 0.863276055},
    ("ddpm", 0.0, "x0", "residual"): {(0, 0, 0): 0.879981744, (2, 0, 4): 0.748021667},
    ("ddpm", 0.0, "v", "hr"): {(0, 0, 0): 0.182608592, (1, 1, 2): -0.164450738, (2, 2, 4): -0.267122696},
    ("ddpm", 0.0, "v", "residual"): {(0, 0, 0): 0.185018115, (1, 1, 2): -0.167540701, (2, 2, 4): -0.285146697},
    ("ddim", 0.0, "epsilon", "hr"): {(0, 0, 0): -0.244920476, (1, 3, 0): 0.825127859},
    ("ddim", 0.0, "epsilon", "residual"): {(0, 0, 0): -0.235473446, (1, 3, 2): 0.037040497},
    ("ddim", 0.0, "x0", "hr"): {(0, 0, 1): -0.555452999, (2, 2, 0): -0.768031287},
    ("ddim", 0.0, "x0", "residual"): {(0, 0, 1): -0.661790497, (2, 4, 3): 0.889435707},
    ("ddim", 0.0, "v", "hr"): {(0, 0, 0): -0.023031603, (1, 1, 2): 0.047013365, (2, 2, 4): -0.301822653},
    ("ddim", 0.0, "v", "residual"): {(0, 0, 0): -0.013031614, (1, 1, 2): 0.046058122, (2, 3, 0): 0.128270885},
    ("ddim", 0.6, "epsilon", "hr"): {(0, 0, 0): -0.070622476, (1, 3, 0): 0.857162628, (2, 4, 4): -0.203775525},
    ("ddim", 0.6, "epsilon", "residual"): {(0, 0, 0): -0.036301082, (1, 2, 4): -0.017339829,
                                           (2, 4, 2): -1.096833861},
    ("ddim", 0.6, "x0", "hr"): {(0, 0, 0): 0.584435198, (2, 0, 3): 0.773507424},
    ("ddim", 0.6, "x0", "residual"): {(0, 0, 0): 0.653658073, (2, 3, 2): 0.771060179},
    ("ddim", 0.6, "v", "hr"): {(0, 0, 0): 0.110725787, (1, 1, 2): -0.122729309, (2, 2, 4): -0.362988109},
    ("ddim", 0.6, "v", "residual"): {(0, 0, 0): 0.115258000, (1, 1, 2): -0.123702977, (2, 2, 4): -0.365161619},
}


@pytest.mark.parametrize(("kind", "eta", "prediction", "target"), list(GOLDEN))
def test_a_golden_multi_step_chain_gives_the_pinned_values(kind: str, eta: float, prediction: str,
                                                           target: str) -> None:
    """8 steps on the fixed toy model: the app's float32 sampler equals the float64 reference written
    from the papers' equations, and both equal the pinned numbers (so they cannot drift together)."""
    sampler = Sampler(GOLDEN_LEVELS, kind, eta, prediction, target)  # type: ignore[arg-type]
    rng = np.random.default_rng(5)
    out = app_chain(sampler, sampler.start(rng.standard_normal(SHAPE, dtype=np.float32), GOLDEN_ESTIMATE),
                    GOLDEN_CONDITION, rng)
    rng = np.random.default_rng(5)
    g0 = GOLDEN_LEVELS[0]
    noise = rng.standard_normal(SHAPE, dtype=np.float32).astype(np.float64)
    start = np.sqrt(g0) * GOLDEN_ESTIMATE.astype(np.float64) + np.sqrt(1 - g0) * noise  # Eq. 4: noised estimate
    want, clipped = reference(GOLDEN_LEVELS, start, GOLDEN_CONDITION, rng, kind=kind, eta=eta,
                              prediction=prediction, target=target)
    assert 0 < clipped < 0.7 * SHAPE[0] * SHAPE[1] * SHAPE[2] * GOLDEN_LEVELS.size  # the clip rule matters
    np.testing.assert_allclose(out, want, atol=1e-5, rtol=0)  # float32 chain vs float64: ~5e-7 here
    for pixel, value in GOLDEN[(kind, eta, prediction, target)].items():
        assert want[pixel] == pytest.approx(value, abs=1e-8), pixel
        assert out[pixel] == pytest.approx(value, abs=1e-5), pixel


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 40),
    strength=st.floats(0.05, 1.0),
    kind_eta=st.sampled_from([("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.3), ("ddim", 1.0)]),
    prediction=st.sampled_from(["epsilon", "x0", "v"]),
    target=st.sampled_from(["hr", "residual"]),
    conditioning=st.sampled_from(["gamma", "sqrt_gamma"]),
    from_estimate=st.booleans(),
)
def test_any_chain_on_a_non_oracle_model_matches_the_reference(
    seed: int, steps: int, strength: float, kind_eta: tuple[str, float], prediction: str, target: str,
    conditioning: str, from_estimate: bool,
) -> None:
    """Every parameter here changes the result, and the float32 sampler must follow the float64
    reference through all of it (steps, start level, start estimate, sampler, eta, parametrisation,
    target, conditioning)."""
    kind, eta = kind_eta
    levels = inference_levels(PAPER, steps, strength)
    sampler = Sampler(levels, kind, eta, prediction, target, conditioning)  # type: ignore[arg-type]
    inputs = np.random.default_rng(seed)
    condition = inputs.uniform(-0.9, 0.9, SHAPE).astype(np.float32)
    estimate = inputs.uniform(-1, 1, SHAPE).astype(np.float32) if from_estimate else None
    noise = inputs.standard_normal(SHAPE, dtype=np.float32)
    out = app_chain(sampler, sampler.start(noise, estimate), condition, np.random.default_rng(seed + 1))
    g0 = levels[0]
    start = noise.astype(np.float64)
    if estimate is not None:  # Eq. 4: the estimate noised to the first level
        start = np.sqrt(g0) * estimate.astype(np.float64) + np.sqrt(1 - g0) * start
    want, _ = reference(levels, start, condition, np.random.default_rng(seed + 1), kind=kind, eta=eta,
                        prediction=prediction, target=target, conditioning=conditioning)
    # The chain runs in float32: y0 = (y - sqrt(1 - g) eps) / sqrt(g) magnifies its rounding (~3e-7 on
    # values of a few units) by 1 / sqrt(g), up to 150x at the paper's noisiest level.
    np.testing.assert_allclose(out, want, atol=1e-5 + 3e-7 / np.sqrt(levels[0]), rtol=0)


def test_ddpm_step_is_the_papers_algorithm_2() -> None:
    """On consecutive training steps the posterior mean is Alg. 2's mean; the variance is beta-tilde."""
    gammas = PAPER.gammas()
    t = 700  # gamma_t = gammas[t-1], gamma_s = gammas[t-2]
    g_t, g_s = gammas[t - 1], gammas[t - 2]
    alpha = g_t / g_s
    rng = np.random.default_rng(5)
    eps = (rng.standard_normal(SHAPE) * 0.1).astype(np.float32)  # keeps y0_hat inside [-1, 1]
    y_t = (np.sqrt(g_t) * rng.uniform(-0.9, 0.9, SHAPE) + np.sqrt(1 - g_t) * eps).astype(np.float32)
    sampler = Sampler(np.array([g_t, g_s]), "ddpm", 0.0, "epsilon", "hr")
    y_prev, _ = sampler.step(eps.copy(), 0, y_t, np.random.default_rng(9))  # step may overwrite its input
    z = np.random.default_rng(9).standard_normal(SHAPE, dtype=np.float32)
    mean = (y_t - (1 - alpha) / np.sqrt(1 - g_t) * eps.astype(np.float64)) / np.sqrt(alpha)  # Alg. 2, line 4
    variance = (1 - g_s) / (1 - g_t) * (1 - alpha)
    np.testing.assert_allclose(y_prev, mean + np.sqrt(variance) * z, atol=2e-6)
    _, var = reference_chain.ddpm_posterior(y_t, np.zeros(SHAPE), g_t, g_s)
    assert var == pytest.approx(variance, rel=1e-12)
    assert ddim_sigma(g_t, g_s, 1.0) ** 2 == pytest.approx(variance, rel=1e-12)
    assert ddim_sigma(g_t, g_s, 0.0) == 0.0


def test_ddim_step_matches_song_eq_12() -> None:
    g_t, g_s, eta = 0.3, 0.6, 0.5
    rng = np.random.default_rng(3)
    y0 = rng.uniform(-0.5, 0.5, SHAPE)
    eps = rng.standard_normal(SHAPE)
    y_t = (np.sqrt(g_t) * y0 + np.sqrt(1 - g_t) * eps).astype(np.float32)
    sampler = Sampler(np.array([g_t, g_s]), "ddim", eta, "x0", "hr")
    y_prev, pred = sampler.step(y0.astype(np.float32), 0, y_t, np.random.default_rng(4))
    z = np.random.default_rng(4).standard_normal(SHAPE, dtype=np.float32)
    sigma = eta * np.sqrt((1 - g_s) / (1 - g_t) * (1 - g_t / g_s))
    eps_hat = (y_t - np.sqrt(g_t) * y0.astype(np.float32).astype(np.float64)) / np.sqrt(1 - g_t)
    expected = np.sqrt(g_s) * y0 + np.sqrt(1 - g_s - sigma**2) * eps_hat + sigma * z
    np.testing.assert_allclose(y_prev, expected, atol=1e-5)
    np.testing.assert_allclose(pred, y0, atol=1e-6)


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_split_prediction_inverts_each_parametrisation(prediction: str) -> None:
    rng = np.random.default_rng(0)
    y0, eps, gamma = rng.uniform(-1, 1, SHAPE), rng.standard_normal(SHAPE), 0.37
    y_t = np.sqrt(gamma) * y0 + np.sqrt(1 - gamma) * eps
    got_y0, got_eps = split_prediction(oracle_output(y_t, y0, gamma, prediction), y_t, gamma, prediction)  # type: ignore[arg-type]
    np.testing.assert_allclose(got_y0, y0, atol=1e-6)
    np.testing.assert_allclose(got_eps, eps, atol=1e-6)
    with pytest.raises(ValueError):
        split_prediction(y0, y_t, gamma, "score")  # type: ignore[arg-type]


def test_clipping_keeps_the_hr_estimate_in_range_and_eps_consistent() -> None:
    y0 = np.array([-3.0, -0.5, 0.2, 4.0])
    np.testing.assert_array_equal(clip_y0(y0, "hr", None), [-1.0, -0.5, 0.2, 1.0])
    lr_up = np.array([0.5, -0.9, 0.9, 0.0])
    residual = clip_y0(y0, "residual", lr_up)
    assert np.all(lr_up + residual <= 1.0) and np.all(lr_up + residual >= -1.0)
    np.testing.assert_allclose(residual, [-1.5, -0.1, 0.1, 1.0])
    with pytest.raises(ValueError):
        clip_y0(y0, "residual", None)
    # after clipping, eps is recomputed so that y_t = sqrt(g) y0 + sqrt(1-g) eps still holds
    gamma, y_t = 0.8, np.array([2.5, 0.0, 0.1, -0.3])
    sampler = Sampler(np.array([gamma]), "ddim", 0.0, "x0", "hr")
    clipped, eps = sampler.predict_y0(np.array([3.0, 0.0, 0.1, -2.0]), 0, y_t)
    np.testing.assert_array_equal(clipped, [1.0, 0.0, 0.1, -1.0])
    np.testing.assert_allclose(np.sqrt(gamma) * clipped + np.sqrt(1 - gamma) * eps, y_t, atol=1e-12)
    np.testing.assert_allclose(eps, eps_from_y0(y_t, clipped, gamma))


def test_a_clipped_prediction_stays_in_range_through_the_chain() -> None:
    rng = np.random.default_rng(2)
    sampler = Sampler(inference_levels(PAPER, 10, 1.0), "ddpm", 0.0, "epsilon", "hr")
    y = rng.standard_normal(SHAPE).astype(np.float32)
    for i in range(sampler.num_steps):
        y, pred = sampler.step(rng.standard_normal(SHAPE).astype(np.float32) * 5, i, y, rng)
        assert pred.min() >= -1.0 and pred.max() <= 1.0
    assert y.dtype == np.float32 and y.min() >= -1.0 and y.max() <= 1.0


def test_network_input_follows_the_card() -> None:
    sampler = Sampler(np.array([0.25, 0.64]), "ddim", 0.0, "epsilon", "hr", "sqrt_gamma")
    level = sampler.network_input(0, 3)
    assert level.dtype == np.float32 and level.shape == (3,)
    np.testing.assert_allclose(level, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(network_input(0.64, "gamma", 2), [0.64, 0.64])
    assert sampler.next_gamma(1) == 1.0


def test_start_noises_an_estimate_to_the_first_level() -> None:
    sampler = Sampler(np.array([0.36, 0.9]), "ddim", 0.0, "epsilon", "hr")
    estimate, noise = np.full(SHAPE, 0.5), np.ones(SHAPE, dtype=np.float32)
    np.testing.assert_allclose(sampler.start(noise, estimate), 0.6 * 0.5 + 0.8 * 1.0, atol=1e-7)
    np.testing.assert_array_equal(sampler.start(noise), noise)


def test_the_same_generator_state_gives_the_same_chain() -> None:
    sampler = Sampler(inference_levels(PAPER, 8, 1.0), "ddpm", 0.0, "epsilon", "hr")
    outputs = []
    for _ in range(2):
        rng = np.random.default_rng(42)
        y = rng.standard_normal(SHAPE, dtype=np.float32)
        for i in range(sampler.num_steps):
            y, _ = sampler.step(np.tanh(y), i, y, rng)
        outputs.append(y)
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError):
        Sampler(np.array([0.5, 0.4]))
    with pytest.raises(ValueError):
        Sampler(np.array([0.5]), "ddim", eta=1.5)
    with pytest.raises(ValueError):
        Sampler(np.array([0.5]), "euler")  # type: ignore[arg-type]
    stochastic = Sampler(np.array([0.5, 0.9]), "ddpm")
    with pytest.raises(ValueError):
        stochastic.step(np.zeros(SHAPE, dtype=np.float32), 0, np.zeros(SHAPE, dtype=np.float32), None)


def reference_step(sampler: Sampler, out: np.ndarray, i: int, y_t: np.ndarray, noise: np.ndarray | None,
                   lr_up: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The step written with the module's out-of-place helpers, in float64."""
    g_t, g_s = sampler.gamma(i), sampler.next_gamma(i)
    y0, _ = split_prediction(out.astype(np.float64), y_t.astype(np.float64), g_t, sampler.prediction)
    y0 = clip_y0(y0, sampler.target, lr_up)
    if g_s >= 1.0:
        return y0, y0
    if sampler.kind == "ddpm":
        mean, variance = reference_chain.ddpm_posterior(y_t, y0, g_t, g_s)
        return (mean if noise is None else mean + np.sqrt(variance) * noise), y0
    return reference_chain.ddim_step(y0, eps_from_y0(y_t, y0, g_t), g_t, g_s, sampler.eta, noise), y0


@pytest.mark.parametrize("target", ["hr", "residual"])
@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
@pytest.mark.parametrize(("kind", "eta"), [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.7)])
def test_the_in_place_step_matches_the_out_of_place_maths(kind: str, eta: float, prediction: str, target: str) -> None:
    rng = np.random.default_rng(11)
    sampler = Sampler(inference_levels(PAPER, 6, 0.6), kind, eta, prediction, target)  # type: ignore[arg-type]
    lr_up = rng.uniform(-1, 1, SHAPE).astype(np.float32) if target == "residual" else None
    for i in range(sampler.num_steps):
        y_t = rng.standard_normal(SHAPE).astype(np.float32)
        out = (rng.standard_normal(SHAPE) * 1.5).astype(np.float32)
        y_t_before, out_before = y_t.copy(), out.copy()
        lr_before = None if lr_up is None else lr_up.copy()
        noise = np.random.default_rng(i).standard_normal(SHAPE, dtype=np.float32) if sampler.needs_noise(i) else None
        y_prev, pred = sampler.step(out, i, y_t, np.random.default_rng(i), lr_up)
        want_y, want_pred = reference_step(sampler, out_before, i, y_t, noise, lr_up)
        np.testing.assert_allclose(pred, want_pred, atol=1e-5)
        np.testing.assert_allclose(y_prev, want_y, atol=1e-5)
        assert y_prev.dtype == pred.dtype == np.float32
        assert np.shares_memory(pred, out)  # the network's buffer became pred_y0 ...
        last = i + 1 == sampler.num_steps  # the last step returns pred_y0 as y_prev
        assert np.shares_memory(y_prev, out) == last  # ... and y_prev is the one new plane
        np.testing.assert_array_equal(y_t, y_t_before)  # the inputs it only reads stay as they were
        if lr_up is not None:
            np.testing.assert_array_equal(lr_up, lr_before)


def test_outputs_step_cannot_write_into_are_copied() -> None:
    sampler = Sampler(np.array([0.3, 0.6]), "ddim", 0.0, "epsilon", "hr")
    rng = np.random.default_rng(2)
    y_t = rng.standard_normal(SHAPE).astype(np.float32)
    reference = sampler.step(y_t.copy(), 0, y_t)
    aliased = y_t.copy()
    for y_prev, pred in (sampler.step(aliased, 0, aliased), reference):  # the output IS y_t
        np.testing.assert_allclose(y_prev, reference[0], atol=1e-6)
        np.testing.assert_allclose(pred, reference[1], atol=1e-6)
    frozen = y_t.copy()
    frozen.setflags(write=False)
    y_prev, pred = sampler.step(frozen, 0, y_t)
    np.testing.assert_allclose(y_prev, reference[0], atol=1e-6)
    np.testing.assert_array_equal(frozen, y_t)
    wide = y_t.astype(np.float64)
    sampler.step(wide, 0, y_t)
    np.testing.assert_array_equal(wide, y_t)  # float64 outputs are computed in a float64 copy


def test_start_is_float32_and_leaves_its_inputs_alone() -> None:
    sampler = Sampler(np.array([0.36, 0.9]), "ddim", 0.0, "epsilon", "hr")
    rng = np.random.default_rng(3)
    noise, estimate = rng.standard_normal(SHAPE, dtype=np.float32), rng.uniform(-1, 1, SHAPE).astype(np.float32)
    noise_before, estimate_before = noise.copy(), estimate.copy()
    y = sampler.start(noise, estimate)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, 0.6 * estimate.astype(np.float64) + 0.8 * noise, atol=1e-6)
    np.testing.assert_array_equal(noise, noise_before)
    np.testing.assert_array_equal(estimate, estimate_before)
