"""Print the markdown tables of `exporter evaluate` JSON reports (for docs/models.md and the README).

python scripts/eval_table.py docs/evaluation/sr3-photo-4x.json [more.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = (("psnr_y", "PSNR-Y (dB)", "{:.2f}"), ("psnr_y_gain_over_bicubic", "vs bicubic", "{:+.2f}"),
           ("gmsd", "GMSD ↓", "{:.4f}"), ("grain", "grain (1 = photo)", "{:.2f}"),
           ("spectral_gap", "spectral gap ↓", "{:.3f}"), ("detail_fidelity", "detail fidelity", "{:.3f}"),
           ("consistency", "consistency ×1e-5", "{:.2f}"), ("colour_shift", "colour shift", "{:.2f}"),
           ("grid", "4 px grid ↓", "{:.2f}"),
           ("seconds_per_crop", "s / crop", "{:.2f}"))


def table(rows: dict[str, dict[str, Any]], label: str = "") -> str:
    lines = ["| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for method, row in rows.items():
        cells = [fmt.format(row[key]) if key in row else "—" for key, _, fmt in COLUMNS]
        lines.append(f"| {method}{label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(paths: list[str]) -> None:
    for path in paths:
        report = json.loads(Path(path).read_text())
        print(f"{report['model']} on {report['crops']} {report.get('role', '')} crops of {report['crop']} px from "
              f"{report.get('photos', '?')} photos ({report['data']}), seeds {report.get('seeds', '?')}, "
              f"{report['date']}\n")
        print(table(report["results"]) + "\n")
        for key in sorted(k for k in report if k.startswith("results_")):
            print(f"LR saved as JPEG ({key.removeprefix('results_')}):\n")
            print(table(report[key]) + "\n")
        if "targets" in report:
            met = ", ".join(f"{name} {'met' if t['met'] else 'MISSED'} ({t['value']})"
                            for name, t in report["targets"].items())
            print(f"default preset {report.get('default')}: {met}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
