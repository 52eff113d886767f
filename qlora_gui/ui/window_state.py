"""What the window remembers between starts (QSettings): data, model, settings, theme, geometry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMainWindow

from ..core.config import config_from_dict, default_of
from ..core.errors import ConfigError
from . import theme
from .views.dataset_panel import DatasetPanel
from .views.model_panel import ModelPanel
from .views.settings_panel import SettingsPanel


@dataclass
class RememberedParts:
    """What is remembered: the store it is kept in, the window's geometry, its Data, Model and Settings tabs."""

    store: QSettings
    window: QMainWindow
    dataset: DatasetPanel
    model: ModelPanel
    settings_panel: SettingsPanel


def save_window_state(parts: RememberedParts) -> None:
    """Data, model, settings and geometry, for the next start (the theme is kept when it is switched)."""
    s, dataset, model = parts.store, parts.dataset, parts.model
    s.setValue("data_path", dataset.path)
    s.setValue("model_path", model.selected_path or "")
    s.setValue("quantize", model.quantize.currentIndex())
    s.setValue("mask_prompt", dataset.mask_prompt.isChecked())
    s.setValue("valid_share", dataset.valid_share.value())
    s.setValue("model_folders", model.extra_folders)
    s.setValue("geometry", parts.window.saveGeometry())
    cfg = parts.settings_panel.check()
    if cfg:
        s.setValue("settings_yaml", cfg.to_yaml())
    s.setValue("machines", parts.settings_panel.machines.state())


def restore_window_state(parts: RememberedParts) -> bool:
    """Put back what save_window_state kept; values from an older version fall back to defaults. True when the
    window is to be dark (a choice kept where the system does not decide)."""
    s, window = parts.store, parts.window
    if s.value("geometry"):
        window.restoreGeometry(s.value("geometry"))
    else:
        window.resize(1280, 800)
    if s.value("settings_yaml"):
        import yaml

        try:
            values = yaml.safe_load(s.value("settings_yaml")) or {}
            cfg, _ = config_from_dict(
                {k: v for k, v in values.items() if k not in ("model", "data", "adapter_path", "resume")}
            )
            parts.settings_panel.set_config(cfg)
        except (ConfigError, yaml.YAMLError, TypeError):
            pass  # settings from an older version: keep the defaults
    parts.settings_panel.machines.restore(str(s.value("machines", "")))
    parts.dataset.valid_share.setValue(float(s.value("valid_share", default_of("valid_fraction"))))
    model = s.value("model_path", "")
    if model and Path(model).is_dir():
        parts.model.select_path(model)
        parts.model.quantize.setCurrentIndex(int(s.value("quantize", 0)))
    data = s.value("data_path", "")
    if data and Path(data).exists():
        parts.dataset.set_path(data, str(s.value("mask_prompt", "true")).lower() == "true")
    return str(s.value("dark", "false")).lower() == "true" and not theme.FOLLOWS_SYSTEM  # macOS: the system decides
