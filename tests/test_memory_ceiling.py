"""With gradient checkpointing, MLX's memory limit follows what a step needs: lower peaks, the same numbers."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import tiny_config, write_jsonl

from qlora_gui.core import memory
from qlora_gui.core.runs.run_folder import RunFolder
from qlora_gui.core.train import loop as loop_module
from qlora_gui.core.train.losses import ChunkedLoss
from qlora_gui.core.train.memory_ceiling import MARGIN, MemoryCeiling, ceiling_by_default
from qlora_gui.core.train.trainer import Trainer


def queued_loss_peak(ceiling: MemoryCeiling | None) -> int:
    """Peak above the start of a chunked loss's forward and backward (8 chunks of 32 positions, 8k vocabulary):
    each chunk's logits are queued long before the CPU or GPU reaches them unless the limit stops it."""
    vocab, hidden, positions = 8_000, 64, 256
    head = nn.Linear(hidden, vocab, bias=False)
    loss = ChunkedLoss(nn.Module(), head, vocab)
    loss.chunk = 32
    h = mx.random.normal((positions, hidden), key=mx.random.key(0))
    t = mx.random.randint(0, vocab, (positions,), key=mx.random.key(1))
    w = mx.ones((positions,))
    grad = mx.grad(lambda h: loss._cross_entropy(h, t, w, True))
    mx.eval(head.parameters(), h, t, w, grad(h))  # warm: nothing is allocated for the first time below
    for _ in range(2 if ceiling else 1):  # the first step with a ceiling measures, the second is held by it
        mx.clear_cache()
        if ceiling:
            ceiling.before_step(positions, positions)
        start = mx.get_active_memory()
        mx.reset_peak_memory()
        mx.eval(grad(h))
        peak = mx.get_peak_memory() - start
        if ceiling:
            ceiling.after_step()
    return peak


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_the_ceiling_stops_queued_work_from_piling_up_and_is_put_back():
    before = mx.get_memory_limit()
    free = queued_loss_peak(None)
    ceiling = MemoryCeiling()
    held = queued_loss_peak(ceiling)
    assert mx.get_memory_limit() == before  # held through a step only
    assert ceiling.measurements == 1
    chunk_bytes = 32 * 8_000 * 4
    # Measured on the CPU: 9.9 chunks' worth queued freely, 4.6 under the ceiling.
    assert held < free
    assert held <= MARGIN * ceiling.need + chunk_bytes


def test_only_a_larger_step_is_measured_again_and_a_user_limit_is_never_raised():
    before = mx.get_memory_limit()
    limits: list[int] = []
    try:
        mx.set_memory_limit(mx.get_active_memory() + (64 << 20))
        ceiling = MemoryCeiling()
        for tokens, width in ((256, 64), (128, 32), (256, 64), (512, 64), (256, 128), (512, 128)):
            ceiling.before_step(tokens, width)
            limits.append(mx.get_memory_limit())
            mx.eval(mx.ones((tokens, width * 64)) * 2)  # a "step" whose need grows with its size
            ceiling.after_step()
            assert mx.get_memory_limit() == ceiling.user_limit
        assert ceiling.measurements == 3  # the first, 512 tokens, width 128; not the smaller nor the last
        assert all(limit <= ceiling.user_limit for limit in limits)
        ceiling.need = 1 << 40  # a need far above the user's limit
        ceiling.before_step(64, 8)
        assert mx.get_memory_limit() == ceiling.user_limit
        ceiling.close()
    finally:
        mx.set_memory_limit(before)


def test_the_reported_peak_survives_a_new_measurement():
    mx.eval(mx.zeros((1 << 20,)))  # 4 MB once
    high = memory.sample().mlx_peak
    memory.reset_peak()
    assert mx.get_peak_memory() < high <= memory.sample().mlx_peak
    memory.reset_peak(keep_run_peak=False)
    assert memory.sample().mlx_peak == mx.get_peak_memory()


def test_a_run_without_a_memory_limit_drops_the_last_runs():
    before = mx.get_memory_limit()
    try:
        memory.apply_limits(None)
        default = mx.get_memory_limit()
        memory.apply_limits(1.5)
        assert mx.get_memory_limit() == int(1.5 * memory.GB)
        memory.apply_limits(None)
        assert mx.get_memory_limit() == default
    finally:
        mx.set_memory_limit(before)


@pytest.mark.slow  # end-to-end: a real run of many steps
def test_a_checkpointed_run_trains_the_same_with_its_ceiling(tmp_path, demo_model, monkeypatch):
    rows = [{"prompt": f"Question {i}: what is {i} plus {i}?", "completion": f" {2 * i}"} for i in range(40)]
    data = write_jsonl(tmp_path / "data" / "train.jsonl", rows).parent
    limits: list[int] = []
    real_set = mx.set_memory_limit
    monkeypatch.setattr(mx, "set_memory_limit", lambda n: limits.append(n) or real_set(n))
    before = mx.get_memory_limit()

    def train(name: str) -> tuple[Trainer, dict]:
        cfg = tiny_config(demo_model, data, tmp_path / name, iters=5, grad_checkpoint=True, sample_answers=0)
        trainer = Trainer(cfg)
        assert trainer.run().__class__.__name__ == "Finished"
        return trainer, mx.load(str(RunFolder(tmp_path / name).adapters))

    trainer, held = train("held")
    assert mx.get_memory_limit() == before  # put back at the end
    ceiling = trainer.loop.ceiling if trainer.loop else None
    if ceiling_by_default():
        assert ceiling is not None and ceiling.need > 0
        # 40 rows in batches of 4, one width: the first step alone is measured (its limit the memory in use),
        # the others run a margin above its need, and each step gives the limit back when it is done.
        assert ceiling.measurements == 1
        during = limits[1:-1:2]  # after apply_limits: (step limit, limit given back) per step, then close
        assert len(during) == 5 and all(limits[i] == before for i in range(2, 11, 2))
        assert all(during[0] + MARGIN * ceiling.need * 0.5 < limit < before for limit in during[1:])
    else:
        assert ceiling is None  # off on GPUs until measured there
    monkeypatch.setattr(loop_module, "MemoryCeiling", lambda: None)
    _, free = train("free")
    assert held.keys() == free.keys()
    for k in held:
        np.testing.assert_array_equal(np.array(held[k]), np.array(free[k]))
