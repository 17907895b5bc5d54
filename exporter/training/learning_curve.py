"""`python -m exporter plot RUN`: the learning curve of a run as one PNG (no matplotlib).

Panels, each against the training step: the training loss (its log.jsonl windows and a running mean),
then every validation metric the run logged (PSNR of the model and of its condition, val loss, grain,
spectral gap, GMSD, the training objective on the validation outputs), and the critic's loss of a run
with the adversarial term. A texture collapse or a loss
step shows at a glance, and best.pt's step is marked.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from sr3_desktop.core.imageio.atomic import atomic_file

PANEL_W, PANEL_H, MARGIN = 520, 260, 48
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PSNR (dB)", ("psnr_model", "psnr_bicubic", "psnr_condition")),
    ("validation loss / objective", ("val_loss", "objective")),
    ("grain (1 = the photo's)", ("grain",)),
    ("spectral gap", ("spectral_gap",)),
    ("GMSD", ("gmsd",)),
    ("4 px grid (1 = the photo's)", ("grid",)),
    ("critic loss (1.386: cannot tell)", ("critic_loss",)),
)


def read_log(run_dir: Path) -> tuple[list[tuple[int, float]], dict[str, list[tuple[int, float]]]]:
    """(training loss rows, validation series by metric) from RUN/log.jsonl."""
    path = run_dir / "log.jsonl" if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise SystemExit(f"no log.jsonl in {run_dir}")
    losses: list[tuple[int, float]] = []
    series: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if "loss" in row:
            losses.append((int(row["step"]), float(row["loss"])))
        if "critic_loss" in row:  # a run with the adversarial term: its critic's training windows
            series.setdefault("critic_loss", []).append((int(row["step"]), float(row["critic_loss"])))
        for name, value in (row.get("validation") or {}).items():
            series.setdefault(name, []).append((int(row["step"]), float(value)))
    return losses, series


def running_mean(points: list[tuple[int, float]], window: int = 20) -> list[tuple[int, float]]:
    out, total = [], 0.0
    for i, (step, value) in enumerate(points):
        total += value
        if i >= window:
            total -= points[i - window][1]
        out.append((step, total / min(i + 1, window)))
    return out


def draw_panel(title: str, lines: dict[str, list[tuple[int, float]]], steps: tuple[int, int],
               best_step: int | None, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> Image.Image:
    panel = Image.new("RGB", (PANEL_W, PANEL_H), "white")
    draw = ImageDraw.Draw(panel)
    values = [v for points in lines.values() for _, v in points if math.isfinite(v)]
    left, top, right, bottom = MARGIN + 10, 24, PANEL_W - 12, PANEL_H - 30
    draw.text((left, 4), title, fill="black", font=font)
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    if not values:
        draw.text((left + 10, top + 10), "not logged", fill=(120, 120, 120), font=font)
        return panel
    low, high = min(values), max(values)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    first, last = steps[0], max(steps[1], steps[0] + 1)

    def xy(step: int, value: float) -> tuple[float, float]:
        return (left + (right - left) * (step - first) / (last - first),
                bottom - (bottom - top) * (value - low) / (high - low))

    for k in range(3):
        value = low + (high - low) * k / 2
        draw.text((4, xy(first, value)[1] - 6), f"{value:.4g}", fill="black", font=font)
    draw.text((left, bottom + 6), str(first), fill="black", font=font)
    draw.text((right - 60, bottom + 6), f"step {last}", fill="black", font=font)
    if best_step is not None:
        x = xy(best_step, low)[0]
        draw.line((x, top, x, bottom), fill=(200, 200, 200), width=1)
    for index, (name, points) in enumerate(lines.items()):
        colour = COLOURS[index % len(COLOURS)]
        coords = [xy(s, v) for s, v in points if math.isfinite(v)]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=2)
        for x, y in coords if len(coords) < 40 else []:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        draw.text((right - 150, top + 4 + 14 * index), name, fill=colour, font=font)
    return panel


def plot(run_dir: Path, out: Path) -> list[str]:
    """Write the learning-curve PNG; returns the panel titles drawn."""
    losses, series = read_log(run_dir)
    if not losses and not series:
        raise SystemExit(f"{run_dir}: log.jsonl has no training or validation rows yet")
    steps_seen = [s for s, _ in losses] + [s for points in series.values() for s, _ in points]
    steps = (min(steps_seen), max(steps_seen))
    best_step = _best_step(run_dir)
    font = ImageFont.load_default()
    panels = [("training loss", {"loss": losses, "running mean": running_mean(losses)})]
    for title, names in PANELS:
        lines = {name: series[name] for name in names if name in series}
        if lines:
            panels.append((title, lines))
    columns = 2
    rows = math.ceil(len(panels) / columns)
    sheet = Image.new("RGB", (columns * PANEL_W, rows * PANEL_H), "white")
    for index, (title, lines) in enumerate(panels):
        sheet.paste(draw_panel(title, lines, steps, best_step, font),
                    ((index % columns) * PANEL_W, (index // columns) * PANEL_H))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as handle:
        sheet.save(handle, format="PNG")
    return [title for title, _ in panels]


def _best_step(run_dir: Path) -> int | None:
    best = run_dir / "best.pt" if run_dir.is_dir() else None
    if best is None or not best.is_file():
        return None
    from exporter.training.checkpoint import load_checkpoint  # torch, only when there is a best.pt

    return int(load_checkpoint(best)["step"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="a run directory (its log.jsonl), or a log.jsonl file")
    parser.add_argument("-o", "--output", type=Path, help="the PNG to write (default: RUN/learning-curve.png)")


def run(args: argparse.Namespace) -> int:
    out = args.output or (args.run if args.run.is_dir() else args.run.parent) / "learning-curve.png"
    titles = plot(args.run, out)
    print(f"wrote {out}: {', '.join(titles)}")
    return 0
