"""A widget for any setting, made from its declaration: the range, choices and texts are the setting's own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QLineEdit,
    QSpinBox,
    QStyle,
    QWidget,
)

from ...core.errors import ConfigError
from ...core.setting import Setting

SPIN_LIMIT = 2**31 - 1  # QSpinBox holds a C int


def spin_lowest(s: Setting) -> float:
    """A spin box's lowest value. An int setting that starts at 1 or more keeps 0 typeable, shown refused with
    its reason (never read as "all", never put back without a word); its `off` ("all", "none") sits at -1."""
    if s.kind == "int" and s.minimum is not None and s.minimum >= 1:
        return -1 if s.has_off else 0
    return s.lowest()


def make_widget(s: Setting, on_change: Callable[[], None]) -> QWidget:
    """A spin box, combo box, check box or line edit that can hold exactly the values the setting allows
    (a value outside its range only where that value has a meaning of its own: "all", "none", "auto")."""

    def notify(*_: Any) -> None:  # the widgets' signals carry the new value; the form re-reads them all
        on_change()

    w: QWidget
    if s.choices:
        w = QComboBox()
        if s.has_off:
            w.addItem(s.lowest_text)
        w.addItems([str(c) for c in s.choices])
        w.currentIndexChanged.connect(notify)
    elif s.kind == "int":
        high = min(int(s.maximum), SPIN_LIMIT) if s.maximum is not None else SPIN_LIMIT
        w = QSpinBox(minimum=int(spin_lowest(s)), maximum=high - (1 if s.below_maximum else 0))
        w.valueChanged.connect(notify)
    elif s.kind == "float":
        top = s.maximum if s.maximum is not None else 1e9
        w = QDoubleSpinBox(minimum=s.lowest(), maximum=top - (s.step if s.below_maximum else 0), decimals=s.decimals)
        w.setSingleStep(0.05 if top <= 1 else 1.0)
        w.valueChanged.connect(notify)
    elif s.kind == "bool":
        w = QCheckBox()
        w.toggled.connect(notify)
    else:  # "sci", "keys", "text" and "file": typed, checked when read
        w = QLineEdit(placeholderText=s.lowest_text)
        w.textChanged.connect(notify)
        if s.kind == "file":
            add_browse_action(w, s.label)
    if isinstance(w, (QSpinBox, QDoubleSpinBox)):
        if s.lowest_text:
            w.setSpecialValueText(s.lowest_text)  # shown at the lowest value
        if s.unit:
            w.setSuffix(f" {s.unit}")
    w.setToolTip(s.describe())
    return w


def add_browse_action(edit: QLineEdit, title: str) -> None:
    """A folder button inside the line edit that picks a data file into it."""
    icon = edit.style().standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon)
    action = edit.addAction(icon, QLineEdit.ActionPosition.TrailingPosition)
    action.setToolTip("Choose a file…")

    def browse() -> None:
        path, _ = QFileDialog.getOpenFileName(edit, title, edit.text(), "Data (*.jsonl *.json);;All files (*)")
        if path:
            edit.setText(path)

    action.triggered.connect(browse)


def show_value(w: QWidget, s: Setting, value: Any) -> None:
    """Put a setting's value into its widget without emitting change signals."""
    w.blockSignals(True)
    try:
        off = s.has_off and value == s.off
        if isinstance(w, QComboBox):
            w.setCurrentText(s.lowest_text if off else str(value))
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
            w.setValue(spin_lowest(s) if off else value)
        elif isinstance(w, QLineEdit):
            w.setText("" if value is None else s.shown(value))
    finally:
        w.blockSignals(False)


def read_value(w: QWidget, s: Setting) -> Any:
    """The widget's value in the setting's own terms; ConfigError when typed text is not a value."""
    if isinstance(w, QComboBox):
        text = w.currentText()
        if s.has_off and text == s.lowest_text:
            return s.off
        return next((c for c in s.choices if str(c) == text), text)
    if isinstance(w, QCheckBox):
        return w.isChecked()
    if isinstance(w, (QSpinBox, QDoubleSpinBox)):
        value = w.value()
        return s.off if s.has_off and value == spin_lowest(s) else value
    text = w.text().strip() if isinstance(w, QLineEdit) else ""
    if s.kind == "sci":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(
                f"{s.label} '{text}' is not a number",
                setting=s.key,
                why=f"'{text}' is not a number; write it like 1e-4",
            ) from None
    return s.coerce(text) if s.kind == "keys" else text
