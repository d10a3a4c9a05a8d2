"""The Fine-tune tab's live curve: training and validation loss, and validation F1, per round.

Drawn with QPainter (no matplotlib figure per event): it grows as the worker reports each
round, so the user sees at a glance whether validation F1 still rises or the loss has
flattened — when to stop, or to train longer.
"""
from __future__ import annotations

import math
from typing import Optional

from qgis.PyQt.QtCore import QPointF, QRectF, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

# (event key, legend text, colour, dashed, axis): loss on the left axis, F1 on the right (0-1)
SERIES = (("loss", "loss", "#2e86c1", False, "loss"), ("val_loss", "validation loss", "#2e86c1", True, "loss"),
          ("val_f1", "validation F1", "#d35400", False, "f1"))


class TrainingCurve(QWidget):
    """Per-round values of a running training job; :meth:`add_round` from the worker's events."""

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setObjectName("trainingCurve")
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip(self.tr("Loss (left axis) and validation F1 (right axis, 0–1) after each round"))
        self.rounds: list[dict] = []

    def clear(self) -> None:
        self.rounds = []
        self.update()

    def add_round(self, event: dict) -> None:
        """One ``epoch`` event of the worker: its round number and the values it has."""
        self.rounds.append({key: _number(event.get(key)) for key in ("epoch", *(s[0] for s in SERIES))})
        self.update()

    def values(self, key: str) -> list[Optional[float]]:
        return [r.get(key) for r in self.rounds]

    # -- drawing ---------------------------------------------------------------------
    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        painter.fillRect(self.rect(), QColor("white"))
        metrics = painter.fontMetrics()
        line = metrics.height()
        plot = QRectF(metrics.horizontalAdvance("0.000") + 10, line * 1.8,
                      self.width() - 2 * metrics.horizontalAdvance("0.00") - 22, self.height() - line * 3.2)
        if plot.width() < 20 or plot.height() < 20:
            return
        painter.setPen(QPen(QColor("#bbbbbb"), 1))
        painter.drawRect(plot)
        losses = [v for key in ("loss", "val_loss") for v in self.values(key) if v is not None]
        top = max(losses) * 1.05 if losses else 1.0
        n = len(self.rounds)
        grey = QColor("#555555")
        painter.setPen(grey)
        align_right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        align_left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        for frac in (0.0, 0.5, 1.0):
            y = plot.bottom() - frac * plot.height()
            painter.drawText(QRectF(0, y - line / 2, plot.left() - 4, line), align_right, f"{top * frac:.3g}")
            painter.drawText(QRectF(plot.right() + 4, y - line / 2, 60, line), align_left, f"{frac:.1f}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), line),
                         Qt.AlignmentFlag.AlignHCenter, self.tr("round") + (f" 1–{n}" if n > 1 else ""))
        if not n:
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, self.tr("The curve grows after each round."))
        x_of = (lambda i: plot.left() + plot.width() * (i / (n - 1))) if n > 1 else (lambda i: plot.center().x())
        legend_x = plot.left()
        for key, text, colour, dashed, axis in SERIES:
            pen = QPen(QColor(colour), 2, Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
            scale = top if axis == "loss" else 1.0
            points = [QPointF(x_of(i), plot.bottom() - plot.height() * min(v / scale, 1.0))
                      for i, v in enumerate(self.values(key)) if v is not None]
            painter.setPen(pen)
            for a, b in zip(points, points[1:]):
                painter.drawLine(a, b)
            for p in points:
                painter.drawEllipse(p, 2.0, 2.0)
            painter.drawLine(QPointF(legend_x, line * 0.8), QPointF(legend_x + 18, line * 0.8))
            painter.setPen(grey)
            painter.drawText(QPointF(legend_x + 22, line * 0.8 + metrics.ascent() / 2 - 1), text)
            legend_x += 30 + metrics.horizontalAdvance(text)


def _number(value) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
