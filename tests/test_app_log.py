"""What would be lost without a terminal goes to the log: uncaught exceptions of any thread, hard crashes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, str]:
    env = {**os.environ, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from qlora_gui.core.app_log import install_crash_logging; install_crash_logging(); " + code,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    where = subprocess.run(
        [sys.executable, "-c", "from qlora_gui.core.app_log import log_path; print(log_path())"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    log = Path(where)
    assert log.is_relative_to(tmp_path)
    return result, log.read_text() if log.exists() else ""


def test_uncaught_exceptions_of_any_thread_are_logged(tmp_path):
    result, log = _run(
        "import threading; t = threading.Thread(target=lambda: 1 / 0, name='trainer'); t.start(); "
        "t.join(); raise ValueError('boom')",
        tmp_path,
    )
    assert result.returncode == 1
    assert "unexpected error in thread trainer" in log and "ZeroDivisionError" in log
    assert "ValueError: boom" in log and "Traceback" in log


def test_a_hard_crash_leaves_its_stack_in_the_log(tmp_path):
    result, log = _run("import faulthandler; faulthandler._sigsegv()", tmp_path)
    assert result.returncode != 0
    assert "Fatal Python error: Segmentation fault" in log


def test_a_long_log_is_set_aside_at_the_next_start(tmp_path):
    from qlora_gui.core.app_log import rotate_log

    log = tmp_path / "qlora-studio.log"
    log.write_text("x" * 100)
    rotate_log(log, limit=50)
    assert not log.exists() and (tmp_path / "qlora-studio.log.1").read_text() == "x" * 100
    log.write_text("short")
    rotate_log(log, limit=50)
    assert log.read_text() == "short"
    rotate_log(tmp_path / "never-written.log")  # no log yet: nothing to do, and no error
