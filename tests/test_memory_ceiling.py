"""With gradient checkpointing, MLX's memory limit follows what a step needs: lower peaks, the same numbers."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from conftest import tiny_config, write_jsonl

from qlora_gui.core import memory
from qlora_gui.core.runs.run_folder import RunFolder
from qlora_gui.core.train import loop as loop_module
from qlora_gui.core.train.losses import ChunkedLoss
from qlora_gui.core.train.memory_ceiling import MARGIN, MemoryCeiling
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
            ceiling.before_step(positions)
        start = mx.get_active_memory()
        mx.reset_peak_memory()
        mx.eval(grad(h))
        peak = mx.get_peak_memory() - start
        if ceiling:
            ceiling.after_step()
    return peak


def test_the_ceiling_stops_queued_work_from_piling_up_and_is_put_back():
    before = mx.get_memory_limit()
    free = queued_loss_peak(None)
    ceiling = MemoryCeiling()
    held = queued_loss_peak(ceiling)
    ceiling.close()
    assert mx.get_memory_limit() == before
    chunk_bytes = 32 * 8_000 * 4
    # Measured on the CPU: 9.9 chunks' worth queued freely, 4.6 under the ceiling.
    assert held < free
    assert held <= MARGIN * ceiling.need_per_token * 256 + chunk_bytes


def test_a_limit_the_user_set_is_never_raised():
    before = mx.get_memory_limit()
    try:
        mx.set_memory_limit(mx.get_active_memory() + (1 << 20))
        ceiling = MemoryCeiling()
        ceiling.before_step(64)
        ceiling.need_per_token = 1e12  # a need far above the user's limit
        ceiling.measured_tokens = 64
        ceiling.before_step(64)
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


def test_a_checkpointed_run_trains_the_same_with_its_ceiling(tmp_path, demo_model, monkeypatch):
    rows = [{"prompt": f"Question {i}: what is {i} plus {i}?", "completion": f" {2 * i}"} for i in range(40)]
    data = write_jsonl(tmp_path / "data" / "train.jsonl", rows).parent
    limits: list[int] = []
    real_set = mx.set_memory_limit
    monkeypatch.setattr(mx, "set_memory_limit", lambda n: limits.append(n) or real_set(n))
    before = mx.get_memory_limit()

    def adapters(name: str) -> dict:
        cfg = tiny_config(demo_model, data, tmp_path / name, iters=5, grad_checkpoint=True, sample_answers=0)
        assert Trainer(cfg).run().__class__.__name__ == "Finished"
        return mx.load(str(RunFolder(tmp_path / name).adapters))

    held = adapters("held")
    assert mx.get_memory_limit() == before and limits[-1] == before  # put back at the end
    steps = limits[:-1]
    assert len(steps) == 5 and steps[0] < min(steps[1:])  # measured tight first, then a margin above
    monkeypatch.setattr(loop_module, "MemoryCeiling", lambda: None)
    free = adapters("free")
    assert held.keys() == free.keys()
    for k in held:
        np.testing.assert_array_equal(np.array(held[k]), np.array(free[k]))
