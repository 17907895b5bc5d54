"""Imports run one way: the core (and the CLI) load neither Qt nor torch, checked in a fresh interpreter."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import sr3_desktop.core

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("PySide6", "torch", "shiboken6")


def loaded_after(imports: list[str]) -> dict[str, list[str]]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {imports!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps({{f: sorted(m for m in sys.modules if m == f or m.startswith(f + '.')) "
        f"for f in {FORBIDDEN!r}}}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_core_and_all_its_modules_load_no_qt_and_no_torch() -> None:
    modules = [m.name for m in pkgutil.walk_packages(sr3_desktop.core.__path__, "sr3_desktop.core.")]
    expected = {"sr3_desktop.core.upscale.pipeline", "sr3_desktop.core.model_files.denoiser",
                "sr3_desktop.core.diffusion.sampler"}
    assert expected <= set(modules)
    loaded = loaded_after(["sr3_desktop.core", *modules])
    assert loaded == {name: [] for name in FORBIDDEN}


def test_the_command_line_loads_no_qt_and_no_torch() -> None:
    loaded = loaded_after(["sr3_desktop.cli", "sr3_desktop.__main__"])
    assert loaded == {name: [] for name in FORBIDDEN}


def test_the_check_itself_can_fail() -> None:
    loaded = loaded_after(["PySide6.QtCore"])
    assert "PySide6" in loaded["PySide6"]
