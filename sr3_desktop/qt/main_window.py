"""The main window: menus, toolbar, docks and status bar around the compare view; implements View."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QDockWidget,
    QGroupBox,
    QLabel,
    QMainWindow,
    QMenu,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from sr3_desktop.core.imageio import LoadedImage
from sr3_desktop.core.model_files.card import ModelCard
from sr3_desktop.core.model_files.registry import ModelEntry
from sr3_desktop.qt import dialogs, icons
from sr3_desktop.qt.about import AboutDialog
from sr3_desktop.qt.controllers.app_controller import Controller
from sr3_desktop.qt.logs import current_log_file
from sr3_desktop.qt.settings import AppSettings, SettingsStore
from sr3_desktop.qt.view_data import BatchItem, MetricsRow
from sr3_desktop.qt.views import file_dialogs
from sr3_desktop.qt.views.batch_view import BatchView
from sr3_desktop.qt.views.compare_view import PREVIEW_LABELS, CompareView
from sr3_desktop.qt.views.drop_zone import DropZone, paths_from_mime
from sr3_desktop.qt.views.metrics_panel import MetricsPanel
from sr3_desktop.qt.views.model_panel import ModelPanel
from sr3_desktop.qt.views.progress_bar import ProgressView
from sr3_desktop.qt.views.qimage import qimage_to_rgb
from sr3_desktop.qt.views.settings_panel import SettingsPanel, device_choices

PAGE_EMPTY, PAGE_SINGLE, PAGE_BATCH = 0, 1, 2
Shortcut = QKeySequence.StandardKey | str | list[str] | None


class MainWindow(QMainWindow):
    """SR3 Desktop's window. The controller owns the state; this class only displays and forwards."""

    preview_painted = Signal(int)

    def __init__(self, store: SettingsStore | None = None, settings: AppSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("SR3 Desktop")
        self.setWindowIcon(icons.app_icon())
        self.setAcceptDrops(True)
        self.store = store
        self.last_saved: Path | None = None
        self._running = False
        self.controller = Controller(self, settings, store, parent=self)

        self.drop_zone = DropZone()
        self.compare = CompareView()
        self.batch_view = BatchView()
        self.stack = QStackedWidget()
        for page in (self.drop_zone, self.compare, self.batch_view):
            self.stack.addWidget(page)
        self.setCentralWidget(self.stack)
        self.model_panel = ModelPanel()
        self.settings_panel = SettingsPanel()
        self.metrics_panel = MetricsPanel()
        self._build_docks()
        self._build_actions()
        self._build_menus_and_toolbar()
        self._build_status_bar()
        self._connect()

        self.settings_panel.set_devices(device_choices())
        self.settings_panel.apply(self.controller.model.settings)
        self.compare.set_preview_kind(self.controller.model.settings.preview_kind)
        self.set_running(False, batch=False)
        self.resize(1360, 860)
        if store is not None:
            geometry, state = store.window()
            if geometry is not None:
                self.restoreGeometry(geometry)
            if state is not None:
                self.restoreState(state)
        self.controller.start()

    # --- construction ---------------------------------------------------------------------------
    def _build_docks(self) -> None:
        side = QWidget()
        layout = QVBoxLayout(side)
        model_box = QGroupBox("Model")
        QVBoxLayout(model_box).addWidget(self.model_panel)
        settings_box = QGroupBox("Settings")
        QVBoxLayout(settings_box).addWidget(self.settings_panel)
        layout.addWidget(model_box, 1)
        layout.addWidget(settings_box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(side)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.settings_dock = QDockWidget("Model && settings")
        self.settings_dock.setObjectName("settingsDock")
        self.settings_dock.setWidget(scroll)
        self.settings_dock.setMinimumWidth(330)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.settings_dock)
        self.metrics_dock = QDockWidget("Metrics")
        self.metrics_dock.setObjectName("metricsDock")
        self.metrics_dock.setWidget(self.metrics_panel)
        self.metrics_dock.setMinimumWidth(320)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.metrics_dock)

    def _action(self, text: str, glyph: str | None, shortcut: Shortcut, slot: Callable[[], object],
                tip: str = "") -> QAction:
        action = QAction(text, self)
        if glyph:
            icons.set_icon(action, glyph)
        if shortcut:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        label = (tip or text).replace("&", "").replace("…", "")
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        action.setToolTip(f"{label} ({keys})" if keys else label)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        c = self.controller
        self.open_action = self._action("&Open…", "open", QKeySequence.StandardKey.Open, self.open_files)
        self.open_folder_action = self._action("Open &folder…", "open_folder", "Ctrl+Shift+O", self.open_folder)
        self.paste_action = self._action("&Paste image", "paste", QKeySequence.StandardKey.Paste, self.paste)
        self.save_action = self._action("&Save", "save", QKeySequence.StandardKey.Save, lambda: c.saver.save())
        self.save_as_action = self._action("Save &as…", "save_as", "Ctrl+Shift+S", self.save_as)
        self.reference_action = self._action("Load &reference…", "reference", "Ctrl+R", self.choose_reference,
                                             "Load the high-resolution original for PSNR and SSIM")
        self.quit_action = self._action("&Quit", "quit", QKeySequence.StandardKey.Quit, self.close)
        self.run_action = self._action("&Run", None, ["Ctrl+Return", "Ctrl+Enter"], c.run, "Refine")
        icons.set_icon(self.run_action, "run", icons.STATUS_COLOURS["done"])
        self.cancel_action = self._action("&Cancel", None, "Esc", c.cancel, "Stop the run")
        icons.set_icon(self.cancel_action, "cancel", icons.STATUS_COLOURS["error"])
        self.randomise_action = self._action("Randomise &seed", "dice", "Ctrl+D",
                                             self.settings_panel.randomise_seed)
        self.import_action = self._action("&Import model…", "import", "Ctrl+I", self.choose_model)
        self.about_action = self._action("&About SR3 Desktop", "about", None, self.show_about)
        self.log_action = self._action("Open &log folder", None, None, self.open_log_folder)
        self.mode_actions = {
            "single": self._action("&Single pane", "single", "1", lambda: self.compare.set_mode("single")),
            "side": self._action("Side &by side", "side", "2", lambda: self.compare.set_mode("side")),
            "wipe": self._action("&Wipe (before/after)", "wipe", "3", lambda: self.compare.set_mode("wipe")),
            "all": self._action("&All panes", "all", "4", self.compare.show_all_panes),
        }
        self.fit_action = self._action("&Fit to window", "fit", "F", self.compare.fit)
        self.actual_action = self._action("&Actual pixels (100%)", "actual", ["0", "Ctrl+0"], self.compare.actual_size)
        self.zoom_in_action = self._action("Zoom &in", "zoom_in", ["+", "=", "Ctrl++"],
                                           lambda: self.compare.zoom_by(1.25))
        self.zoom_out_action = self._action("Zoom &out", "zoom_out", ["-", "Ctrl+-"], lambda: self.compare.zoom_by(0.8))
        self.toggle_preview_action = self._action("Toggle preview yₜ / ŷ₀", "noise", "T", self.toggle_preview_kind)

    def _build_menus_and_toolbar(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.open_action, self.open_folder_action])
        self.recent_menu = QMenu("Open &recent", self)
        icons.set_icon(self.recent_menu, "recent")
        file_menu.addMenu(self.recent_menu)
        file_menu.addAction(self.paste_action)
        file_menu.addSeparator()
        file_menu.addActions([self.save_action, self.save_as_action])
        file_menu.addSeparator()
        file_menu.addAction(self.reference_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        view_menu = bar.addMenu("&View")
        view_menu.addActions(list(self.mode_actions.values()))
        view_menu.addSeparator()
        view_menu.addActions([self.fit_action, self.actual_action, self.zoom_in_action, self.zoom_out_action])
        view_menu.addSeparator()
        view_menu.addAction(self.toggle_preview_action)
        view_menu.addSeparator()
        view_menu.addActions([self.settings_dock.toggleViewAction(), self.metrics_dock.toggleViewAction()])
        run_menu = bar.addMenu("&Run")
        run_menu.addActions([self.run_action, self.cancel_action, self.randomise_action])
        model_menu = bar.addMenu("&Models")
        model_menu.addAction(self.import_action)
        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.log_action, self.about_action])

        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions([self.open_action, self.paste_action])
        toolbar.addSeparator()
        toolbar.addActions([self.run_action, self.cancel_action])
        run_button = toolbar.widgetForAction(self.run_action)
        if run_button is not None:
            run_button.setObjectName("runButton")
        toolbar.addSeparator()
        toolbar.addActions([self.save_action, self.save_as_action])
        toolbar.addSeparator()
        toolbar.addAction(self.reference_action)
        self.addToolBar(toolbar)
        self.toolbar = toolbar

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.status_label = QLabel()
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.engine_label = QLabel()
        self.engine_label.setObjectName("hint")
        self.engine_label.setMaximumWidth(520)
        self.progress = ProgressView()
        status.addWidget(self.status_label, 1)
        status.addPermanentWidget(self.engine_label)
        status.addPermanentWidget(self.progress)

    def _connect(self) -> None:
        c = self.controller
        self.drop_zone.paths_dropped.connect(c.open_paths)
        self.drop_zone.open_clicked.connect(self.open_files)
        self.drop_zone.open_folder_clicked.connect(self.open_folder)
        self.drop_zone.paste_clicked.connect(self.paste)
        self.batch_view.run_clicked.connect(c.run)
        self.batch_view.cancel_clicked.connect(c.cancel)
        self.batch_view.clear_clicked.connect(c.clear)
        self.batch_view.item_activated.connect(lambda path: c.open_paths([path]))
        self.model_panel.sr3_selected.connect(lambda name: c.models.select("sr3", name))
        self.model_panel.regression_selected.connect(lambda name: c.models.select("regression", name))
        self.model_panel.import_clicked.connect(self.choose_model)
        self.settings_panel.changed.connect(self._settings_edited)
        self.metrics_panel.reference_clicked.connect(self.choose_reference)
        self.compare.preview_kind_changed.connect(c.runs.set_preview_kind)

    # --- user commands --------------------------------------------------------------------------
    def open_files(self) -> None:
        recent = self.controller.model.settings.recent_files
        paths = file_dialogs.ask_images(self, str(Path(recent[0]).parent) if recent else "")
        if paths:
            self.controller.open_paths(paths)

    def open_folder(self) -> None:
        folder = file_dialogs.ask_folder(self)
        if folder:
            self.controller.open_paths([folder])

    def paste(self) -> None:
        mime = QGuiApplication.clipboard().mimeData()
        paths = paths_from_mime(mime) if mime else []
        if paths:
            self.controller.open_paths(paths)
        elif mime is not None and mime.hasImage():
            self.controller.paste_image(qimage_to_rgb(QGuiApplication.clipboard().image()))
        else:
            self.show_status("The clipboard holds no image.")

    def save_as(self) -> None:
        c = self.controller
        default = c.saver.default_output_path()
        if default is None or c.saver.savable() is None:
            self.show_status("Nothing to save yet: run the refinement first (Ctrl+Enter).")
            return
        path = file_dialogs.ask_save_path(self, default, c.model.settings.output_format)
        if path:
            c.saver.save(path, overwrite=True)  # the dialog has asked about replacing

    def choose_reference(self) -> None:
        path = file_dialogs.ask_reference(self)
        if path:
            self.controller.metrics.load_reference(path)

    def choose_model(self) -> None:
        path = file_dialogs.ask_model(self)
        if path:
            self.controller.models.import_model(path)

    def toggle_preview_kind(self) -> None:
        kind = "y_t" if self.controller.model.settings.preview_kind == "pred_y0" else "pred_y0"
        self.compare.set_preview_kind(kind)
        self.controller.runs.set_preview_kind(kind)

    def show_about(self) -> None:
        AboutDialog(self).open()

    def open_log_folder(self) -> None:
        log_file = current_log_file()
        if log_file is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(log_file.parent)))

    def _settings_edited(self) -> None:
        settings = self.controller.model.settings
        self.settings_panel.collect(settings)
        self.controller.update_settings(settings)

    # --- drag and drop anywhere on the window ------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if paths_from_mime(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = paths_from_mime(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.controller.open_paths(paths)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.store is not None:
            self.store.save_window(self.saveGeometry(), self.saveState())
        self._settings_edited()
        self.controller.shutdown()
        super().closeEvent(event)

    # --- View --------------------------------------------------------------------------------------
    def show_loading(self, name: str) -> None:
        self.progress.busy(f"Opening {name}…")

    def show_image(self, image: LoadedImage, name: str, scale: int) -> None:
        width, height = image.size
        self.compare.set_frame(width * scale, height * scale)
        self.compare.set_input(image.rgb, f"{width}×{height}")
        self.stack.setCurrentIndex(PAGE_SINGLE)
        self.setWindowTitle(f"{name} — SR3 Desktop")
        self.progress.reset()
        self.run_action.setEnabled(not self._running)

    def show_empty(self) -> None:
        self.stack.setCurrentIndex(PAGE_EMPTY)
        self.setWindowTitle("SR3 Desktop")
        self.progress.reset()
        self.run_action.setEnabled(False)

    def show_batch(self, items: list[BatchItem], output_folder: str) -> None:
        self.batch_view.set_items(items, output_folder)
        self.stack.setCurrentIndex(PAGE_BATCH)
        self.setWindowTitle(f"Batch of {len(items)} — SR3 Desktop")
        self.progress.reset()
        self.run_action.setEnabled(not self._running)

    def update_batch_item(self, index: int, item: BatchItem) -> None:
        self.batch_view.update_item(index, item)

    def show_batch_summary(self, text: str) -> None:
        self.batch_view.set_summary(text)

    def set_running(self, running: bool, batch: bool) -> None:
        self._running = running
        self.run_action.setEnabled(not running and self.stack.currentIndex() != PAGE_EMPTY)
        self.cancel_action.setEnabled(running)
        self.batch_view.set_running(running and batch)
        has_result = self.controller.saver.savable() is not None
        self.save_action.setEnabled(not running and has_result)
        self.save_as_action.setEnabled(not running and has_result)
        self.model_panel.setEnabled(not running)
        if not running:
            self.progress.reset(self.progress.label.text() if self.progress.bar.maximum() > 1 else "")

    def show_progress(self, step: int, total: int, rate: float | None, eta: float | None, label: str) -> None:
        self.progress.show_progress(step, total, rate, eta, label)

    def show_busy(self, text: str) -> None:
        self.progress.busy(text)

    def show_preview(self, image: np.ndarray, step: int, total: int, kind: str) -> None:
        self.compare.set_image("sr3", image, f"Step {step}/{total} · {PREVIEW_LABELS.get(kind, kind)}")
        self.preview_painted.emit(step)

    def show_bicubic(self, image: np.ndarray, caption: str) -> None:
        self.compare.set_image("bicubic", image, caption)

    def show_result(self, method: str, image: np.ndarray, caption: str) -> None:
        self.compare.set_image(method, image, caption)
        if method == self.controller.saver.savable():
            self.save_action.setEnabled(True)
            self.save_as_action.setEnabled(True)

    def clear_results(self, placeholders: dict[str, str]) -> None:
        for method, text in placeholders.items():
            self.compare.set_image(method, None)
            self.compare.set_placeholder(method, text)

    def show_metrics(self, rows: list[MetricsRow], has_reference: bool) -> None:
        self.metrics_panel.set_rows(rows, has_reference)

    def show_reference(self, name: str | None) -> None:
        self.metrics_panel.set_reference(name)

    def show_uncertainty(self, std: np.ndarray | None, samples: int) -> None:
        self.metrics_panel.set_uncertainty(std, samples)

    def show_engine(self, providers: list[str], note: str | None) -> None:
        running = providers[0] if providers else "unknown"
        text = f"Running on {running}" + (f"  ⚠ {note}" if note else "")
        metrics = self.engine_label.fontMetrics()
        self.engine_label.setText(metrics.elidedText(text, Qt.TextElideMode.ElideRight, 510))
        self.engine_label.setToolTip(f"onnxruntime runs the model on {running}" + (f"\n{note}" if note else ""))

    def show_status(self, text: str) -> None:
        self.status_label.setText(text)

    def show_error(self, title: str, message: str) -> None:
        dialogs.show_error(self, title, message)

    def show_saved(self, path: Path) -> None:
        self.last_saved = path

    def show_models(self, entries: list[ModelEntry], sr3: str, regression: str) -> None:
        self.model_panel.set_models(entries, sr3, regression)

    def show_method_title(self, method: str, title: str) -> None:
        self.compare.set_title(method, title)
        self.metrics_panel.set_title(method, title)

    def show_presets(self, card: ModelCard | None, preset: str) -> None:
        self.settings_panel.set_model_card(card, preset)

    def show_seed(self, seed: int) -> None:
        self.settings_panel.set_seed(seed)

    def show_estimate(self, text: str) -> None:
        self.settings_panel.show_estimate(text)

    def ask_long_run(self, message: str, choices: list[tuple[str, str]], answer: Callable[[str], None]) -> None:
        dialogs.ask_long_run(self, message, choices, answer)

    def show_recent(self, paths: list[str]) -> None:
        self.recent_menu.clear()
        for path in paths:
            action = self.recent_menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.triggered.connect(lambda _=False, p=path: self.controller.open_paths([p]))
        self.recent_menu.setEnabled(bool(paths))
