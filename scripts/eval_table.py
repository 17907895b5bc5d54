"""Print the markdown table of an `exporter evaluate` JSON report (for docs/models.md and the README)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = (("psnr_y", "PSNR-Y (dB)", "{:.2f}"), ("psnr_y_gain_over_bicubic", "vs bicubic", "{:+.2f}"),
           ("ssim_y", "SSIM-Y", "{:.4f}"), ("consistency", "consistency ×1e-5", "{:.2f}"),
           ("sharpness", "sharpness", "{:.3f}"), ("colour_shift", "colour shift", "{:.3f}"),
           ("seconds_per_crop", "s / crop", "{:.1f}"))


def table(report: dict) -> str:
    lines = ["| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for method, row in report["results"].items():
        cells = [fmt.format(row[key]) if key in row else "—" for key, _, fmt in COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        report = json.loads(Path(path).read_text())
        print(f"{report['model']} on {report['crops']} crops of {report['crop']} px ({report['data']}), "
              f"{report['date']}\n")
        print(table(report) + "\n")
