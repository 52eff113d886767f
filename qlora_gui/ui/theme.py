"""Light and dark palettes. macOS follows the system's appearance, live; elsewhere View > Dark theme switches."""

from __future__ import annotations

import sys
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

# macOS: Qt's own style changes its palette with System Settings > Appearance, so the app follows it and has
# no theme switch of its own. Read at call time (tests set it to try the macOS path offscreen).
FOLLOWS_SYSTEM = sys.platform == "darwin"


def dark_palette() -> QPalette:
    p = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#2b2b2b",
        QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1e1e1e",
        QPalette.ColorRole.AlternateBase: "#2f2f2f",
        QPalette.ColorRole.Text: "#e6e6e6",
        QPalette.ColorRole.Button: "#3a3a3a",
        QPalette.ColorRole.ButtonText: "#e6e6e6",
        QPalette.ColorRole.Highlight: "#3d7bd9",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: "#3a3a3a",
        QPalette.ColorRole.ToolTipText: "#e6e6e6",
        QPalette.ColorRole.PlaceholderText: "#9a9a9a",
        QPalette.ColorRole.Link: "#6ea8fe",
    }
    for role, color in colors.items():
        p.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
    return p


def apply_theme(app: QApplication, dark: bool) -> QPalette:
    app.setStyle("Fusion")
    palette = dark_palette() if dark else app.style().standardPalette()
    app.setPalette(palette)
    return palette


def style_plot(widget, plots, palette: QPalette) -> None:
    """Give pyqtgraph plots the window's colours, so axes and titles stay legible in both themes."""
    background = palette.color(QPalette.ColorRole.Base)
    foreground = palette.color(QPalette.ColorRole.Text)
    widget.setBackground(background)
    for plot in plots:
        for axis in ("left", "bottom"):
            plot.getAxis(axis).setPen(foreground)
            plot.getAxis(axis).setTextPen(foreground)
        if plot.titleLabel.text:
            plot.setTitle(plot.titleLabel.text, color=foreground.name())
        legend = plot.legend
        if legend is not None:
            color_legend(legend, foreground)
            shade = QColor(background)
            shade.setAlpha(210)  # the legend stays readable where it covers a line
            legend.setBrush(shade)


def color_legend(legend, color: QColor) -> None:
    """pyqtgraph's setLabelTextColor only reaches labels added later; the ones shown are re-rendered here."""
    legend.setLabelTextColor(color)
    for _, label in legend.items:
        label.setText(label.text, color=color)


class SystemAppearance(QObject):
    """On macOS, calls `restyle` with the new palette when the system switches between light and dark, for what
    the palette does not reach by itself (the charts). It lives as long as `owner`, which it is a child of."""

    def __init__(self, owner: QWidget, restyle: Callable[[QPalette], None]):
        super().__init__(owner)
        self.restyle = restyle
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._changed)

    def _changed(self, scheme: Qt.ColorScheme) -> None:
        # Qt updates the application palette for the new scheme around this signal; restyle once it has.
        QTimer.singleShot(0, self, lambda: self.restyle(QApplication.palette()))


def follow_system_appearance(owner: QWidget, restyle: Callable[[QPalette], None]) -> SystemAppearance | None:
    """Where the system decides the appearance (macOS), keep `restyle` in step with it; None elsewhere."""
    return SystemAppearance(owner, restyle) if FOLLOWS_SYSTEM else None
