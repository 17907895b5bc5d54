"""The one atomic writer, for every file SR3 Desktop and the exporter write.

A file is written to a temp file in the target's folder, fsynced, then published under its
final name with ``os.replace`` (or, when an existing file must not be replaced, with a hard
link, which fails instead of clobbering). Any failure, an exception inside the ``with`` block
included, removes the temp file. So a reader only ever sees the old file or the complete new one,
and a crash leaves at most a ``.sr3tmp-*`` file, which ``cleanup_stale_temp_files`` removes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import socket
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".sr3tmp-"
"""Every temp file starts with this; finders and the model registry skip such names."""
_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFFFF:08x}"


def temp_path_for(target: Path) -> Path:
    """A fresh temp name next to ``target``: .sr3tmp-<pid>-<host>-<random><suffix>.

    The writer's process id and host are in the name, so a later run can tell a temp file left by
    a killed process (remove it now) from one a live save is still writing (leave it alone).
    """
    return target.parent / f"{TEMP_PREFIX}{os.getpid()}-{_HOST}-{secrets.token_hex(6)}{target.suffix}"


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[BinaryIO]:
    """Open a temp file for writing ``target``; on a clean exit it is fsynced and published.

    ``overwrite=False`` publishes only if ``target`` does not exist: ``FileExistsError`` otherwise
    (checked atomically where the file system has hard links). The folder must exist. Errors are
    the plain ``OSError`` of the step that failed; the temp file is gone whatever happened.
    """
    final = Path(target)
    temp = temp_path_for(final)
    try:
        with open(temp, "xb") as handle:  # "x": O_EXCL, never an existing file
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publish(temp, final, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _sync_folder(final.parent)


def write_atomically(target: str | os.PathLike[str], payload: bytes, *, overwrite: bool = True) -> Path:
    """``payload`` as the whole content of ``target``, atomically (see ``atomic_file``)."""
    with atomic_file(target, overwrite=overwrite) as handle:
        handle.write(payload)
    return Path(target)


def copy_atomically(source: str | os.PathLike[str], target: str | os.PathLike[str], *,
                    overwrite: bool = True) -> Path:
    """Copy ``source`` to ``target``, atomically (see ``atomic_file``)."""
    with atomic_file(target, overwrite=overwrite) as handle, open(source, "rb") as src:
        shutil.copyfileobj(src, handle, 1 << 20)
    return Path(target)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (model files are tens of MB)."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _publish(temp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp, target)
        return
    try:
        os.link(temp, target)  # fails if the name exists: no race can clobber a file
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network shares): check, then rename
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(temp, target)
        return
    os.unlink(temp)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); silently unavailable on Windows."""
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def describe_os_error(exc: OSError, target: Path) -> str:
    """A sentence a user can act on for a failed write of ``target``."""
    name, folder = target.name, str(target.parent) if str(target.parent) not in ("", ".") else "the current folder"
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG):
        return f"Cannot save {name}: the disk is full (or the file is too large for it) in {folder}."
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Cannot save {name}: the folder {folder} is read-only or you lack permission to write there."
    if code in (errno.ENOENT, errno.ENOTDIR):
        return f"Cannot save {name}: the folder {folder} does not exist."
    if code == errno.ENAMETOOLONG:
        return f"Cannot save {name}: the file name is too long."
    return f"Cannot save {name}: {exc.strerror or exc}."


def _writer_is_gone(name: str) -> bool:
    """True when a temp file's name says it was written on this host by a process that has ended."""
    parts = name[len(TEMP_PREFIX):].split("-")
    if sys.platform == "win32" or len(parts) < 3 or parts[1] != _HOST or not parts[0].isdigit():
        return False  # on Windows os.kill(pid, 0) would terminate the process: age decides there
    pid = int(parts[0])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def cleanup_stale_temp_files(folder: str | os.PathLike[str], older_than_s: float = 60) -> int:
    """Remove temp files left in ``folder`` by a crash; returns how many were removed.

    A temp file goes when its writer process is known to have ended, or when it is older than
    ``older_than_s`` (a temp file of a save still running elsewhere is younger than that).
    """
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if entry.is_file(follow_symlinks=False) and (
                now - info.st_mtime >= older_than_s or _writer_is_gone(entry.name)
            ):
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed
