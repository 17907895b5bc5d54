"""What the schedule search chooses presets by: the product's targets (issue 19), as misses.

Each ``misses`` says how far a candidate misses each target, as a fraction of its bound (0 = met); the search
keeps the most faithful candidate that misses nothing, else the one whose misses add up to the least.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Targets:
    """What the default preset must reach, relative to regression on the same crops (issue 19)."""

    grain: tuple[float, float] = (0.85, 1.2)
    grain_worst: float = 1.5
    spectral_gap_ratio: float = 0.45
    gmsd_ratio: float = 1.05
    psnr_drop: float = 0.5
    consistency: float = 1.0
    colour_shift: float = 1.0
    grid_ratio: float = 1.1
    """The fine band's phase spread over the LR pixels' cells (metrics.cell_grid), x regression's."""

    def misses(self, s: dict[str, float], regression: dict[str, float]) -> dict[str, float]:
        """How far each target is missed, as a fraction of its bound (0 = met)."""
        low, high = self.grain
        gap = self.spectral_gap_ratio * regression["spectral_gap"]
        gmsd = self.gmsd_ratio * regression["gmsd"]
        grid = self.grid_ratio * regression.get("grid", 1.0)
        return {
            "grain": max(low - s["grain"], s["grain"] - high, 0.0) / high,
            "grain_worst": max(s.get("grain_worst", s["grain"]) - self.grain_worst, 0.0) / self.grain_worst,
            "spectral_gap": max(s["spectral_gap"] - gap, 0.0) / gap,
            "gmsd": max(s["gmsd"] - gmsd, 0.0) / gmsd,
            "psnr_y": max(regression["psnr_y"] - self.psnr_drop - s["psnr_y"], 0.0) / self.psnr_drop,
            "consistency": max(s["consistency"] - self.consistency, 0.0) / self.consistency,
            "colour_shift": max(s["colour_shift"] - self.colour_shift, 0.0) / self.colour_shift,
            "grid": max(s.get("grid", 1.0) - grid, 0.0) / grid,
        }


def quality_misses(s: dict[str, float], bicubic: dict[str, float]) -> dict[str, float]:
    """The full chain's targets: PSNR-Y >= bicubic, grain <= 1.5, colour shift <= 1.5."""
    return {"psnr_y": max(bicubic["psnr_y"] - s["psnr_y"], 0.0), "grain": max(s["grain"] - 1.5, 0.0) / 1.5,
            "colour_shift": max(s["colour_shift"] - 1.5, 0.0) / 1.5}


@dataclass(frozen=True)
class CompressedTargets:
    """What the compressed preset must reach on inputs saved as JPEG, against bicubic and regression of the same
    JPEG (issue 19): PSNR-Y >= bicubic + 1 dB, grain <= 1.25 on average and (as the default) <= 1.5 on the worst
    crop, so that block edges and ringing are not grown into a mottle; and a spectral gap of at most 1.3 x
    Real-ESRGAN's, which is about 0.34 x regression's on the report crops (0.354 against 1.360, eighth sitting)."""

    psnr_gain: float = 1.0
    grain: float = 1.25
    grain_worst: float = 1.5
    spectral_gap_ratio: float = 0.34

    def misses(self, s: dict[str, float], bicubic: dict[str, float], regression: dict[str, float],
               ) -> dict[str, float]:
        gap = self.spectral_gap_ratio * regression["spectral_gap"]
        return {
            "psnr_y": max(bicubic["psnr_y"] + self.psnr_gain - s["psnr_y"], 0.0) / self.psnr_gain,
            "grain": max(s["grain"] - self.grain, 0.0) / self.grain,
            "grain_worst": max(s.get("grain_worst", s["grain"]) - self.grain_worst, 0.0) / self.grain_worst,
            "spectral_gap": max(s["spectral_gap"] - gap, 0.0) / gap,
        }
