"""Soak: 200 small images through the real CLI in a fresh interpreter, with constant memory.

The child runs ``cli.main`` on a folder of inputs. Its ``out`` stream receives one line per
written file, so it samples the process's resident memory (RSS) right after image 20 and
image 200 without any hook in the CLI itself. Bad files mixed into the batch go through the
error path on the way.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx_fixtures import local_sr3, save
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
IMAGES = 200
EARLY, LATE = 20, 200
SIDE, SCALE = 32, 4
RESULT_BYTES = (SIDE * SCALE) ** 2 * 3 * 4
"""One result image (128 x 128 RGB float32, 192 KiB): the least that a run leaking its RefineResult keeps."""
GROWTH_LIMIT = (LATE - EARLY) * RESULT_BYTES // 4
"""RSS may grow by at most a quarter of one leaked result per image from image 20 to 200 (8.4 MiB; a run
that kept every result would grow by 34 MiB). Measured without a leak: under 1 MiB (issue 14)."""

CHILD = r"""
import io, json, os, sys
from pathlib import Path

from sr3_desktop import cli
from sr3_desktop.core.model_files import folders

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class RssAtImage(io.TextIOBase):
    # cli.run_upscale writes one line per written file: sample RSS at the chosen counts, keep nothing else.
    def __init__(self, at):
        self.at, self.count, self.rss = set(at), 0, {}

    def write(self, text):
        for _ in range(text.count("\n")):
            self.count += 1
            if self.count in self.at:
                self.rss[self.count] = rss_bytes()
        return len(text)


empty, at, argv = sys.argv[1], [int(n) for n in sys.argv[2].split(",")], sys.argv[3:]
folders.BUNDLED_DIR = Path(empty)  # only the model named on the command line
out = RssAtImage(at)
code = cli.main(argv, out, sys.stderr)
print(json.dumps({"code": code, "written": out.count, "rss": out.rss}))
"""


def write_inputs(folder: Path, count: int) -> None:
    """``count`` random SIDE x SIDE RGB PNGs, img_000.png ... (a different image each)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = (rng.uniform(0, 1, (SIDE, SIDE, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")


def write_bad_files(folder: Path) -> list[Path]:
    """A bad file after every tenth good one: 0 bytes, text, a truncated PNG, a PDF."""
    good_png = (folder / "img_000.png").read_bytes()
    kinds = [b"", b"just some text\n", good_png[: len(good_png) // 2], b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"]
    bad = []
    for n, i in enumerate(range(5, IMAGES, 10)):
        path = folder / f"img_{i:03d}_bad.png"
        path.write_bytes(kinds[n % len(kinds)])
        bad.append(path)
    return bad


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def run_child(tmp_path: Path, argv: list[str]) -> tuple[dict, str]:
    empty = tmp_path / "no-bundled-models"
    empty.mkdir()
    env = {**os.environ, "SR3_DESKTOP_DATA_DIR": str(tmp_path / "data"), "SR3_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(empty), f"{EARLY},{LATE}", *argv],
        capture_output=True, text=True, cwd=REPO, timeout=240, env=env,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report, result.stderr


def assert_flat_memory(report: dict) -> None:
    early, late = report["rss"][str(EARLY)], report["rss"][str(LATE)]
    assert late - early <= GROWTH_LIMIT, (
        f"RSS {early / 2**20:.1f} MiB after image {EARLY}, {late / 2**20:.1f} MiB after image {LATE}: "
        f"{(late - early) / (LATE - EARLY) / 1024:.0f} KiB per image, one result is {RESULT_BYTES // 1024} KiB")


def assert_all_written(out: Path) -> None:
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"img_{i:03d}.png" for i in range(IMAGES)]  # no temp files, nothing for bad inputs
    with Image.open(out / "img_199.png") as last:
        assert last.size == (SIDE * SCALE, SIDE * SCALE)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc (Linux)")
def test_200_images_bicubic_with_bad_files_mixed_in_keeps_memory_flat(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_inputs(inputs, IMAGES)
    bad = write_bad_files(inputs)
    before = digest(inputs)
    report, stderr = run_child(tmp_path, ["upscale", str(inputs), "--out-dir", str(out), "--method", "bicubic",
                                          "--quiet"])
    assert report["code"] == 1  # some inputs failed ...
    assert report["written"] == IMAGES  # ... and every good one was written
    assert_all_written(out)
    assert f"done: {IMAGES} written, {len(bad)} failed" in stderr
    assert all(f"failed: {path}:" in stderr for path in bad)
    assert "Traceback" not in stderr
    assert digest(inputs) == before
    assert_flat_memory(report)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc (Linux)")
def test_200_images_sr3_keeps_memory_flat(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_inputs(inputs, IMAGES)
    model = save(local_sr3(name="soak-sr3"), tmp_path / "models" / "soak.onnx")
    report, stderr = run_child(tmp_path, ["upscale", str(inputs), "--out-dir", str(out), "--model", str(model),
                                          "--preset", "fast", "--seed", "3", "--quiet"])
    assert report["code"] == 0, stderr[-3000:]
    assert report["written"] == IMAGES
    assert_all_written(out)
    assert stderr == ""
    assert_flat_memory(report)
