"""Progress: a bar with "step i/N · it/s · ETA", fed by a small clock that measures the rate."""

from __future__ import annotations

import time

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget


class ProgressClock:
    """Steps per second and time left, measured from the first reported step."""

    def __init__(self, now: float | None = None) -> None:
        self.started = time.perf_counter() if now is None else now
        self.first_step: tuple[int, float] | None = None

    def rate(self, step: int, now: float | None = None) -> float | None:
        now = time.perf_counter() if now is None else now
        if self.first_step is None:
            self.first_step = (step, now)
            elapsed = now - self.started
            return step / elapsed if elapsed > 0 else None
        first, when = self.first_step
        if step <= first or now <= when:
            return None
        return (step - first) / (now - when)

    @staticmethod
    def eta(step: int, total: int, rate: float | None) -> float | None:
        return (total - step) / rate if rate and rate > 0 else None


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_progress(step: int, total: int, rate: float | None, eta: float | None, label: str = "Step") -> str:
    """E.g. "Step 12/50 · 3.4 it/s · ETA 0:11"."""
    speed = f"{rate:.1f} it/s" if rate is not None and rate < 100 else (f"{rate:.0f} it/s" if rate else "– it/s")
    return f"{label} {step}/{total} · {speed} · ETA {format_duration(eta)}"


class ProgressView(QWidget):
    """Progress bar plus its text, placed in the status bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setFixedWidth(180)
        self.label = QLabel()
        self.label.setMinimumWidth(230)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        self.reset()

    def show_progress(self, step: int, total: int, rate: float | None, eta: float | None, label: str = "Step") -> None:
        self.bar.setVisible(True)
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(step)
        self.label.setText(format_progress(step, total, rate, eta, label))

    def busy(self, text: str) -> None:
        self.bar.setVisible(True)
        self.bar.setRange(0, 0)
        self.label.setText(text)

    def reset(self, text: str = "") -> None:
        """Idle: the bar hides; ``text`` (e.g. the last run's speed) stays readable."""
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setVisible(False)
        self.label.setText(text)
