"""An independent float64 reference of the reverse chain, written straight from the papers.

It shares no code with ``sr3_desktop.core.diffusion.sampler`` (nor its schedule helpers): the golden-chain
tests run the app's float32 sampler and this reference on the same fixed, non-oracle model and
compare the two, so a change in any step's maths shows up in the result.

Notation (SR3, Saharia et al. Eq. 4): y_t = sqrt(g) y0 + sqrt(1 - g) eps, g = gamma. A chain is a list
of gammas, noisiest first; step i goes from levels[i] to levels[i + 1], the last one to gamma = 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Model = Callable[[np.ndarray, float], np.ndarray]
"""(y_t, network noise-level input) -> network output; the condition is bound inside."""


def ddpm_posterior(y_t: np.ndarray, y0: np.ndarray, gamma_t: float, gamma_s: float) -> tuple[np.ndarray, float]:
    """Mean and variance of q(y_s | y_t, y0) for gamma_s > gamma_t (Alg. 2 over a sub-sequence)."""
    alpha = gamma_t / gamma_s
    y0_coef = np.sqrt(gamma_s) * (1.0 - alpha) / (1.0 - gamma_t)
    y_t_coef = np.sqrt(alpha) * (1.0 - gamma_s) / (1.0 - gamma_t)
    mean = y0_coef * y0 + y_t_coef * np.asarray(y_t)
    variance = (1.0 - gamma_s) / (1.0 - gamma_t) * (1.0 - alpha)
    return mean, float(variance)


def ddim_step(
    y0: np.ndarray, eps: np.ndarray, gamma_t: float, gamma_s: float, eta: float, noise: np.ndarray | None
) -> np.ndarray:
    """Song et al. Eq. 12: y_s = sqrt(g_s) y0 + sqrt(1 - g_s - sigma^2) eps + sigma z, sigma from Eq. 16."""
    sigma = eta * np.sqrt((1.0 - gamma_s) / (1.0 - gamma_t) * (1.0 - gamma_t / gamma_s))
    y_s = np.sqrt(gamma_s) * y0 + np.sqrt(max(1.0 - gamma_s - sigma**2, 0.0)) * eps
    if sigma > 0.0:
        if noise is None:
            raise ValueError("a stochastic DDIM step (eta > 0) needs noise")
        y_s = y_s + sigma * noise
    return y_s  # type: ignore[no-any-return]


def y0_from_output(out: np.ndarray, y_t: np.ndarray, g: float, prediction: str) -> np.ndarray:
    """The network's y0 estimate for each parametrisation."""
    if prediction == "epsilon":  # Eq. 4 solved for y0
        return (y_t - np.sqrt(1.0 - g) * out) / np.sqrt(g)
    if prediction == "x0":
        return out
    if prediction == "v":  # v = sqrt(g) eps - sqrt(1 - g) y0 (Salimans & Ho 2022, Sec. 4)
        return np.sqrt(g) * y_t - np.sqrt(1.0 - g) * out
    raise ValueError(prediction)


def clip_hr(y0: np.ndarray, target: str, condition: np.ndarray | None) -> np.ndarray:
    """The HR estimate lies in [-1, 1]: y0 itself, or condition + y0 for a residual."""
    if target == "hr":
        return np.clip(y0, -1.0, 1.0)
    assert condition is not None
    return np.clip(condition + y0, -1.0, 1.0) - condition


def reverse_step(y_t: np.ndarray, y0: np.ndarray, g_t: float, g_s: float, kind: str, eta: float,
                 z: np.ndarray | None) -> np.ndarray:
    """y_s from y_t and the (clipped) y0, g_s > g_t."""
    a = g_t / g_s  # alpha of the sub-sequence step
    if kind == "ddpm":  # Ho et al. 2020 Eq. 7 (SR3 Alg. 2) over a sub-sequence: q(y_s | y_t, y0)
        mean = np.sqrt(g_s) * (1 - a) / (1 - g_t) * y0 + np.sqrt(a) * (1 - g_s) / (1 - g_t) * y_t
        std = np.sqrt((1 - g_s) / (1 - g_t) * (1 - a))
        return mean + std * z
    eps = (y_t - np.sqrt(g_t) * y0) / np.sqrt(1 - g_t)  # the noise consistent with the clipped y0
    sigma = eta * np.sqrt((1 - g_s) / (1 - g_t) * (1 - a))  # Song et al. 2021 Eq. 16
    y_s = np.sqrt(g_s) * y0 + np.sqrt(1 - g_s - sigma**2) * eps  # Song et al. Eq. 12
    return y_s + sigma * z if sigma > 0 else y_s


def chain(model: Model, levels: np.ndarray, y: np.ndarray, *, kind: str, eta: float, prediction: str,
          target: str, conditioning: str, condition: np.ndarray | None,
          rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Run the whole chain from ``y``: (final clipped y0, values clipped, values seen).

    Fresh noise is drawn from ``rng`` (float32 standard normals of y's shape, as the app draws them)
    on every step but the last, for DDPM and for DDIM with eta > 0.
    """
    y = np.asarray(y, dtype=np.float64)
    gammas = [float(g) for g in levels]
    clipped = seen = 0
    y0 = y
    for i, g_t in enumerate(gammas):
        level = np.sqrt(g_t) if conditioning == "sqrt_gamma" else g_t
        raw = y0_from_output(np.asarray(model(y, level), dtype=np.float64), y, g_t, prediction)
        y0 = clip_hr(raw, target, condition)
        clipped, seen = clipped + int(np.count_nonzero(y0 != raw)), seen + raw.size
        if i + 1 == len(gammas):
            break
        stochastic = kind == "ddpm" or eta > 0
        z = rng.standard_normal(y.shape, dtype=np.float32).astype(np.float64) if stochastic else None
        y = reverse_step(y, y0, g_t, gammas[i + 1], kind, eta, z)
    return y0, clipped, seen
