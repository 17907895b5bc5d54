"""The image area: one pane (the live preview / result), 2-5 synchronised panes, or a wipe slider."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from sr3_desktop.qt import icons
from sr3_desktop.qt.view_data import METHOD_LABELS, RESULT_METHODS
from sr3_desktop.qt.views.image_panes import ImagePane, ViewSync, WipePane

METHODS = ("input", *RESULT_METHODS)
RESULTS = RESULT_METHODS
TITLES = {**METHOD_LABELS, "input": "Input (nearest)"}
MODES = ("single", "side", "wipe")
MODE_LABELS = {"single": "Single", "side": "Side by side", "wipe": "Wipe"}
MODE_SHORT = {"single": "Single", "side": "Panes", "wipe": "Wipe"}
MODE_ICONS = {"single": "single", "side": "side", "wipe": "wipe"}
PREVIEW_LABELS = {"pred_y0": "Predicted ŷ₀", "y_t": "Noisy yₜ"}
PREVIEW_SHORT = {"pred_y0": "ŷ₀", "y_t": "yₜ"}


class CompareView(QWidget):
    """Panes for input and every method (bicubic, regression, the one-pass model, SR3) sharing one zoom and pan."""

    mode_changed = Signal(str)
    preview_kind_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sync = ViewSync()
        self.panes = {m: ImagePane(self.sync, TITLES[m]) for m in METHODS}
        self.panes["sr3"].set_placeholder("Press Run (Ctrl+Enter) to refine")
        self.wipe = WipePane(self.sync)
        self.mode = "single"
        self.visible_methods = ["bicubic", "sr3"]
        self.wipe_pair = ("bicubic", "sr3")

        self.grid_page = QWidget()
        self.grid = QGridLayout(self.grid_page)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(4)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.grid_page)
        self.stack.addWidget(self.wipe)
        self._build_bar()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.bar)
        layout.addWidget(self.stack, 1)
        self.sync.changed.connect(self._show_zoom)
        self._relayout()

    # --- the bar above the panes ---------------------------------------------------------------
    def _build_bar(self) -> None:
        """The bar over the panes: modes | panes shown | wipe pair ... preview kind | zoom."""
        self.bar = QWidget()
        row = QHBoxLayout(self.bar)
        row.setContentsMargins(4, 2, 4, 2)
        self._add_mode_buttons(row)
        row.addSpacing(12)
        self._add_panes_menu(row)
        self._add_wipe_pair(row)
        row.addStretch(1)
        self._add_preview_buttons(row)
        row.addSpacing(12)
        self._add_zoom_buttons(row)
        left, right = "bicubic", "sr3"
        self.wipe_left.setCurrentIndex(METHODS.index(left))
        self.wipe_right.setCurrentIndex(METHODS.index(right))
        self.wipe_pair = (left, right)
        self._check_panes(self.visible_methods)
        self.preview_buttons["pred_y0"].setChecked(True)

    def _add_mode_buttons(self, row: QHBoxLayout) -> None:
        """One checkable button per compare mode, keys 1, 2, ... in order."""
        self.mode_group = QButtonGroup(self)
        self.mode_buttons: dict[str, QToolButton] = {}
        for key, mode in enumerate(MODES, start=1):
            button = self._tool_button(MODE_SHORT[mode], MODE_ICONS[mode], f"{MODE_LABELS[mode]} ({key})")
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, m=mode: self.set_mode(m))
            self.mode_group.addButton(button)
            self.mode_buttons[mode] = button
            row.addWidget(button)

    def _add_panes_menu(self, row: QHBoxLayout) -> None:
        """The "Show" menu: which 2 to 4 methods stand side by side."""
        self.pane_actions: dict[str, QAction] = {}
        self.panes_menu = QMenu(self)
        for method in METHODS:
            action = self.panes_menu.addAction(TITLES[method])
            action.setCheckable(True)
            action.toggled.connect(lambda on, m=method: self._toggle_pane(m, on))
            self.pane_actions[method] = action
        self.panes_box = self._tool_button("Show", "side", f"Choose 2 to {len(METHODS)} panes to show side by side")
        self.panes_box.setMenu(self.panes_menu)
        self.panes_box.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        row.addWidget(self.panes_box)

    def _add_wipe_pair(self, row: QHBoxLayout) -> None:
        """The two methods either side of the wipe divider."""
        self.wipe_box = QWidget()
        wipe_row = QHBoxLayout(self.wipe_box)
        wipe_row.setContentsMargins(0, 0, 0, 0)
        self.wipe_left, self.wipe_right = QComboBox(), QComboBox()
        for combo in (self.wipe_left, self.wipe_right):
            for method in METHODS:
                combo.addItem(TITLES[method].split(" ")[0], method)
            combo.currentIndexChanged.connect(self._wipe_choice_changed)
        for combo in (self.wipe_left, self.wipe_right):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(7)
        self.wipe_left.setToolTip("Left of the divider (before)")
        self.wipe_right.setToolTip("Right of the divider (after)")
        wipe_row.addWidget(self.wipe_left)
        wipe_row.addWidget(self.wipe_right)
        row.addWidget(self.wipe_box)

    def _add_preview_buttons(self, row: QHBoxLayout) -> None:
        """What the live preview shows: the predicted clean image or the noisy y_t."""
        self.preview_group = QButtonGroup(self)
        self.preview_buttons: dict[str, QToolButton] = {}
        for kind, glyph in (("pred_y0", "clean"), ("y_t", "noise")):
            button = self._tool_button(PREVIEW_SHORT[kind], glyph,
                                       f"Live preview shows the {PREVIEW_LABELS[kind].lower()} (toggle with T)")
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, k=kind: self.preview_kind_changed.emit(k))
            self.preview_group.addButton(button)
            self.preview_buttons[kind] = button
            row.addWidget(button)

    def _add_zoom_buttons(self, row: QHBoxLayout) -> None:
        """Fit, actual pixels, and the zoom shown."""
        self.fit_button = self._tool_button("", "fit", "Fit to window (F)")
        self.fit_button.clicked.connect(self.fit)
        self.actual_button = self._tool_button("", "actual", "Actual pixels, 100% (0)")
        self.actual_button.clicked.connect(self.actual_size)
        self.zoom_label = QLabel("Fit")
        self.zoom_label.setMinimumWidth(40)
        row.addWidget(self.fit_button)
        row.addWidget(self.actual_button)
        row.addWidget(self.zoom_label)

    def _tool_button(self, text: str, glyph: str | None, tip: str) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        if glyph:
            icons.set_icon(button, glyph)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon if text
                                      else Qt.ToolButtonStyle.ToolButtonIconOnly)
        return button

    # --- modes and panes -----------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown compare mode {mode!r}")
        self.mode = mode
        self.mode_buttons[mode].setChecked(True)
        self._relayout()
        self.mode_changed.emit(mode)

    def show_all_panes(self) -> None:
        self.visible_methods = list(METHODS)
        self._check_panes(self.visible_methods)
        self.set_mode("side")

    def _check_panes(self, methods: list[str]) -> None:
        for method, action in self.pane_actions.items():
            action.blockSignals(True)
            action.setChecked(method in methods)
            action.blockSignals(False)

    def set_visible_panes(self, methods: list[str]) -> None:
        """Show 2 or more of input / bicubic / regression / onepass / sr3 side by side."""
        chosen = [m for m in METHODS if m in methods]
        if len(chosen) < 2:
            raise ValueError(f"choose 2 to {len(METHODS)} panes")
        self.visible_methods = chosen
        self._check_panes(chosen)
        self._relayout()

    def _toggle_pane(self, method: str, on: bool) -> None:
        chosen = set(self.visible_methods) | {method} if on else set(self.visible_methods) - {method}
        if len(chosen) < 2:  # keep at least two panes: undo the click
            self._check_panes(self.visible_methods)
            return
        self.visible_methods = [m for m in METHODS if m in chosen]
        self._relayout()

    def shown_methods(self) -> list[str]:
        """Methods whose panes are on screen now."""
        if self.mode == "single":
            return ["sr3"]
        if self.mode == "wipe":
            return list(self.wipe_pair)
        return list(self.visible_methods)

    def _relayout(self) -> None:
        self.panes_box.setVisible(self.mode == "side")
        self.wipe_box.setVisible(self.mode == "wipe")
        if self.mode == "wipe":
            self._update_wipe()
            self.stack.setCurrentWidget(self.wipe)
            return
        while self.grid.count():
            self.grid.takeAt(0)
        shown = self.shown_methods()
        columns = (len(shown) + 1) // 2 if len(shown) >= 4 else len(shown)  # 4: 2 x 2, 5 and 6: 3 x 2
        for index, method in enumerate(shown):
            self.grid.addWidget(self.panes[method], index // columns, index % columns)
        for method, pane in self.panes.items():
            pane.setVisible(method in shown)
        self.stack.setCurrentWidget(self.grid_page)

    def _wipe_choice_changed(self) -> None:
        left, right = self.wipe_left.currentData(), self.wipe_right.currentData()
        if left in METHODS and right in METHODS:  # both combos filled
            self.wipe_pair = (left, right)
            self._update_wipe()

    def _update_wipe(self) -> None:
        left, right = (self.panes[m] for m in self.wipe_pair)
        shown = left.shown_layer(), right.shown_layer()
        self.wipe.set_images((left.title, shown[0].array, shown[0].nearest),
                             (right.title, shown[1].array, shown[1].nearest))

    # --- images --------------------------------------------------------------------------------
    def set_frame(self, width: int, height: int) -> None:
        self.sync.set_frame(QSize(width, height))
        self.sync.set_fit()

    def set_input(self, array: np.ndarray, caption: str) -> None:
        """A new input: in its pane, and behind every result pane until that pane has its own image."""
        self.panes["input"].set_image(array, nearest=True)
        self.panes["input"].set_caption(caption)
        for method in RESULTS:
            self.panes[method].set_backdrop(array, nearest=True, label="Input")
        if self.mode == "wipe":
            self._update_wipe()

    def set_image(self, method: str, array: np.ndarray | None, caption: str = "") -> None:
        self.panes[method].set_image(array, nearest=method == "input")
        self.panes[method].set_caption(caption)
        if self.mode == "wipe" and method in self.wipe_pair:
            self._update_wipe()

    def set_title(self, method: str, title: str) -> None:
        """Rename a method's pane, its entry in the Show menu and in the wipe's choices."""
        pane = self.panes[method]
        pane.title = title
        pane.update()
        self.pane_actions[method].setText(title)
        for combo in (self.wipe_left, self.wipe_right):
            combo.setItemText(METHODS.index(method), title)
        if self.mode == "wipe" and method in self.wipe_pair:
            self._update_wipe()

    def set_placeholder(self, method: str, text: str) -> None:
        self.panes[method].set_placeholder(text)

    def set_preview_kind(self, kind: str) -> None:
        if kind in self.preview_buttons:
            self.preview_buttons[kind].setChecked(True)

    # --- zoom ----------------------------------------------------------------------------------
    def fit(self) -> None:
        self.sync.set_fit()

    def actual_size(self) -> None:
        self.sync.set_zoom(1.0)

    def zoom_by(self, factor: float) -> None:
        pane = self.wipe if self.mode == "wipe" else self.panes[self.shown_methods()[0]]
        pane.zoom_at(pane.rect().center().toPointF(), factor)

    def _show_zoom(self) -> None:
        if self.sync.fit:
            self.zoom_label.setText("Fit")
        else:
            self.zoom_label.setText(f"{self.sync.zoom * 100:.0f}%")
