"""`qlora-gui train`: mlx-lm's flags and YAML keys, exit codes, resume, and Ctrl-C saving a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import write_jsonl

from qlora_gui.cli import main
from qlora_gui.core.runs.checkpoints import latest_checkpoint


def base_args(demo_model, data, run_dir):
    return [
        "train",
        "--model",
        str(demo_model),
        "--data",
        str(data),
        "--adapter-path",
        str(run_dir),
        "--num-layers",
        "2",
        "--batch-size",
        "4",
        "--learning-rate",
        "1e-3",
        "--steps-per-report",
        "2",
    ]


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_yaml_with_mlx_lm_keys_and_flags_on_top(tmp_path, demo_model, text_data, capsys):
    cfg = {
        "model": str(demo_model),
        "data": str(text_data),
        "num_layers": 2,
        "batch_size": 4,
        "iters": 4,
        "learning_rate": 1e-3,
        "lora_parameters": {"rank": 4, "scale": 8.0, "dropout": 0.0},
        "lr_schedule": {"name": "cosine_decay", "arguments": [1e-3, 4, 0.0], "warmup": 1},
        "steps_per_save": 2,
        "wandb": None,
    }
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    code = main(["train", "-c", str(path), "--adapter-path", str(run_dir), "--lora-rank", "2", "--iters", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["iters"] == 3 and saved["lora_parameters"] == {"rank": 2, "scale": 8.0, "dropout": 0.0}
    assert saved["save_every"] == 2 and saved["lr_schedule"]["name"] == "cosine_decay"
    adapter_config = json.loads((run_dir / "adapter_config.json").read_text())
    assert adapter_config["lora_parameters"]["rank"] == 2
    assert "finished at step 3" in out and "step      3 | epoch" in out


def test_lora_alpha_is_stored_as_scale(tmp_path, demo_model, text_data, capsys):
    run_dir = tmp_path / "run"
    args = base_args(demo_model, text_data, run_dir) + ["--iters", "1", "--lora-rank", "4", "--lora-alpha", "16"]
    assert main(args) == 0
    assert json.loads((run_dir / "adapter_config.json").read_text())["lora_parameters"]["scale"] == 4.0


def test_exit_codes_for_bad_input(tmp_path, demo_model, text_data, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}] * 8, ['{"text": ["a"]}'])
    assert main(base_args(demo_model, bad, tmp_path / "r1") + ["--iters", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:9: 'text' must be a string, got a list" in err and "Traceback" not in err
    assert main(base_args(demo_model, text_data, tmp_path / "r2") + ["--optimizer", "lion"]) == 2
    assert "setting 'optimizer': 'lion' is not one of adamw, adam, sgd" in capsys.readouterr().err
    yaml_path = tmp_path / "typo.yaml"
    yaml_path.write_text("learning_rat: 0.1\n")
    assert main(["train", "-c", str(yaml_path)]) == 2
    assert "unknown config key 'learning_rat'; did you mean 'learning_rate'?" in capsys.readouterr().err


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_resume_from_the_cli(tmp_path, demo_model, text_data, capsys):
    run_dir = tmp_path / "run"
    assert main(base_args(demo_model, text_data, run_dir) + ["--iters", "4", "--save-every", "2"]) == 0
    assert main(["train", "--resume", "--adapter-path", str(run_dir), "--batch-size", "8"]) == 2
    assert "batch_size=8 differs from the run's 4" in capsys.readouterr().err
    # resuming a finished run does nothing more and says so
    assert main(["train", "--resume", "--adapter-path", str(run_dir)]) == 0
    assert "finished at step 4" in capsys.readouterr().out


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path, demo_model, text_data):
    run_dir = tmp_path / "run"
    args = base_args(demo_model, text_data, run_dir) + ["--epochs", "200", "--steps-per-report", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "qlora_gui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in proc.stdout:  # wait for training to be under way, by its own output
        if line.startswith("step      3 | epoch"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopping after this step and saving a checkpoint" in err and "Traceback" not in err
    latest = latest_checkpoint(run_dir)
    assert latest is not None and latest.step >= 3
    assert (run_dir / "adapters.safetensors").is_file()
    assert "stopped at step" in out


def test_copied_command_line_gives_back_the_same_settings(tmp_path):
    import shlex

    from qlora_gui.cli import build_parser
    from qlora_gui.cli.train import config_from_args
    from qlora_gui.core.config import TrainConfig
    from qlora_gui.core.train.command_line import train_command

    cfg = TrainConfig(
        model="/m",
        data="/d",
        adapter_path=str(tmp_path / "r"),
        batch_size=2,
        epochs=3,
        learning_rate=2e-4,
        quantize_bits=4,
        mask_prompt=True,
        num_layers=-1,
        fast_quant=False,
        warmup_steps=0,
        memory_limit_gb=3.5,
        lora_parameters={"rank": 16, "scale": 2.0, "dropout": 0.05, "keys": ["self_attn.q_proj"]},
    )
    text = train_command(cfg)
    assert "--num-layers -1" in text and "--no-fast-quant" in text and "--warmup-steps 0" in text
    assert text.startswith("qlora-gui train --model /m --data /d")
    args = build_parser().parse_args(shlex.split(text)[1:])
    again, _ = config_from_args(args)
    assert again == cfg
