"""Add a description and data credits to an exported model's card (rewrites the file atomically).

python scripts/annotate_card.py MODEL.onnx --name "SR3 Photo 4x" --description "..." --credits FILE
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from sr3_desktop.core.imageio.atomic import atomic_file
from sr3_desktop.core.model_files.card import embed_card, read_card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--name", help="model name shown in the app")
    parser.add_argument("--description", help="one paragraph for the details pane")
    parser.add_argument("--credits", type=Path, help="text file: where the training photos come from, with licences")
    parser.add_argument("--data", help="short description of the training data")
    parser.add_argument("--evaluation", type=Path, nargs="+",
                        help="`exporter evaluate` JSON reports for the card's metrics (later reports add their "
                             "rows, e.g. a preset evaluated with other seeds)")
    args = parser.parse_args()
    card = read_card(args.model)
    training = dict(card.training)
    if args.credits:
        training["credits"] = args.credits.read_text(encoding="utf-8").strip()
    if args.data:
        training["data"] = args.data
    metrics = dict(card.metrics)
    presets = dict(card.inference_presets)
    if args.evaluation:
        report = merge_reports([json.loads(path.read_text(encoding="utf-8")) for path in args.evaluation])
        metrics["evaluation"] = {key: value for key, value in report.items() if key not in ("model", "kind", "scale")}
        presets = {name: replace(preset, scores=preset_scores(report, name) or preset.scores)
                   for name, preset in presets.items()}
    card = card.with_updates(
        name=args.name or card.name, description=args.description or card.description, training=training,
        metrics=metrics, inference_presets=presets,
    )
    proto = onnx.load(str(args.model))
    embed_card(proto, card)
    with atomic_file(args.model) as handle:
        onnx.save_model(proto, handle)
    print(f"{args.model}: card updated ({card.name})")


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The first report, with every later report's result rows added; seeds are kept per row where they differ."""
    merged = json.loads(json.dumps(reports[0]))
    for report in reports[1:]:
        for key, rows in report.items():
            if key == "results" or key.startswith("results_"):
                merged.setdefault(key, {}).update(rows)
                if report.get("seeds") != merged.get("seeds"):
                    seeds = merged.setdefault("seeds_by_row", {})
                    seeds.update({row: report.get("seeds") for row in rows if row.startswith("sr3-")})
    return merged


def preset_scores(report: dict[str, Any], name: str) -> dict[str, float]:
    """A preset's held-out scores from an evaluation report: the clean row, and each JPEG row prefixed."""
    scores: dict[str, float] = {}
    for key, rows in report.items():
        if key == "results" or key.startswith("results_"):
            prefix = "" if key == "results" else key.removeprefix("results_") + "_"
            row = rows.get(f"sr3-{name}", {})
            scores.update({prefix + k: round(float(v), 5) for k, v in row.items() if isinstance(v, (int, float))})
    return scores


if __name__ == "__main__":
    main()
