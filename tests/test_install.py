"""A non-editable install carries the app's own files: `pip install` into a folder, then use it from there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_an_installed_package_builds_the_demo_model_and_trains(tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "QLORA_GUI_NO_BLAS_REEXEC": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        # Run outside the checkout, so only the installed copy can be imported.
        return subprocess.run(
            [sys.executable, "-m", "qlora_gui", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import qlora_gui; print(qlora_gui.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(where.strip()).is_relative_to(site)
    sample = site / "qlora_gui" / "resources" / "sample_data" / "sql_completions.jsonl"
    presets = sorted((site / "qlora_gui" / "resources" / "presets").glob("*.yaml"))
    assert sample.is_file() and len(presets) == 3
    built = cli("demo-model", str(tmp_path / "demo"))
    assert built.returncode == 0, built.stderr
    trained = cli(
        "train",
        "--model",
        str(tmp_path / "demo"),
        "--data",
        str(sample),
        "--iters",
        "3",
        "--batch-size",
        "2",
        "--adapter-path",
        str(tmp_path / "run"),
    )
    assert trained.returncode == 0, trained.stderr + trained.stdout
    assert (tmp_path / "run" / "adapters.safetensors").is_file()
