"""`python -m exporter train|export|verify|inspect|evaluate|search-schedule|plot|convert`: how models come to exist."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from sr3_desktop.core.errors import SR3Error

# (command, module, one-line help). Each module offers add_arguments(parser) and run(args) -> int.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("train", "exporter.training.train_command", "train an SR3 or regression U-Net from a folder of photos"),
    ("export", "exporter.export.export_onnx", "write a checkpoint's EMA weights to ONNX with the model card"),
    ("verify", "exporter.export.verify", "check an exported .onnx: checker, card vs graph, onnxruntime vs PyTorch"),
    ("inspect", "exporter.export.verify", "print the model card of an .onnx file"),
    ("evaluate", "exporter.evaluation.evaluate", "metrics (PSNR-Y, SSIM-Y, consistency, ...) on LR/HR pairs"),
    ("search-schedule", "exporter.evaluation.search_schedule", "search inference noise schedules; write card presets"),
    ("convert", "exporter.convert.command", "convert a checkpoint of the public SR3 implementation to ONNX"),
    ("plot", "exporter.training.learning_curve", "the learning curve of a run (loss, validation metrics) as a PNG"),
)

EPILOG = """\
example (a folder of photos to an imported model):
  python -m exporter train --preset cpu-small --kind sr3 --data photos/ --out runs/sr3
  python -m exporter train --preset cpu-small --data photos/ --out runs/sr3 --resume --steps 40000
  python -m exporter export runs/sr3 -o sr3.onnx --name "My SR3 4x"
  python -m exporter verify sr3.onnx --ckpt runs/sr3
  python -m sr3_desktop upscale photo.jpg --model sr3.onnx -o photo_4x.png
"""


def build_parser(
    argv: list[str] | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    """The parser; only the module of the command named in ``argv`` is imported (torch loads lazily)."""
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="python -m exporter", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    for name, module_name, summary in COMMANDS:
        command = sub.add_parser(name, help=summary, description=summary)
        if name != chosen:
            continue
        module = importlib.import_module(module_name)
        prefix = "inspect_" if name == "inspect" else ""
        getattr(module, prefix + "add_arguments")(command)
        runners[name] = getattr(module, prefix + "run")
    return parser, runners


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, runners = build_parser(argv)
    args = parser.parse_args(argv)
    args.command_line = ["python", "-m", "exporter", *argv]  # recorded in checkpoints and model cards
    try:
        return runners[args.command](args)
    except SR3Error as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
