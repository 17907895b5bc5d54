"""The wheel carries every licence notice the about dialog shows (setup.py's build_py, fast: no wheel is
zipped); the PyInstaller half is checked by the slow frozen-app test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sr3_desktop.qt.about import APP_LICENCE, NOTICES

ROOT = Path(__file__).resolve().parents[2]


def test_the_built_package_ships_every_notice_and_the_projects_licence(tmp_path: Path) -> None:
    """build_py is the step that fills a wheel (and a regular install). Mutations caught: the licences
    folder missing from setup.py's package data (or its ``*.txt`` pattern); the LICENSE copy left out of
    build_py, or written under another name than the dialog reads; a notice listed without its file."""
    build = tmp_path / "lib"
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path), "build_py",
                    "--build-lib", str(build)], cwd=ROOT, check=True, capture_output=True)
    shipped = build / "sr3_desktop" / "resources" / "licenses"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(n.file for n in NOTICES)
    assert (shipped / APP_LICENCE).read_bytes() == (ROOT / "LICENSE").read_bytes()
    for notice in NOTICES:
        if notice.file != APP_LICENCE:
            assert (shipped / notice.file).read_bytes() == (ROOT / "resources" / "licenses" / notice.file).read_bytes()
