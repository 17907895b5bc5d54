"""Entry point of the frozen app: the window, or the CLI when given `upscale` / `models`."""

import sys

from sr3_desktop.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
