"""``python -m sr3_desktop``: no arguments (or only image files) opens the window;
``upscale ...`` and ``models`` run the headless command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sr3_desktop.cli import COMMANDS


def wants_cli(arguments: Sequence[str]) -> bool:
    """The CLI handles its commands and option-only calls such as --help and --version."""
    return bool(arguments) and (arguments[0] in COMMANDS or arguments[0].startswith("-"))


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if wants_cli(arguments):
        from sr3_desktop.cli import main as cli_main

        return cli_main(arguments)
    try:
        from sr3_desktop.qt.app import main as app_main  # Qt only when the window is wanted
    except ImportError as error:
        sys.stderr.write(f"error: the window cannot open ({error}); the command line still works: "
                         "python -m sr3_desktop upscale IMG --out-dir DIR\n")
        return 1
    return int(app_main(arguments) or 0)


if __name__ == "__main__":
    sys.exit(main())
