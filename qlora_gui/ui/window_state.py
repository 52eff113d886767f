"""What the window remembers between starts (QSettings): data, model, settings, theme, geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..core.errors import ConfigError
from ..core.train.config import config_from_dict, default_of
from . import theme


class RememberingWindow(Protocol):
    """What is remembered: the window's store, its Data, Model and Settings tabs, its geometry and theme."""

    store: Any
    dataset: Any
    model: Any
    settings_panel: Any

    def saveGeometry(self) -> Any: ...  # noqa: N802 (Qt's names)
    def restoreGeometry(self, geometry: Any) -> bool: ...  # noqa: N802
    def resize(self, width: int, height: int) -> None: ...
    def set_dark(self, dark: bool) -> None: ...


def save_window_state(window: RememberingWindow) -> None:
    """Data, model, settings, theme and geometry, for the next start."""
    s = window.store
    s.setValue("data_path", window.dataset.path)
    s.setValue("model_path", window.model.selected_path or "")
    s.setValue("quantize", window.model.quantize.currentIndex())
    s.setValue("mask_prompt", window.dataset.mask_prompt.isChecked())
    s.setValue("valid_share", window.dataset.valid_share.value())
    s.setValue("model_folders", window.model.extra_folders)
    s.setValue("geometry", window.saveGeometry())
    cfg = window.settings_panel.check()
    if cfg:
        s.setValue("settings_yaml", cfg.to_yaml())
    s.setValue("machines", window.settings_panel.machines.state())


def restore_window_state(window: RememberingWindow) -> None:
    """Put back what save_window_state kept; values from an older version fall back to defaults."""
    s = window.store
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
            window.settings_panel.set_config(cfg)
        except (ConfigError, yaml.YAMLError, TypeError):
            pass  # settings from an older version: keep the defaults
    window.settings_panel.machines.restore(str(s.value("machines", "")))
    window.dataset.valid_share.setValue(float(s.value("valid_share", default_of("valid_fraction"))))
    model = s.value("model_path", "")
    if model and Path(model).is_dir():
        window.model.select_path(model)
        window.model.quantize.setCurrentIndex(int(s.value("quantize", 0)))
    data = s.value("data_path", "")
    if data and Path(data).exists():
        window.dataset.set_path(data, str(s.value("mask_prompt", "true")).lower() == "true")
    if str(s.value("dark", "false")).lower() == "true" and not theme.FOLLOWS_SYSTEM:  # macOS: the system decides
        window.set_dark(True)
