"""Reverse-diffusion steps for SR3: DDPM (paper Alg. 2) and DDIM (Song et al. 2021), pure numpy.

Notation (paper Eq. 4): gamma = prod alpha, y_t = sqrt(gamma) * y0 + sqrt(1 - gamma) * eps.
A chain is a float64 array of gammas in sampling order (noisiest first); step i goes from
levels[i] to levels[i + 1], and the last step goes to gamma = 1 (it returns the predicted y0).
"Noise level" always means gamma; what the network's ``noise_level`` input carries (gamma or
sqrt(gamma), per the card's ``noise_conditioning``) is its *network input*, see ``network_input``.

The network may predict eps (the paper), y0 ("x0") or v = sqrt(g) eps - sqrt(1 - g) y0; it may
diffuse the HR image (target "hr") or the residual r = hr - lr_up (target "residual").
Arrays are in model space ([-1, 1]); scalars are float64, and array maths keeps the arrays' dtype
(float32 from the network: numpy treats Python floats as weak scalars).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sr3_desktop.core.diffusion.schedule import validate_levels
from sr3_desktop.core.literals import SAMPLER_NAMES, NoiseConditioning, Prediction, SamplerName, Target


def split_prediction(
    model_output: np.ndarray, y_t: np.ndarray, gamma: float, prediction: Prediction
) -> tuple[np.ndarray, np.ndarray]:
    """(y0_hat, eps_hat) from a network output at noise level gamma."""
    out, y = np.asarray(model_output), np.asarray(y_t)
    sg, s1g = math.sqrt(gamma), math.sqrt(1.0 - gamma)
    if prediction == "epsilon":  # invert Eq. 4
        return (y - s1g * out) / sg, out
    if prediction == "x0":
        return out, (y - sg * out) / s1g
    if prediction == "v":  # v = sqrt(g) eps - sqrt(1-g) y0 (Salimans & Ho 2022)
        return sg * y - s1g * out, s1g * y + sg * out
    raise ValueError(f"unknown prediction {prediction!r}")


def clip_y0(y0: np.ndarray, target: Target, lr_up: np.ndarray | None) -> np.ndarray:
    """Clip so the HR estimate lies in [-1, 1]: y0 itself (hr) or lr_up + y0 (residual)."""
    if target == "hr":
        return np.clip(y0, -1.0, 1.0)
    if lr_up is None:
        raise ValueError("a residual target needs lr_up to clip the predicted y0")
    lr = np.asarray(lr_up)
    return np.clip(y0, -1.0 - lr, 1.0 - lr)


def eps_from_y0(y_t: np.ndarray, y0: np.ndarray, gamma: float) -> np.ndarray:
    """The noise consistent with y_t and y0 at level gamma (Eq. 4 solved for eps)."""
    return (np.asarray(y_t) - math.sqrt(gamma) * y0) * (1.0 / math.sqrt(1.0 - gamma))


def ddim_sigma(gamma_t: float, gamma_s: float, eta: float) -> float:
    """Song et al. Eq. 16: eta = 1 gives the DDPM posterior's standard deviation."""
    return eta * math.sqrt((1.0 - gamma_s) / (1.0 - gamma_t) * (1.0 - gamma_t / gamma_s))


class NoiseSource(Protocol):
    """Where a chain's Gaussian draws come from: ``np.random.Generator`` in the app (seeded per sample),
    or a recorded stream (a reference implementation's draws, in its order, to reproduce its chain)."""

    def standard_normal(self, size: tuple[int, ...], dtype: type[np.float32]) -> np.ndarray:
        """A float32 array of ``size`` standard normal draws."""
        ...


def network_input(gamma: float, conditioning: NoiseConditioning, batch: int) -> np.ndarray:
    """The value fed to the network's ``noise_level`` input at noise level gamma: gamma or sqrt(gamma)
    (the paper conditions on sqrt(gamma), Sec. 2.4), float32 of shape (batch,)."""
    value = math.sqrt(gamma) if conditioning == "sqrt_gamma" else gamma
    return np.full((batch,), value, dtype=np.float32)


@dataclass
class Sampler:
    """A scheduler in the diffusers style: ``step(model_output, i, y_t, noise, lr_up)``; the fresh noise of a
    stochastic step is drawn from ``noise`` (a NoiseSource), one ``standard_normal(y_t.shape)`` per step.

    It holds no state between steps besides its configuration, so one Sampler can drive
    several chains (the K samples of ``--samples K``).
    """

    levels: np.ndarray
    """Gammas in sampling order (noisiest first), float64."""
    kind: SamplerName = "ddpm"
    """"ddpm" (paper Alg. 2, ancestral) or "ddim"."""
    eta: float = 0.0
    """DDIM stochasticity in [0, 1]; ignored by "ddpm"."""
    prediction: Prediction = "epsilon"
    """What the network predicts."""
    target: Target = "hr"
    """What is diffused: the HR image or the residual HR - lr_up."""
    noise_conditioning: NoiseConditioning = "sqrt_gamma"
    """What the network's noise_level input carries: gamma or sqrt(gamma)."""
    _levels: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._levels = validate_levels(np.asarray(self.levels, dtype=np.float64))
        if self.kind not in SAMPLER_NAMES:
            raise ValueError(f"unknown sampler {self.kind!r}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")

    @property
    def num_steps(self) -> int:
        return int(self._levels.size)

    def gamma(self, i: int) -> float:
        """The noise level gamma where step i starts."""
        return float(self._levels[i])

    def next_gamma(self, i: int) -> float:
        """The noise level gamma where step i ends (1.0 after the last step)."""
        return float(self._levels[i + 1]) if i + 1 < self._levels.size else 1.0

    def network_input(self, i: int, batch: int = 1) -> np.ndarray:
        """The network's ``noise_level`` input for step i (gamma or sqrt(gamma), see ``network_input``)."""
        return network_input(self.gamma(i), self.noise_conditioning, batch)

    def start(self, noise: np.ndarray, estimate: np.ndarray | None = None) -> np.ndarray:
        """The first y: pure noise, or an estimate (diffused space) noised to levels[0] (Eq. 4).

        Computed in float32 (one new plane besides a temporary), as the rest of the chain is.
        """
        if estimate is None:
            return np.asarray(noise, dtype=np.float32)
        g0 = self.gamma(0)
        y = np.multiply(noise, math.sqrt(1.0 - g0), dtype=np.float32)
        y += np.multiply(estimate, math.sqrt(g0), dtype=np.float32)
        return y

    def needs_noise(self, i: int) -> bool:
        """Whether step i draws fresh noise (not on the last step, not for DDIM with eta = 0)."""
        if i + 1 >= self.num_steps:
            return False
        return self.kind == "ddpm" or self.eta > 0.0

    def predict_y0(
        self, model_output: np.ndarray, i: int, y_t: np.ndarray, lr_up: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Clipped y0_hat and the eps_hat recomputed from it."""
        gamma_t = self.gamma(i)
        y0, _ = split_prediction(model_output, y_t, gamma_t, self.prediction)
        y0 = clip_y0(y0, self.target, lr_up)
        return y0, eps_from_y0(y_t, y0, gamma_t)

    def step(
        self,
        model_output: np.ndarray,
        i: int,
        y_t: np.ndarray,
        rng: NoiseSource | None = None,
        lr_up: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One reverse step from levels[i]: returns (y_prev, pred_y0), both float32.

        **model_output may be overwritten**: a writable float32 array that shares no memory with
        y_t or lr_up becomes pred_y0 in place (it is then the returned pred_y0), so a step allocates
        one new full-image plane (y_prev) instead of about six. Pass a copy if you need it later.
        Other outputs (float64, read-only, aliasing y_t) are copied first. y_t and lr_up are only read.
        """
        gamma_t, gamma_s = self.gamma(i), self.next_gamma(i)
        y0 = self._y0_in_place(self._writable_output(model_output, y_t, lr_up), y_t, gamma_t, lr_up)
        pred = y0 if y0.dtype == np.float32 else y0.astype(np.float32)
        if gamma_s >= 1.0:  # last step: the chain ends at the prediction
            return pred, pred
        noise = None
        if self.needs_noise(i):
            if rng is None:
                raise ValueError("this step is stochastic and needs a random generator")
            noise = rng.standard_normal(tuple(np.shape(y_t)), dtype=np.float32)
        y_s = np.empty(np.shape(y_t), dtype=y0.dtype)  # the one new plane
        if self.kind == "ddpm":  # posterior mean y0_coef * y0 + y_t_coef * y_t (Alg. 2 over a sub-sequence)
            alpha = gamma_t / gamma_s
            y0_coef = math.sqrt(gamma_s) * (1.0 - alpha) / (1.0 - gamma_t)
            y_t_coef = math.sqrt(alpha) * (1.0 - gamma_s) / (1.0 - gamma_t)
            np.multiply(y_t, y_t_coef / y0_coef, out=y_s)  # y0_coef > 0: levels strictly increase
            y_s += y0
            y_s *= y0_coef
            sigma = math.sqrt((1.0 - gamma_s) / (1.0 - gamma_t) * (1.0 - alpha))
        else:  # Song et al. Eq. 12 with the eps consistent with the clipped y0 (eps_from_y0)
            sigma = ddim_sigma(gamma_t, gamma_s, self.eta)
            c_eps = math.sqrt(max(1.0 - gamma_s - sigma**2, 0.0))
            np.multiply(y0, -math.sqrt(gamma_t), out=y_s)  # eps_hat = (y_t - sqrt(g_t) y0) / sqrt(1 - g_t)
            y_s += y_t
            # y_s = sqrt(g_s) (y0 + c_eps / sqrt(g_s) * eps_hat)
            y_s *= c_eps / (math.sqrt(gamma_s) * math.sqrt(1.0 - gamma_t))
            y_s += y0
            y_s *= math.sqrt(gamma_s)
        if noise is not None:
            noise *= sigma
            y_s += noise
        return (y_s if y_s.dtype == np.float32 else y_s.astype(np.float32)), pred

    @staticmethod
    def _writable_output(model_output: np.ndarray, y_t: np.ndarray, lr_up: np.ndarray | None) -> np.ndarray:
        """model_output itself when step may write into it, else a copy (float64 stays float64)."""
        out = np.asarray(model_output)
        reusable = (
            out.dtype == np.float32
            and out.flags.writeable
            and not np.may_share_memory(out, y_t)
            and (lr_up is None or not np.may_share_memory(out, lr_up))
        )
        if reusable:
            return out
        return np.array(out, dtype=np.result_type(out.dtype, np.float32))

    def _y0_in_place(
        self, out: np.ndarray, y_t: np.ndarray, gamma_t: float, lr_up: np.ndarray | None
    ) -> np.ndarray:
        """split_prediction + clip_y0 written into ``out``: the clipped y0_hat."""
        sg, s1g = math.sqrt(gamma_t), math.sqrt(1.0 - gamma_t)
        if self.prediction == "epsilon":  # y0 = (y - s1g eps) / sg   (Eq. 4 inverted)
            out *= -s1g
            out += y_t
            out *= 1.0 / sg
        elif self.prediction == "v":  # y0 = sg y - s1g v = sg (y - (s1g / sg) v)   (Salimans & Ho 2022)
            out *= -s1g / sg
            out += y_t
            out *= sg
        elif self.prediction != "x0":
            raise ValueError(f"unknown prediction {self.prediction!r}")
        if self.target == "hr":
            np.clip(out, -1.0, 1.0, out=out)
        else:  # residual: clip lr_up + y0 to [-1, 1], as add, clip, subtract
            if lr_up is None:
                raise ValueError("a residual target needs lr_up to clip the predicted y0")
            out += lr_up
            np.clip(out, -1.0, 1.0, out=out)
            out -= lr_up
        return out
