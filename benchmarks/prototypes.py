"""Prototypes of core changes, measured by explore_optimisations.py and bench_scale.py --prototype.

They belong in sr3_desktop/core (sampler.py, pipeline.py, denoiser.py); they live here only to
measure their gain on the real pipeline, by patching it for the duration of one measurement.

``lean_step``: ``Sampler.step`` with in-place arithmetic. It writes y0_hat into the network's output
buffer (the pipeline never reads it again: ``run_tiled`` hands out a fresh array) and builds y_s
in the one new buffer eps_hat, so a step allocates one full-image plane instead of about six.
The clip of a residual target (x0 + lr_up in [-1, 1]) is done as add, clip, subtract in place.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np

from sr3_desktop.core import pipeline
from sr3_desktop.core.sampler import Sampler, ddim_sigma


def lean_step(
    self: Sampler,
    model_output: np.ndarray,
    i: int,
    y_t: np.ndarray,
    rng: np.random.Generator | None = None,
    lr_up: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    gamma_t, gamma_s = self.gamma(i), self.next_gamma(i)
    sg, s1g = math.sqrt(gamma_t), math.sqrt(1.0 - gamma_t)
    y0 = np.asarray(model_output, dtype=np.float32)
    if self.prediction == "v":  # y0 = sg y - s1g v = sg (y - (s1g / sg) v)   (Salimans & Ho 2022)
        y0 *= -s1g / sg
        y0 += y_t
        y0 *= sg
    elif self.prediction == "epsilon":  # y0 = (y - s1g eps) / sg   (paper Eq. 4 inverted)
        y0 *= -s1g
        y0 += y_t
        y0 *= 1.0 / sg
    if self.target == "residual":  # clip lr_up + y0 to [-1, 1]
        assert lr_up is not None
        y0 += lr_up
        np.clip(y0, -1.0, 1.0, out=y0)
        y0 -= lr_up
    else:
        np.clip(y0, -1.0, 1.0, out=y0)
    if gamma_s >= 1.0:
        return y0, y0
    noise = None
    if self.needs_noise(i):
        assert rng is not None
        noise = rng.standard_normal(np.shape(y_t), dtype=np.float32)
    eps = np.multiply(y0, -sg, dtype=np.float32)  # eps = (y - sg y0) / s1g, the one new plane
    eps += y_t
    eps *= 1.0 / s1g
    if self.kind == "ddpm":
        alpha = gamma_t / gamma_s
        y0_coef = math.sqrt(gamma_s) * (1.0 - alpha) / (1.0 - gamma_t)
        y_t_coef = math.sqrt(alpha) * (1.0 - gamma_s) / (1.0 - gamma_t)
        np.multiply(y_t, y_t_coef / y0_coef, out=eps)
        eps += y0
        eps *= y0_coef
        sigma = math.sqrt((1.0 - gamma_s) / (1.0 - gamma_t) * (1.0 - alpha))
    else:  # Song et al. Eq. 12
        sigma = ddim_sigma(gamma_t, gamma_s, self.eta)
        c_eps = math.sqrt(max(1.0 - gamma_s - sigma**2, 0.0))
        eps *= c_eps / math.sqrt(gamma_s)
        eps += y0
        eps *= math.sqrt(gamma_s)
    if noise is not None:
        noise *= sigma
        eps += noise
    return eps, y0


@contextlib.contextmanager
def patched(obj: object, name: str, value: object) -> Iterator[None]:
    original = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, original)


@contextlib.contextmanager
def lean_sampler() -> Iterator[None]:
    with patched(Sampler, "step", lean_step):
        yield


@contextlib.contextmanager
def lean_start() -> Iterator[None]:
    """Sampler.start in float32 (the original goes through float64 temporaries)."""

    def start(self: Sampler, noise: np.ndarray, estimate: np.ndarray | None = None) -> np.ndarray:
        if estimate is None:
            return np.asarray(noise, dtype=np.float32)
        g0 = self.gamma(0)
        y = np.multiply(noise, math.sqrt(1.0 - g0), dtype=np.float32)
        y += np.float32(math.sqrt(g0)) * estimate
        return y

    with patched(Sampler, "start", start):
        yield


def pipeline_module() -> object:
    return pipeline
