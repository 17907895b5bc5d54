"""Noise schedules in float64, shared by the app and the exporter.

Notation follows SR3 (Saharia et al.): alpha_t = 1 - beta_t and gamma_t = prod_{i<=t} alpha_i,
so a noisy target is y_t = sqrt(gamma) * y0 + sqrt(1 - gamma) * eps (paper Eq. 4).

An *inference chain* is a 1-D float64 array of gammas in sampling order: element 0 is the
noisiest state where the chain starts, the last element is the least noisy state. Each
reverse step goes from levels[i] to levels[i + 1], and the final step goes to gamma = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

BetaKind = Literal["linear", "quadratic", "cosine", "explicit"]
Spacing = Literal["uniform", "quadratic"]

_BETA_KINDS: tuple[str, ...] = ("linear", "quadratic", "cosine", "explicit")
_SPACINGS: tuple[str, ...] = ("uniform", "quadratic")


class ScheduleError(ValueError):
    """A schedule description is invalid."""


@dataclass(frozen=True)
class ScheduleSpec:
    """A discrete beta schedule with T steps (paper: linear, T = 2000, 1e-6 .. 1e-2)."""

    kind: BetaKind = "linear"
    """Shape of beta_t over t: "linear", "quadratic" (linear in sqrt(beta)), "cosine", or "explicit"
    (the betas themselves, for a converted model whose schedule is none of these: warmup, const, jsd)."""
    steps: int = 2000
    """Number of discrete steps T."""
    beta_start: float = 1e-6
    """beta_1 (ignored by "cosine")."""
    beta_end: float = 1e-2
    """beta_T (ignored by "cosine")."""
    explicit_betas: tuple[float, ...] = ()
    """beta_1 .. beta_T of an "explicit" schedule (empty for the named kinds)."""

    def __post_init__(self) -> None:
        if self.kind not in _BETA_KINDS:
            raise ScheduleError(f"unknown schedule kind {self.kind!r}; expected one of {_BETA_KINDS}")
        if self.steps < 1:
            raise ScheduleError(f"schedule needs at least 1 step, got {self.steps}")
        if (self.kind == "explicit") != bool(self.explicit_betas):
            raise ScheduleError('explicit betas go with the schedule kind "explicit", and only with it')
        if self.kind == "explicit":
            betas = np.asarray(self.explicit_betas, dtype=np.float64)
            if betas.size != self.steps or not np.all(np.isfinite(betas)) or np.any(betas <= 0) or np.any(betas >= 1):
                raise ScheduleError(f"an explicit schedule needs T = {self.steps} betas, each in (0, 1)")
        elif self.kind != "cosine" and not (0.0 < self.beta_start <= self.beta_end < 1.0):
            raise ScheduleError(
                f"need 0 < beta_start <= beta_end < 1, got {self.beta_start} .. {self.beta_end}"
            )

    def betas(self) -> np.ndarray:
        """beta_1 .. beta_T as float64."""
        if self.kind == "explicit":
            return np.asarray(self.explicit_betas, dtype=np.float64)
        return make_betas(self.kind, self.steps, self.beta_start, self.beta_end)

    def gammas(self) -> np.ndarray:
        """gamma_1 .. gamma_T (decreasing) as float64."""
        return gammas_from_betas(self.betas())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.kind, "T": self.steps, "beta_start": self.beta_start,
                                "beta_end": self.beta_end}
        if self.kind == "explicit":
            data["betas"] = list(self.explicit_betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleSpec:
        try:
            return cls(
                kind=data["type"],
                steps=int(data["T"]),
                beta_start=float(data.get("beta_start", 1e-6)),
                beta_end=float(data.get("beta_end", 1e-2)),
                explicit_betas=tuple(float(b) for b in data.get("betas") or ()),
            )
        except KeyError as missing:
            raise ScheduleError(f"schedule is missing the field {missing}") from None


def make_betas(kind: str, steps: int, beta_start: float, beta_end: float) -> np.ndarray:
    """Betas of a named schedule (not "explicit"), float64, length ``steps``."""
    if kind == "linear":
        return np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    if kind == "quadratic":
        return np.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=np.float64) ** 2
    if kind == "cosine":  # Nichol & Dhariwal 2021, Eq. 17
        s = 0.008
        t = np.arange(steps + 1, dtype=np.float64) / steps
        f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
        return np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    raise ScheduleError(f"unknown schedule kind {kind!r}; expected one of {_BETA_KINDS}")


def gammas_from_betas(betas: np.ndarray) -> np.ndarray:
    """gamma_t = prod_{i<=t} (1 - beta_i)."""
    return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))


def timestep_for_strength(num_train_steps: int, strength: float) -> int:
    """The training step t (1..T) where a chain of the given strength starts.

    ``strength`` is the fraction of the training chain that is run: 1.0 starts from
    pure noise at t = T (the paper), 0.3 noises an initial estimate up to t = 0.3 T.
    """
    if not (0.0 < strength <= 1.0):
        raise ScheduleError(f"strength must be in (0, 1], got {strength}")
    return max(1, min(num_train_steps, round(strength * num_train_steps)))


def inference_levels(
    train: ScheduleSpec, steps: int, strength: float = 1.0, spacing: Spacing = "uniform"
) -> np.ndarray:
    """A chain of ``steps`` gammas picked from the training schedule (DDIM-style sub-sequence).

    The chain starts at t = strength * T and ends at t = 1; "quadratic" spacing puts more
    steps near the clean end. Returned in sampling order (increasing gamma).
    """
    if steps < 1:
        raise ScheduleError(f"need at least 1 step, got {steps}")
    if spacing not in _SPACINGS:
        raise ScheduleError(f"unknown spacing {spacing!r}; expected one of {_SPACINGS}")
    t_start = timestep_for_strength(train.steps, strength)
    steps = min(steps, t_start)
    frac = np.linspace(1.0, 0.0, steps, dtype=np.float64)
    if spacing == "quadratic":
        frac = frac**2
    t = np.round(1 + frac * (t_start - 1)).astype(np.int64)
    t = np.unique(t)[::-1]  # strictly decreasing timesteps
    return train.gammas()[t - 1]


def linear_beta_levels(steps: int, beta_start: float, beta_end: float) -> np.ndarray:
    """The paper's searched inference schedule: N linear betas, returned in sampling order."""
    gammas = gammas_from_betas(make_betas("linear", steps, beta_start, beta_end))
    return gammas[::-1].copy()


def sigma_of_gamma(gamma: float) -> float:
    """The noise-to-signal ratio sigma = sqrt((1 - gamma) / gamma) of Eq. 4 (y_t / sqrt(gamma) = y0 + sigma eps)."""
    return float(np.sqrt((1.0 - gamma) / gamma))


def gamma_of_sigma(sigma: float) -> float:
    """The gamma whose sigma = sqrt((1 - gamma) / gamma) is ``sigma``."""
    return float(1.0 / (1.0 + sigma * sigma))


def strength_of_gamma(train: ScheduleSpec, gamma: float) -> float:
    """The strength t / T of the training step whose gamma is nearest ``gamma``."""
    t = int(np.argmin(np.abs(train.gammas() - gamma))) + 1
    return t / train.steps


def sigma_geometric_levels(steps: int, sigma_start: float, sigma_end: float) -> np.ndarray:
    """A short chain whose sigmas fall geometrically from sigma_start to sigma_end, in sampling order.

    For the few-step chains that refine an estimate: step i starts at sigma_i, and the last step
    goes to gamma = 1 as always. One step is just sigma_start.
    """
    if steps < 1:
        raise ScheduleError(f"need at least 1 step, got {steps}")
    if not 0.0 < sigma_end <= sigma_start:
        raise ScheduleError(f"need 0 < sigma_end <= sigma_start, got {sigma_end} and {sigma_start}")
    sigmas = np.geomspace(sigma_start, sigma_end, steps) if steps > 1 else np.array([sigma_start])
    return 1.0 / (1.0 + sigmas.astype(np.float64) ** 2)


def levels_from_preset_schedule(
    schedule: dict[str, Any], train: ScheduleSpec, steps: int, strength: float
) -> np.ndarray:
    """Rebuild a preset's chain from its schedule description (see ``InferencePreset``)."""
    kind = schedule.get("type", "train_subsequence")
    if kind == "train_subsequence":
        return inference_levels(train, steps, strength, schedule.get("spacing", "uniform"))
    if kind == "linear":
        levels = linear_beta_levels(steps, float(schedule["beta_start"]), float(schedule["beta_end"]))
        if strength < 1.0:  # start where the training chain would be at that strength
            gamma_start = train.gammas()[timestep_for_strength(train.steps, strength) - 1]
            kept = levels[levels >= gamma_start]
            levels = kept if kept.size else levels[-1:]
        return levels
    if kind == "sigma_geometric":  # the start follows the strength; sigma_end keeps its ratio to the start
        sigma_start, sigma_end = float(schedule["sigma_start"]), float(schedule["sigma_end"])
        start = sigma_of_gamma(float(train.gammas()[timestep_for_strength(train.steps, strength) - 1]))
        if abs(strength_of_gamma(train, gamma_of_sigma(sigma_start)) - strength) < 0.5 / train.steps:
            start = sigma_start  # the preset's own strength: keep its exact sigma
        return sigma_geometric_levels(steps, start, start * (sigma_end / sigma_start))  # ratio <= 1: end <= start
    raise ScheduleError(f"unknown inference schedule type {kind!r}")


def validate_levels(levels: np.ndarray) -> np.ndarray:
    """Check a chain: finite, in (0, 1), strictly increasing. Returns it as float64."""
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or levels.size == 0:
        raise ScheduleError("a noise-level chain must be a non-empty 1-D list")
    if not np.all(np.isfinite(levels)) or np.any(levels <= 0.0) or np.any(levels >= 1.0):
        raise ScheduleError("noise levels (gamma) must lie strictly between 0 and 1")
    if np.any(np.diff(levels) <= 0.0):
        raise ScheduleError("noise levels must increase from the noisiest to the cleanest step")
    return levels
