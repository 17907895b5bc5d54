"""Zoomable, pannable image panes that share one view (zoom + centre), so every pane moves together.

Coordinates: the *frame* is the output image (scale x input). Every layer is drawn into the frame
rectangle, so the low-resolution input lines up with the results (drawn nearest-neighbour).
Zoom is counted in device pixels per frame pixel, so "100%" is one image pixel per screen pixel
on HiDPI screens too.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from sr3_desktop.qt.views.qimage import rgb_to_qimage

MIN_ZOOM, MAX_ZOOM = 1 / 64, 64.0
WHEEL_STEP = 1.25


class ViewSync(QObject):
    """The view shared by all panes: fit-to-window, or an explicit zoom and centre."""

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.fit = True
        self.zoom = 1.0
        self.center = QPointF(0, 0)
        self.frame = QSize(0, 0)

    def set_frame(self, size: QSize) -> None:
        if size != self.frame:
            self.frame = QSize(size)
            self.center = QPointF(size.width() / 2, size.height() / 2)
            self.changed.emit()

    def set_fit(self) -> None:
        self.fit = True
        self.center = QPointF(self.frame.width() / 2, self.frame.height() / 2)
        self.changed.emit()

    def set_zoom(self, zoom: float, center: QPointF | None = None) -> None:
        self.fit = False
        self.zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        if center is not None:
            self.center = QPointF(center)
        self.changed.emit()

    def pan(self, dx: float, dy: float) -> None:
        self.center = QPointF(self.center.x() + dx, self.center.y() + dy)
        self.changed.emit()


class Layer:
    """One image drawn into the frame; converted to a pixmap only when first painted."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None
        self.nearest = False
        self._pixmap: QPixmap | None = None

    def set(self, array: np.ndarray | None, nearest: bool = False) -> None:
        self.array = array
        self.nearest = nearest
        self._pixmap = None

    def pixmap(self) -> QPixmap | None:
        if self._pixmap is None and self.array is not None:
            self._pixmap = QPixmap.fromImage(rgb_to_qimage(self.array))
        return self._pixmap


class ZoomPanCanvas(QWidget):
    """Base pane: background, transform from the shared view, mouse wheel zoom and drag to pan."""

    zoom_changed = Signal(float)

    def __init__(self, sync: ViewSync, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sync = sync
        self._drag_from: QPointF | None = None
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        sync.changed.connect(self.update)

    # --- geometry ---------------------------------------------------------------------------
    def device_zoom(self) -> float:
        """Device pixels per frame pixel currently shown in this pane."""
        if not self.sync.fit:
            return self.sync.zoom
        frame = self.sync.frame
        if frame.isEmpty():
            return 1.0
        ratio = self.devicePixelRatioF()
        margin = 12
        return max(MIN_ZOOM, min((self.width() - margin) * ratio / frame.width(),
                                 (self.height() - margin) * ratio / frame.height()))

    def logical_scale(self) -> float:
        return self.device_zoom() / self.devicePixelRatioF()

    def frame_rect(self) -> QRectF:
        """Where the frame lands in widget (logical) coordinates."""
        scale = self.logical_scale()
        frame = self.sync.frame
        center = self.sync.center if not self.sync.fit else QPointF(frame.width() / 2, frame.height() / 2)
        left = self.width() / 2 - center.x() * scale
        top = self.height() / 2 - center.y() * scale
        return QRectF(left, top, frame.width() * scale, frame.height() * scale)

    def to_frame(self, pos: QPointF) -> QPointF:
        rect = self.frame_rect()
        scale = self.logical_scale()
        return QPointF((pos.x() - rect.left()) / scale, (pos.y() - rect.top()) / scale)

    # --- painting helpers ---------------------------------------------------------------------
    def paint_background(self, painter: QPainter) -> None:
        dark = self.palette().color(QPalette.ColorRole.Window).lightness() < 128
        painter.fillRect(self.rect(), QColor("#18191b") if dark else QColor("#e4e6ea"))

    def paint_layer(self, painter: QPainter, layer: Layer, clip: QRectF | None = None) -> None:
        pixmap = layer.pixmap()
        if pixmap is None:
            return
        target = self.frame_rect()
        smooth = not layer.nearest and self.device_zoom() < 1.0
        painter.save()
        if clip is not None:
            painter.setClipRect(clip)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        painter.drawPixmap(target, pixmap, QRectF(pixmap.rect()))
        painter.restore()

    def paint_chip(self, painter: QPainter, text: str, corner: Qt.Corner) -> None:
        """A small rounded label over the image (pane title, step counter)."""
        if not text:
            return
        font = QFont(self.font())
        font.setPointSizeF(max(8.0, font.pointSizeF() * 0.95))
        font.setWeight(QFont.Weight.DemiBold)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        width, height = metrics.horizontalAdvance(text) + 16, metrics.height() + 8
        x = 8 if corner in (Qt.Corner.TopLeftCorner, Qt.Corner.BottomLeftCorner) else self.width() - width - 8
        y = 8 if corner in (Qt.Corner.TopLeftCorner, Qt.Corner.TopRightCorner) else self.height() - height - 8
        path = QPainterPath()
        path.addRoundedRect(QRectF(x, y, width, height), 6, 6)
        painter.fillPath(path, QColor(0, 0, 0, 150))
        painter.setPen(QColor("#ffffff"))
        painter.drawText(QRectF(x, y, width, height), Qt.AlignmentFlag.AlignCenter, text)

    def paint_placeholder(self, painter: QPainter, text: str) -> None:
        painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(self.rect().adjusted(16, 16, -16, -16),
                         Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)

    # --- interaction -------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:
        if self.sync.frame.isEmpty():
            return
        steps = event.angleDelta().y() / 120.0
        if steps == 0:
            return
        self.zoom_at(event.position(), WHEEL_STEP**steps)
        event.accept()

    def zoom_at(self, pos: QPointF, factor: float) -> None:
        """Zoom by ``factor`` keeping the frame point under ``pos`` fixed."""
        anchor = self.to_frame(pos)
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, self.device_zoom() * factor))
        scale = zoom / self.devicePixelRatioF()
        center = QPointF(anchor.x() - (pos.x() - self.width() / 2) / scale,
                         anchor.y() - (pos.y() - self.height() / 2) / scale)
        self.sync.set_zoom(zoom, center)
        self.zoom_changed.emit(zoom)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._drag_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is None:
            return
        delta = event.position() - self._drag_from
        self._drag_from = event.position()
        if self.sync.fit:
            self.sync.set_zoom(self.device_zoom(), self.sync.center)
        scale = self.logical_scale()
        self.sync.pan(-delta.x() / scale, -delta.y() / scale)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._drag_from = None
        self.unsetCursor()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self.sync.fit:
            self.sync.set_zoom(1.0, self.to_frame(event.position()))
        else:
            self.sync.set_fit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.update()


class ImagePane(ZoomPanCanvas):
    """One method's image with its title; the SR3 pane doubles as the live preview.

    Until it has an image of its own, a pane shows its *backdrop* (the input, so an opened photo
    is on screen at once), captioned with what it is and the placeholder text; without one, the text alone."""

    def __init__(self, sync: ViewSync, title: str, parent: QWidget | None = None) -> None:
        super().__init__(sync, parent)
        self.title = title
        self.caption = ""
        self.placeholder = "Nothing here yet"
        self.layer = Layer()
        self.backdrop = Layer()
        self.backdrop_label = ""

    def set_image(self, array: np.ndarray | None, nearest: bool = False) -> None:
        self.layer.set(array, nearest)
        self.update()

    def set_backdrop(self, array: np.ndarray | None, nearest: bool = False, label: str = "") -> None:
        self.backdrop.set(array, nearest)
        self.backdrop_label = label
        self.update()

    def shown_layer(self) -> Layer:
        """The layer painted now: the pane's image, else its backdrop."""
        return self.layer if self.layer.array is not None else self.backdrop

    def set_caption(self, text: str) -> None:
        self.caption = text
        self.update()

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        self.update()

    def has_image(self) -> bool:
        return self.layer.array is not None

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        self.paint_background(painter)
        caption = self.caption
        if self.layer.array is not None:
            self.paint_layer(painter, self.layer)
        elif self.backdrop.array is not None:
            self.paint_layer(painter, self.backdrop)
            caption = " · ".join(t for t in (self.backdrop_label, self.placeholder) if t)
        else:
            self.paint_placeholder(painter, self.placeholder)
        self.paint_chip(painter, self.title, Qt.Corner.TopLeftCorner)
        self.paint_chip(painter, caption, Qt.Corner.BottomLeftCorner)
        painter.end()


class WipePane(ZoomPanCanvas):
    """Before/after: image A left of a draggable divider, image B right of it."""

    def __init__(self, sync: ViewSync, parent: QWidget | None = None) -> None:
        super().__init__(sync, parent)
        self.left, self.right = Layer(), Layer()
        self.left_title, self.right_title = "", ""
        self.position = 0.5  # divider, as a fraction of the widget width
        self._dragging_divider = False

    def set_images(self, left: tuple[str, np.ndarray | None, bool], right: tuple[str, np.ndarray | None, bool]) -> None:
        self.left_title, self.right_title = left[0], right[0]
        self.left.set(left[1], left[2])
        self.right.set(right[1], right[2])
        self.update()

    def set_position(self, fraction: float) -> None:
        self.position = min(1.0, max(0.0, fraction))
        self.update()

    def divider_x(self) -> float:
        return self.position * self.width()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        self.paint_background(painter)
        x = self.divider_x()
        if self.left.array is None and self.right.array is None:
            self.paint_placeholder(painter, "Run to compare before and after")
        self.paint_layer(painter, self.left, QRectF(0, 0, x, self.height()))
        self.paint_layer(painter, self.right, QRectF(x, 0, self.width() - x, self.height()))
        painter.setPen(QPen(QColor("#ffffff"), 2))
        painter.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        handle = QRectF(x - 9, self.height() / 2 - 22, 18, 44)
        path = QPainterPath()
        path.addRoundedRect(handle, 8, 8)
        painter.fillPath(path, QColor("#ffffff"))
        painter.setPen(QPen(QColor("#555555"), 1.5))
        for dx in (-3, 3):
            painter.drawLine(QPointF(x + dx, handle.top() + 12), QPointF(x + dx, handle.bottom() - 12))
        self.paint_chip(painter, self.left_title, Qt.Corner.TopLeftCorner)
        self.paint_chip(painter, self.right_title, Qt.Corner.TopRightCorner)
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and abs(event.position().x() - self.divider_x()) < 14:
            self._dragging_divider = True
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        near = abs(event.position().x() - self.divider_x()) < 14
        if self._dragging_divider:
            self.set_position(event.position().x() / max(1, self.width()))
            return
        if self._drag_from is None:
            self.setCursor(Qt.CursorShape.SplitHCursor if near else Qt.CursorShape.ArrowCursor)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._dragging_divider = False
        super().mouseReleaseEvent(event)
