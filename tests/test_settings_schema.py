"""Each setting is declared once: --help, YAML, validate(), the Settings tab and the command line agree."""

from __future__ import annotations

import dataclasses
import shlex

import pytest

from qlora_gui.core.config import SETTINGS, TrainConfig, config_from_dict, load_config_file
from qlora_gui.core.errors import ConfigError
from qlora_gui.core.train.command_line import train_command


def _odd_value(s):
    """A valid value that differs from the default, for round trips."""
    if s.choices:
        return next(c for c in s.choices if c != s.default)
    if s.kind == "bool":
        return not s.default
    if s.kind == "keys":
        return ["self_attn.q_proj", "mlp.up_proj"]
    if s.kind in ("int", "float", "sci"):
        low = s.minimum if s.minimum is not None else 0
        value = low + (3 if s.kind == "int" else 0.5) + (1 if s.above_minimum else 0)
        if s.maximum is not None and value >= s.maximum:
            value = (low + s.maximum) / 2
        return int(value) if s.kind == "int" else float(value)
    if s.key == "report_to":  # tracker names, each checked
        return "tensorboard"
    if s.kind in ("text", "file"):
        return "/some/path"
    return None


def _set(cfg: TrainConfig, key: str, value) -> None:
    if key.startswith("lora_parameters."):
        cfg.lora_parameters = {**cfg.lora_parameters, key.split(".", 1)[1]: value}
    else:
        setattr(cfg, key, value)


def _every_setting_changed() -> TrainConfig:
    cfg = TrainConfig()
    for s in SETTINGS:
        if s.kind != "mapping" and s.key != "resume":
            _set(cfg, s.key, _odd_value(s))
    return cfg


def test_every_flagged_setting_is_in_help_with_its_default_and_the_rest_are_named(capsys):
    from qlora_gui.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for s in SETTINGS:
        if s.flag:
            assert s.flag_name in text, s.key
        else:
            assert s.key in text, s.key  # the YAML-only keys are listed
    assert "--batch-size BATCH_SIZE Rows per micro-batch" in text and "default: 4" in text
    assert "--num-layers" in text and "or -1 for all; default: 16" in text


def test_a_config_with_every_setting_changed_survives_yaml_and_the_command_line(tmp_path):
    from qlora_gui.cli import build_parser
    from qlora_gui.cli.train import config_from_args

    cfg = _every_setting_changed()
    cfg.validate()
    path = tmp_path / "lora.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config_file(path)[0] == cfg
    again, _ = config_from_args(build_parser().parse_args(shlex.split(train_command(cfg))[1:]))
    assert again == cfg


def test_yaml_numbers_written_as_text_are_read_as_numbers():
    cfg, _ = config_from_dict({"learning_rate": "1e-4", "lora_parameters": {"scale": "10"}})
    assert cfg.learning_rate == 1e-4 and cfg.lora_parameters["scale"] == 10.0
    with pytest.raises(ConfigError, match="setting 'learning_rate': must be a number, got 'fast'"):
        config_from_dict({"learning_rate": "fast", "model": "m", "data": "d"})[0].validate()


@pytest.mark.parametrize("s", [s for s in SETTINGS if s.kind in ("int", "float")], ids=lambda s: s.key)
def test_validate_refuses_just_outside_the_range_and_takes_its_ends(s):
    base = TrainConfig(model="m", data="d")

    def check(value):
        cfg = dataclasses.replace(base, lora_parameters=dict(base.lora_parameters))
        _set(cfg, s.key, int(value) if s.kind == "int" and value is not None else value)
        cfg.validate()

    low = s.minimum + (s.step if s.above_minimum else 0)
    check(low)
    if s.maximum is not None:
        check(s.maximum - (s.step if s.below_maximum else 0))
        with pytest.raises(ConfigError, match=f"setting '{s.key}': must be"):
            check(s.maximum + s.step if not s.below_maximum else s.maximum)
    outside = s.minimum - s.step if not s.above_minimum else s.minimum
    if not (s.has_off and outside == s.off):
        with pytest.raises(ConfigError, match=f"setting '{s.key}': must be"):
            check(outside)
    if s.has_off:
        check(s.off)


def test_the_settings_tab_holds_exactly_what_validate_takes(qtbot):
    from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox

    from qlora_gui.ui.views.settings_panel import TAB_SETTINGS, SettingsPanel
    from qlora_gui.ui.widgets.setting_widgets import read_value

    panel = SettingsPanel()
    qtbot.addWidget(panel)
    assert {s.key for s in TAB_SETTINGS} == {s.key for s in SETTINGS if s.group}
    assert set(panel.widget_keys()) == {s.key for s in TAB_SETTINGS}
    for s in TAB_SETTINGS:
        w = panel.widget(s.key)
        assert s.help in w.toolTip()
        if not isinstance(w, (QSpinBox, QDoubleSpinBox)):
            continue
        # A count that starts at 1 keeps 0 typeable, to be refused with its reason (issue 32); every other end
        # of each box is a value validate() takes.
        refused_floor = s.kind == "int" and (s.minimum or 0) >= 1 and not s.has_off
        for end in (w.minimum(), w.maximum()):
            w.setValue(end)
            cfg = panel.check()
            if refused_floor and end == w.minimum():
                assert cfg is None and panel.problem.startswith(s.label) and w.text().startswith("0"), s.key
                continue
            assert cfg is not None and panel.problem == "", (s.key, end, panel.problem)
            assert cfg.value(s.key) == read_value(w, s)
        if s.has_off:  # the lowest value stands for the setting's own "all"/"none"/"auto"
            w.setValue(w.minimum())
            assert panel.config().value(s.key) == s.off and w.text() == s.lowest_text
    cfg = _every_setting_changed()
    panel.set_config(cfg)
    shown = panel.config(dataclasses.replace(cfg))
    for s in TAB_SETTINGS:
        assert shown.value(s.key) == cfg.value(s.key), s.key
