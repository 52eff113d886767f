"""A broken model folder is named in one line, with the file and the fix, before anything loads (exit 2)."""

from __future__ import annotations

import json
import shutil

import pytest

from qlora_gui.core.config import TrainConfig
from qlora_gui.core.events import Failed
from qlora_gui.core.train.trainer import Trainer


def _break(folder, case):
    if case == "no config.json":
        (folder / "config.json").unlink()
    elif case == "cut-short weights":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif case == "unknown architecture":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "not_a_model"}))
    elif case == "no tokenizer":
        for f in folder.iterdir():
            if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
                f.unlink()
    elif case == "no weights":
        (folder / "model.safetensors").unlink()


@pytest.mark.parametrize(
    "case, named, said",
    [
        ("no config.json", "", "no config.json here"),
        ("cut-short weights", "model.safetensors", "is cut short"),
        ("unknown architecture", "config.json", "model_type 'not_a_model' is not an architecture mlx-lm supports"),
        ("no tokenizer", "", "no tokenizer"),
        ("no weights", "", "no *.safetensors weights"),
    ],
)
def test_each_broken_model_folder_fails_at_once_naming_the_file(tmp_path, demo_model, text_data, case, named, said):
    folder = tmp_path / "model"
    shutil.copytree(demo_model, folder)
    _break(folder, case)
    cfg = TrainConfig(model=str(folder), data=str(text_data), adapter_path=str(tmp_path / "run"), iters=2, num_layers=2)
    result = Trainer(cfg).run()
    assert isinstance(result, Failed) and result.exit_code == 2 and not result.details  # no traceback
    assert said in result.message and str(folder / named).rstrip("/") in result.message
    assert "\n" not in result.message and not (tmp_path / "run").exists()  # one line; nothing was written
