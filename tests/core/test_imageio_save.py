"""Saving: never over an input, never over an existing output unless asked, atomic writes, real faults
(read-only, full disk, kill -9)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr3_desktop.core import imageio
from sr3_desktop.core.errors import ImageSaveError
from sr3_desktop.core.imageio import TEMP_PREFIX, OutputExistsError, cleanup_stale_temp_files, load_image, save_image

RNG = np.random.default_rng(3)
REPO = Path(__file__).resolve().parents[2]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temp_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX))


def noise(height: int = 16, width: int = 16) -> np.ndarray:
    return RNG.random((height, width, 3)).astype(np.float32)


@pytest.fixture
def input_png(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(imageio.to_uint8(noise())).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# Never over an input


def test_output_equal_to_input_through_a_relative_path_is_refused(tmp_path: Path, input_png: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    digest = sha256(input_png)
    for target in ("../in.png", "../sub/../in.png", "./../in.png"):
        for overwrite in (False, True):
            with pytest.raises(ImageSaveError, match=r"input image in\.png"):
                save_image(target, noise(), protected=[input_png], overwrite=overwrite)
    with pytest.raises(ImageSaveError, match="input image"):  # protected given relatively, target absolute
        save_image(input_png, noise(), protected=[Path("..") / "in.png"], overwrite=True)
    assert sha256(input_png) == digest and temp_files(tmp_path) == []


def test_output_through_a_symlink_to_the_input_is_refused(tmp_path: Path, input_png: Path) -> None:
    link = tmp_path / "link.png"
    link.symlink_to(input_png)
    digest = sha256(input_png)
    with pytest.raises(ImageSaveError, match="input image"):
        save_image(link, noise(), protected=[input_png], overwrite=True)
    with pytest.raises(ImageSaveError, match="input image"):
        save_image(input_png, noise(), protected=[link], overwrite=True)
    assert sha256(input_png) == digest and link.is_symlink()


def test_output_that_is_a_hardlink_of_the_input_is_refused(tmp_path: Path, input_png: Path) -> None:
    hard = tmp_path / "hard.png"
    os.link(input_png, hard)
    digest = sha256(input_png)
    with pytest.raises(ImageSaveError, match="input image"):
        save_image(hard, noise(), protected=[input_png], overwrite=True)
    assert sha256(input_png) == digest and sha256(hard) == digest


def test_the_source_image_is_protected_without_being_listed(input_png: Path) -> None:
    loaded = load_image(input_png)
    digest = sha256(input_png)
    with pytest.raises(ImageSaveError, match="input image"):
        save_image(input_png, loaded.rgb, source=loaded, overwrite=True)
    assert sha256(input_png) == digest


# ---------------------------------------------------------------------------------------------
# Existing outputs


def test_an_existing_output_is_kept_and_named_in_the_error(tmp_path: Path) -> None:
    existing = tmp_path / "photo.png"
    existing.write_bytes(b"precious earlier result")
    for _ in range(2):
        with pytest.raises(OutputExistsError, match=r"Cannot save photo\.png: a file with that name already exists"):
            save_image(existing, noise())
    assert existing.read_bytes() == b"precious earlier result"
    assert sorted(os.listdir(tmp_path)) == ["photo.png"]  # no other name, no temp file


def test_existing_output_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    existing = tmp_path / "photo.png"
    existing.write_bytes(b"old")
    pixels = noise()
    assert save_image(existing, pixels, overwrite=True) == existing
    assert np.array_equal(load_image(existing).rgb, imageio.from_uint8(imageio.to_uint8(pixels)))
    assert sorted(os.listdir(tmp_path)) == ["photo.png"]


def test_overwrite_never_replaces_a_folder(tmp_path: Path) -> None:
    (tmp_path / "out.png").mkdir()
    with pytest.raises(ImageSaveError, match="folder"):
        save_image(tmp_path / "out.png", noise(), overwrite=True)
    assert (tmp_path / "out.png").is_dir() and temp_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Formats and arguments


def test_format_from_extension_or_argument(tmp_path: Path) -> None:
    for name, fmt, expected in (("a.jpeg", None, "JPEG"), ("b.TIF", None, "TIFF"), ("c.webp", None, "WEBP"),
                                ("d.out", "png", "PNG"), ("e.png", "jpg", "JPEG")):
        with Image.open(save_image(tmp_path / name, noise(), fmt=fmt)) as written:
            assert written.format == expected


@pytest.mark.parametrize("name", ["out.bmp", "out.gif", "out"])
def test_unsupported_output_format_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ImageSaveError, match="png, jpg, webp, tiff"):
        save_image(tmp_path / name, noise())
    assert os.listdir(tmp_path) == []


def test_bad_arrays_are_refused_and_nan_is_not_fatal(tmp_path: Path) -> None:
    with pytest.raises(ImageSaveError, match="expected an"):
        save_image(tmp_path / "a.png", np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ImageSaveError, match="alpha"):
        save_image(tmp_path / "a.png", noise(), alpha=np.ones((3, 3), dtype=np.float32))
    pixels = noise()
    pixels[0, 0] = np.nan
    pixels[0, 1] = 7.0
    back = load_image(save_image(tmp_path / "nan.png", pixels)).rgb
    assert np.array_equal(back[0, 0], [0, 0, 0]) and np.array_equal(back[0, 1], [1, 1, 1])


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tiff"])
def test_exif_is_carried(tmp_path: Path, fmt: str) -> None:
    source = tmp_path / "camera.jpg"
    image = Image.fromarray(imageio.to_uint8(noise()))
    exif = image.getexif()
    exif[0x010F] = "SR3 test camera"
    image.save(source, exif=exif)
    loaded = load_image(source)
    with Image.open(save_image(tmp_path / f"out.{fmt}", loaded.rgb, source=loaded)) as written:
        assert written.getexif().get(0x010F) == "SR3 test camera"


# ---------------------------------------------------------------------------------------------
# Faults: missing folder, read-only folder, full disk


def test_missing_folder_or_a_file_in_the_way_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageSaveError, match="does not exist"):
        save_image(tmp_path / "no" / "such" / "out.png", noise())
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ImageSaveError, match="not a folder"):
        save_image(blocker / "out.png", noise())
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` unwritable for real: chmod for users, the immutable flag for root."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = [lambda: folder.chmod(0o755)]
    else:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                              capture_output=True).returncode != 0:
            pytest.skip("root here cannot make a folder read-only (no chattr +i on this filesystem)")
        undo = [lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)]
    try:
        with pytest.raises(PermissionError):  # prove the folder really refuses writes
            (folder / "probe").write_bytes(b"")
        yield
    finally:
        for step in undo:
            step()


def test_read_only_folder_gives_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "old.png").write_bytes(b"old")
    with read_only(folder):
        for overwrite in (False, True):
            with pytest.raises(ImageSaveError, match="read-only or you lack permission"):
                save_image(folder / "old.png", noise(), overwrite=overwrite)
        listing = sorted(os.listdir(folder))
    assert listing == ["old.png"] and (folder / "old.png").read_bytes() == b"old"


@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size: str = "64k") -> Iterator[None]:
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the RLIMIT_FSIZE test covers full disks")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux-only")
def test_full_disk_gives_a_clear_error_and_keeps_the_old_file(tmp_path: Path) -> None:
    folder = tmp_path / "small_disk"
    folder.mkdir()
    with tiny_tmpfs(folder):
        (folder / "out.png").write_bytes(b"earlier result")
        big = noise(256, 256)  # ~200 kB of incompressible PNG on a 64 kB disk
        for overwrite in (False, True):
            with pytest.raises(ImageSaveError, match="disk is full"):
                save_image(folder / "out.png", big, overwrite=overwrite)
        listing = sorted(os.listdir(folder))
        kept = (folder / "out.png").read_bytes()
    assert listing == ["out.png"] and kept == b"earlier result"


FSIZE_CHILD = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    import numpy as np
    from sr3_desktop.core.errors import ImageSaveError
    from sr3_desktop.core.imageio import save_image
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # the write fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))
    pixels = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
    try:
        save_image(Path(sys.argv[1]), pixels, overwrite=True)
    except ImageSaveError as exc:
        print(exc)
        sys.exit(3)
    sys.exit(0)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE semantics are POSIX")
def test_write_limit_reached_mid_file_gives_a_clear_error_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"earlier result")
    child = subprocess.run([sys.executable, "-c", FSIZE_CHILD, str(target)], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == 3, child.stderr
    assert "disk is full" in child.stdout
    assert sorted(os.listdir(tmp_path)) == ["out.png"] and target.read_bytes() == b"earlier result"


# ---------------------------------------------------------------------------------------------
# kill -9 while saving, and stale temp files


SAVER_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from sr3_desktop.core.imageio import save_image
    rng = np.random.default_rng(int(sys.argv[2]))
    images = [rng.random((768, 768, 3)).astype(np.float32) for _ in range(2)]
    np.save(Path(sys.argv[1]).with_suffix(".npy"), np.stack(images))
    print("ready", flush=True)
    index = 0
    while True:
        save_image(Path(sys.argv[1]), images[index % 2], overwrite=True)
        index += 1
""")


def kill_while_a_temp_file_exists(target: Path, seed: int, after_first_save: bool, timeout_s: float = 60.0) -> bool:
    """Run a saver in a loop and SIGKILL it as soon as a temp file appears; True if caught.

    With ``after_first_save`` it waits for the output to exist first, so the kill lands while
    a complete older output sits under the final name.
    """
    process = subprocess.Popen([sys.executable, "-c", SAVER_CHILD, str(target), str(seed)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    caught = False
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            if after_first_save and not target.exists():
                continue
            if temp_files(target.parent):
                caught = True
                break
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    return caught


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("after_first_save", [False, True])
def test_killing_the_process_while_it_saves_leaves_no_partial_file(tmp_path: Path, after_first_save: bool) -> None:
    target = tmp_path / "out.png"
    caught_any = False
    for attempt in range(3):
        target.unlink(missing_ok=True)
        caught_any = kill_while_a_temp_file_exists(target, attempt, after_first_save)
        expected = [imageio.to_uint8(image) for image in np.load(target.with_suffix(".npy"))]
        leftovers = temp_files(tmp_path)
        assert set(os.listdir(tmp_path)) - {"out.npy"} <= {"out.png", *leftovers}
        # Killed during the first save: no output yet (or, if the rename won the race, a complete
        # one). Killed later: the previous complete output is still there, intact.
        assert target.exists() or not after_first_save
        if target.exists():
            written = imageio.to_uint8(load_image(target).rgb)
            assert any(np.array_equal(written, image) for image in expected), "the output is partial"
        assert cleanup_stale_temp_files(tmp_path, older_than_s=0) == len(leftovers)
        assert temp_files(tmp_path) == []
        if caught_any and leftovers:
            break
    assert caught_any, "the saver was never caught with a temp file on disk"


def test_stale_temp_files_are_cleaned_up(tmp_path: Path) -> None:
    old = tmp_path / f"{TEMP_PREFIX}0123abcd.png"
    fresh = tmp_path / f"{TEMP_PREFIX}fresh.png"
    mine = tmp_path / "my photo.png"
    a_folder = tmp_path / f"{TEMP_PREFIX}folder"
    for path in (old, fresh, mine):
        path.write_bytes(b"x")
    a_folder.mkdir()
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert cleanup_stale_temp_files(tmp_path) == 1
    assert not old.exists() and fresh.exists() and mine.exists() and a_folder.is_dir()
    assert cleanup_stale_temp_files(tmp_path, older_than_s=0) == 1
    assert sorted(os.listdir(tmp_path)) == sorted([mine.name, a_folder.name])
    assert cleanup_stale_temp_files(tmp_path / "missing") == 0


def test_a_normal_save_leaves_only_the_output(tmp_path: Path) -> None:
    for fmt in imageio.SAVE_FORMATS:
        save_image(tmp_path / f"out.{fmt}", noise())
    assert sorted(os.listdir(tmp_path)) == sorted(f"out.{fmt}" for fmt in imageio.SAVE_FORMATS)


def zlib_levels(path: Path) -> set[int]:
    """The FLEVEL field of each IDAT zlib stream's header (0: level 0-1, 1: 2-5, 2: 6, 3: 7-9)."""
    data, pos, levels, first = path.read_bytes(), 8, set(), True
    while pos < len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind == b"IDAT" and first:  # a stream's header is in its first IDAT chunk
            levels.add(data[pos + 9] >> 6)
            first = False
        pos += 12 + length
    return levels


def test_pngs_are_written_at_the_fast_zlib_level_in_memory_and_streamed(tmp_path: Path) -> None:
    """Level 3 (FLEVEL 1) on the whole-image Pillow path and the band-by-band writer (an OutputCanvas on
    disk); mutation caught: either path back at zlib's default 6 (FLEVEL 2)."""
    from sr3_desktop.core.upscale.output_canvas import OutputCanvas

    image = noise(64, 48)
    whole = save_image(tmp_path / "whole.png", image)
    canvas = OutputCanvas(image.shape, dtype=np.float32, on_disk=True)
    canvas.write(0, image)
    streamed = save_image(tmp_path / "streamed.png", canvas)
    assert zlib_levels(whole) == {1} and zlib_levels(streamed) == {1}
    for path in (whole, streamed):
        assert np.array_equal(np.asarray(Image.open(path)), np.round(image * 255).astype(np.uint8))
