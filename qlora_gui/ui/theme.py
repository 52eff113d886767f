"""Light and dark palettes. macOS follows the system setting; the View menu switches elsewhere."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication


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
            legend.setLabelTextColor(foreground)
            shade = QColor(background)
            shade.setAlpha(210)  # the legend stays readable where it covers a line
            legend.setBrush(shade)
