"""What every controller shares: the model, the view, the task runner, the app's signals, the store."""

from __future__ import annotations

from dataclasses import dataclass

from sr3_desktop.qt.app_state import AppModel
from sr3_desktop.qt.controllers.events import AppEvents
from sr3_desktop.qt.settings import SettingsStore
from sr3_desktop.qt.tasks import TaskRunner
from sr3_desktop.qt.views.protocol import View


@dataclass
class AppContext:
    model: AppModel
    view: View
    tasks: TaskRunner
    events: AppEvents
    store: SettingsStore | None = None

    def persist(self) -> None:
        """Write the settings (no-op without a store)."""
        if self.store is not None:
            self.store.save(self.model.settings)

    def report_error(self, title: str, message: str) -> None:
        self.view.show_error(title, message)
        self.events.error_shown.emit(message)

    def show_engine(self, generation: int, providers: list[str], note: str | None) -> None:
        """A run's session is ready (worker signal): say what really runs it."""
        if self.model.is_current(generation):
            self.view.show_engine(providers, note)
