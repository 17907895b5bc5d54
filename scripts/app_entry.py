"""Entry point of the frozen app: the window, the CLI when given `upscale` / `models`, or a model's test run."""

import sys

from sr3_desktop.core.model_files.probe import FROZEN_PROBE_FLAG, child_main

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == FROZEN_PROBE_FLAG:  # models.validate_model's time-limited child
        sys.exit(child_main(sys.argv[2:]))
    from sr3_desktop.__main__ import main

    sys.exit(main())
