"""A small stderr progress bar (no tqdm) and the JSONL run log."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN or inf
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:d}:{rest % 60:02d}"


class ProgressBar:
    """``step/total [####....] loss it/s ETA data%`` on one line; plain lines when not a terminal."""

    def __init__(self, total: int, start: int = 0, stream: TextIO | None = None, every_s: float = 0.5) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s if self.tty else 30.0
        self.start_step = start
        self.start_time = time.perf_counter()
        self.last_print = 0.0

    def line(self, step: int, loss: float, data_share: float) -> str:
        elapsed = time.perf_counter() - self.start_time
        done = step - self.start_step
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        filled = int(20 * step / max(self.total, 1))
        bar = "#" * filled + "." * (20 - filled)
        return (
            f"step {step}/{self.total} [{bar}] loss {loss:.4f} {rate:.2f} it/s "
            f"ETA {format_duration(eta)} data {100 * data_share:.0f}%"
        )

    def update(self, step: int, loss: float, data_share: float, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_print < self.every_s:
            return
        self.last_print = now
        text = self.line(step, loss, data_share)
        if self.tty:
            self.stream.write("\r" + text.ljust(100))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a message on its own line without mangling the bar."""
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class JsonlLog:
    """Append one JSON object per line; each line is flushed so a killed run keeps its log."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
