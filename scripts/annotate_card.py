"""Add a description and data credits to an exported model's card (rewrites the file atomically).

python scripts/annotate_card.py MODEL.onnx --name "SR3 Photo 4x" --description "..." --credits FILE
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import onnx

from sr3_desktop.core.model_card import embed_card, read_card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--name", help="model name shown in the app")
    parser.add_argument("--description", help="one paragraph for the details pane")
    parser.add_argument("--credits", type=Path, help="text file: where the training photos come from, with licences")
    parser.add_argument("--data", help="short description of the training data")
    parser.add_argument("--evaluation", type=Path, help="an `exporter evaluate` JSON report for the card's metrics")
    args = parser.parse_args()
    card = read_card(args.model)
    training = dict(card.training)
    if args.credits:
        training["credits"] = args.credits.read_text(encoding="utf-8").strip()
    if args.data:
        training["data"] = args.data
    metrics = dict(card.metrics)
    if args.evaluation:
        report = json.loads(args.evaluation.read_text(encoding="utf-8"))
        metrics["evaluation"] = {key: report[key] for key in ("data", "crop", "crops", "seed", "date", "results")}
    card = card.with_updates(
        name=args.name or card.name, description=args.description or card.description, training=training,
        metrics=metrics,
    )
    proto = onnx.load(str(args.model))
    embed_card(proto, card)
    tmp = args.model.with_name(f".{args.model.name}.tmp-{os.getpid()}")
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, args.model)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"{args.model}: card updated ({card.name})")


if __name__ == "__main__":
    main()
