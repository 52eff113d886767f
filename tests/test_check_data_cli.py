"""`qlora-gui check-data`: a report and exit 0 for usable data, a FILE:LINE: list and exit 2 otherwise."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import SHARED_DATA, write_jsonl

from qlora_gui.cli import main


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared/data/wikisql is not beside this checkout")
def test_wikisql_is_usable(capsys, demo_model):
    assert main(["check-data", str(SHARED_DATA), "--model", str(demo_model)]) == 0
    out = capsys.readouterr().out
    assert "format: text" in out and "tokens min/mean/p95/max" in out
    for split, rows in (("train", 1000), ("valid", 100), ("test", 100)):
        assert re.search(rf"^\s+{split}\s+{rows}\s", out, re.M), out


def test_bad_data_exits_2_with_file_and_line(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "ok"}] * 5, ['{"text": 3}'])
    assert main(["check-data", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"{path}:6: 'text' must be a string, got a number" in out


def test_unknown_model_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "ok"}] * 5)
    assert main(["check-data", str(path), "--model", "someone/not-downloaded"]) == 2
    err = capsys.readouterr().err
    assert "is not on this machine" in err and "Traceback" not in err


def test_console_script_runs_in_a_subprocess(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c"}] * 8)
    out = subprocess.run(
        [sys.executable, "-m", "qlora_gui", "check-data", str(path), "--mask-prompt"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "format: completions" in out.stdout


def test_a_missing_mlx_backend_is_named_with_the_fix(monkeypatch, capsys):
    import sys

    from qlora_gui.cli import main

    monkeypatch.setitem(sys.modules, "mlx.core", None)  # as when libmlx is missing: import fails
    assert main(["check-data", "x.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MLX cannot start") and "qlora-gui[cpu]" in err and "qlora-gui[cuda]" in err
