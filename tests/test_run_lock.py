"""One owner per run folder: a second trainer is refused with the owner named; a killed owner frees it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_trainer import make_config, run

from qlora_gui.core.errors import UserError
from qlora_gui.core.events import Failed, Finished
from qlora_gui.core.runs.run_admin import rename_run
from qlora_gui.core.runs.run_lock import RunLock, folder_owner

ROOT = Path(__file__).resolve().parents[1]
HOLD = (
    "import sys; from qlora_gui.core.runs.run_lock import RunLock; RunLock.acquire(sys.argv[1], 'the CLI'); "
    "print('held', flush=True); sys.stdin.read()"
)


def test_a_held_folder_is_refused_by_name_and_a_killed_owner_frees_it(tmp_path):
    folder = tmp_path / "run"
    owner = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert owner.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"in use by the CLI \(process {owner.pid} on "):
            RunLock.acquire(folder)
        assert folder_owner(folder).pid == owner.pid
        with pytest.raises(UserError, match="in use by the CLI"):
            rename_run(folder, "elsewhere")
    finally:
        owner.kill()  # SIGKILL: no clean-up runs, and the system still lets go of the lock
        owner.wait()
    assert folder_owner(folder) is None
    lock = RunLock.acquire(folder)
    assert folder_owner(folder) is not None  # seen from this process too (the app's own run)
    lock.release()
    assert folder_owner(folder) is None and rename_run(folder, "elsewhere").is_dir()


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_a_second_trainer_on_a_folder_in_use_is_refused_and_changes_nothing(tmp_path, demo_model, text_data):
    folder = tmp_path / "run"
    _, first, _ = run(make_config(demo_model, text_data, folder, iters=2))
    assert isinstance(first, Finished) and folder_owner(folder) is None  # released at the end
    before = (folder / "adapters.safetensors").read_bytes()
    lock = RunLock.acquire(folder, "a window of QLoRA Studio")
    try:
        _, second, _ = run(make_config(demo_model, text_data, folder, iters=4, resume=True))
    finally:
        lock.release()
    assert isinstance(second, Failed) and second.exit_code == 2
    assert "in use by a window of QLoRA Studio" in second.message
    assert (folder / "adapters.safetensors").read_bytes() == before
    _, third, _ = run(make_config(demo_model, text_data, folder, iters=4, resume=True))  # free again: resumes
    assert isinstance(third, Finished) and third.step == 4


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_a_run_killed_mid_way_is_found_and_resumes_to_the_straight_runs_adapter(tmp_path, demo_model, text_data):
    import os
    import shlex
    import signal

    import mlx.core as mx
    import numpy as np
    from conftest import close

    from qlora_gui.core.runs.run_admin import interrupted_runs
    from qlora_gui.core.runs.run_plan import resume_command

    kw = dict(iters=8, save_every=4, lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.1})
    _, straight, _ = run(make_config(demo_model, text_data, tmp_path / "straight", **kw))
    assert isinstance(straight, Finished) and straight.step == 8

    runs = tmp_path / "runs"
    cfg = make_config(demo_model, text_data, runs / "killed", **kw)
    (tmp_path / "killed.yaml").write_text(cfg.to_yaml())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "QLORA_GUI_NO_BLAS_REEXEC": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "qlora_gui", "train", "-c", str(tmp_path / "killed.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
    )
    for line in child.stdout:  # kill it as soon as its step-4 checkpoint is on disk, mid-run
        if "checkpoints/0000004" in line:
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    assert child.returncode == -signal.SIGKILL
    found = interrupted_runs(runs)
    assert [(r.name, point.step) for r, point in found] == [("killed", 4)]

    # The message for a new run into that folder gives the exact command; the command resumes it.
    _, refused, _ = run(make_config(demo_model, text_data, runs / "killed", **kw))
    command = resume_command(runs / "killed")
    assert isinstance(refused, Failed) and command in refused.message
    resumed = subprocess.run(
        [sys.executable, "-m", "qlora_gui", *shlex.split(command)[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    a = mx.load(str(tmp_path / "straight" / "adapters.safetensors"))
    b = mx.load(str(runs / "killed" / "adapters.safetensors"))
    for k in a:
        np.testing.assert_allclose(np.array(b[k]), np.array(a[k]), atol=close(1e-5), rtol=0)
    assert interrupted_runs(runs) == []
