"""`qlora-gui train --nodes 2`: two ranks on this machine under the real mlx.launch (ring backend over localhost) on
the tiny model train the adapter of one process with the same global batch; a killed rank stops the run with a
message naming it, and the run resumes exactly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import mlx.core as mx
import psutil
import pytest
from conftest import close, fixture_texts, tiny_config, write_jsonl

from qlora_gui.core.config import TrainConfig
from qlora_gui.core.distributed.event_lines import parse_event_line
from qlora_gui.core.events import Finished, RunStarted, StepReport
from qlora_gui.core.runs import checkpoints as ckpt
from qlora_gui.core.train.trainer import Trainer

pytestmark = pytest.mark.slow  # end-to-end: real ranks under mlx.launch


@pytest.fixture(scope="module")
def uneven_data(tmp_path_factory):
    """41 rows of unequal length: batches of 5 split 3 + 2 over two ranks, and a last batch of one row."""
    folder = tmp_path_factory.mktemp("uneven")
    write_jsonl(folder / "valid.jsonl", [{"text": t} for t in fixture_texts(8, seed=12)])
    return write_jsonl(folder / "train.jsonl", [{"text": t} for t in fixture_texts(41, seed=11)]).parent


def settings(demo_model, data, run_dir, **kw) -> TrainConfig:
    ranks = dict(batch_size=5, grad_accumulation_steps=2, sample_answers=0)
    return tiny_config(demo_model, data, run_dir, **{**ranks, **kw})


def one_process(cfg: TrainConfig, stop_at: int | None = None):
    """A run in this process; with `stop_at`, stopped (with a checkpoint) after that step."""

    def callback(e):
        if isinstance(e, StepReport) and e.step == stop_at:
            trainer.stop()

    trainer = Trainer(cfg, callback)
    return trainer.run()


def adapters(run_dir, step: int | None = None) -> dict:
    where = run_dir / "checkpoints" / f"{step:07d}" if step is not None else run_dir
    return mx.load(str(where / "adapters.safetensors"))


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    worst = max(float(mx.abs(a[k] - b[k]).max()) for k in a)
    assert worst < close(1e-5), worst


def rank_process(launcher_pid: int, rank: int) -> psutil.Process:
    for p in psutil.Process(launcher_pid).children(recursive=True):
        try:
            if p.environ().get("MLX_RANK") == str(rank) and "train" in p.cmdline():
                return p
        except psutil.Error:
            continue
    raise AssertionError(f"no rank {rank} under the launcher")


# 9 global batches an epoch, 2 per step: 5 steps, the last of one batch. A checkpoint every epoch, a budget long
# enough that the learning-rate schedule is the same whichever step a run stops at.
EPOCH, STOP_AT = 5, 40


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, demo_model, uneven_data):
    """`qlora-gui train --nodes 2` (the real mlx.launch); rank 1 is killed once the first checkpoint is saved."""
    root = tmp_path_factory.mktemp("killed")
    config = root / "lora.yaml"
    config.write_text(settings(demo_model, uneven_data, root / "run", iters=1000, save_every=EPOCH).to_yaml())
    cli = subprocess.Popen(
        [sys.executable, "-m", "qlora_gui", "train", "-c", str(config), "--nodes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = root / "run" / "checkpoints" / f"{EPOCH:07d}"
    deadline = time.monotonic() + 120
    while not first.is_dir() and cli.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if not first.is_dir():
        cli.send_signal(signal.SIGINT)  # every rank stops; the run's own words say why it got no further
        pytest.fail(f"no checkpoint was saved: {cli.communicate(timeout=60)[1][-3000:]}")
    os.kill(rank_process(cli.pid, 1).pid, signal.SIGKILL)
    killed = time.monotonic()
    out, err = cli.communicate(timeout=60)
    seconds = time.monotonic() - killed
    straight = one_process(settings(demo_model, uneven_data, root / "straight", iters=1000, save_every=EPOCH,
                                    keep_last=STOP_AT // EPOCH), STOP_AT)  # fmt: skip
    assert isinstance(straight, Finished) and straight.step == STOP_AT
    events = [e for e in map(parse_event_line, (root / "run" / "metrics.jsonl").read_text().splitlines()) if e]
    return root, cli.returncode, out, err, seconds, events


def test_two_local_ranks_train_as_one_process(killed_run):
    root, _, out, _, _, events = killed_run
    latest = ckpt.latest_checkpoint(root / "run")
    assert latest is not None and latest.step >= EPOCH
    # Every step so far (uneven rows per rank, one rank idle on the one-row batch, accumulation) as one process's.
    assert_same(adapters(root / "run", latest.step), adapters(root / "straight", latest.step))
    started = next(e for e in events if isinstance(e, RunStarted))
    assert len(started.machines) == 2 and started.steps_per_epoch == EPOCH
    reports = [e for e in events if isinstance(e, StepReport)]
    assert [r.step for r in reports[:EPOCH]] == list(range(1, EPOCH + 1))
    assert all(len(r.rank_tokens_per_sec) == 2 for r in reports)
    assert sum(reports[-1].rank_tokens_per_sec) == pytest.approx(reports[-1].tokens_per_sec)
    assert "Machines: 2 (rank 0: " in out and "s | ranks " in out  # the terminal says so too


def test_a_killed_rank_stops_every_rank_and_the_run_resumes_exactly(killed_run, demo_model, uneven_data):
    root, code, _, err, seconds, _ = killed_run
    assert code == 1 and seconds < 30
    latest = ckpt.latest_checkpoint(root / "run")
    assert latest is not None and latest.step < STOP_AT
    assert f"error: rank 1 on this machine ({socket.gethostname()}) was killed (SIGKILL)" in err, err
    assert f"The last checkpoint, step {latest.step} ({latest.path}), is intact" in err
    assert f"--adapter-path {root / 'run'} --resume --nodes 2)" in err
    ckpt.load_checkpoint(latest.path)  # intact: every file reads back
    # One process goes on from it (the same global batches, no longer split) and matches a straight run.
    cfg = settings(demo_model, uneven_data, root / "run", iters=1000, save_every=EPOCH, resume=True)
    resumed = one_process(cfg, STOP_AT)
    assert isinstance(resumed, Finished) and resumed.step == STOP_AT
    assert_same(adapters(root / "run", STOP_AT), adapters(root / "straight", STOP_AT))
