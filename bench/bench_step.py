"""One training step, ours against mlx-lm's, on the same batch, in one process: time and peak memory.

    .venv/bin/python bench/bench_step.py [--hidden 2048 --layers 2 --inter 8192 --heads 32 --kv-heads 8]
        [--vocab 128256] [--dtype float32|bfloat16] [--batch 8] [--len 96] [--steps 20] [--rounds 3]
        [--grad-checkpoint] [--q4 [--fast-quant]] [--chunk N] [--only ours|mlx_lm]
        [--limit-above-weights GB | --ceiling] [--work DIR]

`bench_vs_mlx_lm.py` runs both command lines on a dataset; there each tool draws its own batches, so a peak
depends on which long batch a tool met. Here both steps get the very same full-width batch (every position
trained), the model is random, and the two alternate in rounds: each round builds a tool's model, LoRA
(rank 8, scale 20, all layers, no dropout) and Adam, runs a warm-up step (compiles), then `--steps` steps;
it reports the median step time and MLX's peak memory above the weights. mlx-lm's step is its trainer's
(`default_loss`, `nn.value_and_grad`, one `mx.compile`d step with the update, `mx.eval` of the state);
ours is `TrainStep` with what the trainer picks: its loss, and with `--grad-checkpoint` the small loss chunks
and, on the CPU, the memory ceiling (`core/train/memory_ceiling.py`; `--ceiling` forces it on any device).
Many thin layers (`--hidden 64 --layers 16 --vocab 1024`) weigh per-operation overhead; wide layers show the
activations' memory. `--limit-above-weights` sets MLX's memory limit for ours by hand, to see what queued
work costs in memory and saves in time.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from qlora_gui.core.memory import reset_peak, sample  # noqa: E402  (after the path)


def build(folder: Path, a: argparse.Namespace) -> None:
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model

    spec = DemoModelSpec(
        vocab_size=1024,
        model_vocab_size=a.vocab,
        hidden_size=a.hidden,
        num_layers=a.layers,
        intermediate_size=a.inter,
        num_heads=a.heads,
        num_kv_heads=a.kv_heads,
        tie_word_embeddings=a.vocab > 50_000,
        dtype=a.dtype,
    )
    build_demo_model(folder, spec)


def adapted(folder: Path, a: argparse.Namespace) -> nn.Module:
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load

    model, _ = load(str(folder))
    if a.q4:  # as `mlx_lm convert -q` does: every Linear and the embedding, 4 bits, groups of 64
        nn.quantize(model, group_size=64, bits=4)
    model.freeze()
    linear_to_lora_layers(model, len(model.layers), {"rank": 8, "scale": 20.0, "dropout": 0.0})
    mx.eval(model.parameters())  # quantizing is lazy: the float weights must be gone before "weights" is read
    model.train()
    return model


def mlx_lm_steps(model: nn.Module, tokens: mx.array, a: argparse.Namespace) -> list[float]:
    from mlx_lm.tuner.trainer import default_loss, grad_checkpoint

    if a.grad_checkpoint:
        grad_checkpoint(model.layers[0])  # patches the layer's class: `main` puts it back after the round
    optimizer = optim.Adam(learning_rate=1e-5)
    state = [model.state, optimizer.state, mx.random.state]
    lvg = nn.value_and_grad(model, default_loss)
    lengths = mx.array([[0, tokens.shape[1]]] * tokens.shape[0])

    @partial(mx.compile, inputs=state, outputs=state)
    def step(batch: mx.array, lengths: mx.array) -> tuple[mx.array, mx.array]:
        (loss, toks), grad = lvg(model, batch, lengths)
        optimizer.update(model, grad)
        return loss, toks

    times = []
    for _ in range(a.steps + 1):
        t0 = time.perf_counter()
        loss, toks = step(tokens, lengths)
        mx.eval(state, loss, toks)
        times.append(time.perf_counter() - t0)
    return times


def our_steps(model: nn.Module, tokens: mx.array, a: argparse.Namespace) -> list[float]:
    from qlora_gui.core.data.batching import Batch
    from qlora_gui.core.model.fast_quant import use_fast_quantized_layers
    from qlora_gui.core.model.loader import use_grad_checkpoint
    from qlora_gui.core.train.losses import chunked_loss_for
    from qlora_gui.core.train.memory_ceiling import MemoryCeiling, ceiling_by_default, step_shape
    from qlora_gui.core.train.step import TrainStep

    if a.fast_quant:
        use_fast_quantized_layers(model)
    loss_fn, path = chunked_loss_for(model, memory_first=a.grad_checkpoint)
    if a.chunk and hasattr(loss_fn, "chunk"):
        loss_fn.chunk = a.chunk
    if a.verbose:
        print(f"  ours: {path}{f', overridden to {a.chunk}' if a.chunk else ''}")
    if a.grad_checkpoint:
        use_grad_checkpoint(model)
    b, t = tokens.shape
    inputs = np.array(tokens[:, :-1])
    batch = Batch(
        inputs=inputs,
        positions=np.arange(b * (t - 1), dtype=np.int32),
        targets=np.array(tokens[:, 1:]).reshape(-1),
        weights=np.ones(b * (t - 1), dtype=np.float32),
    )
    limit = mx.get_memory_limit()
    if a.limit_above_weights is not None:
        mx.set_memory_limit(mx.get_active_memory() + int(a.limit_above_weights * 1e9))
    step = TrainStep(model, optim.Adam(learning_rate=1e-5), loss_fn)
    # As the trainer: a ceiling under gradient checkpointing where it is on by default; --ceiling forces it.
    wanted = a.ceiling or (a.grad_checkpoint and ceiling_by_default())
    ceiling = MemoryCeiling() if wanted and a.limit_above_weights is None else None
    times = []
    for _ in range(a.steps + 1):
        t0 = time.perf_counter()
        if ceiling:
            ceiling.before_step(*step_shape([batch]))
        step([batch])
        if ceiling:
            ceiling.after_step()
        mx.eval(step.state)
        times.append(time.perf_counter() - t0)
    mx.set_memory_limit(limit)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in (("hidden", 2048), ("layers", 2), ("inter", 8192), ("heads", 32), ("kv-heads", 8)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--vocab", type=int, default=128_256)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--len", type=int, default=96, help="tokens per row (every one trained)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--grad-checkpoint", action="store_true")
    ap.add_argument("--q4", action="store_true", help="a 4-bit base (MLX's quantized kernels in both)")
    ap.add_argument("--fast-quant", action="store_true", help="ours: dequantize + matmul for the 4-bit base")
    ap.add_argument("--chunk", type=int, default=0, help="our loss's positions per chunk (0: the default)")
    ap.add_argument(
        "--limit-above-weights", type=float, help="ours: MLX's memory limit at the weights plus this many GB"
    )
    ap.add_argument(
        "--ceiling", action="store_true", help="ours: the memory ceiling, on any device, with or without checkpointing"
    )
    ap.add_argument("--work", type=Path, help="folder for the built model, reused by later runs")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--only", choices=("ours", "mlx_lm"), help="run one tool (for a profiler)")
    a = ap.parse_args()
    shape = f"h{a.hidden}-l{a.layers}-i{a.inter}-a{a.heads}-{a.kv_heads}-v{a.vocab}-{a.dtype}"
    folder = (a.work or Path(tempfile.mkdtemp())) / f"step-{shape}"
    if not (folder / "config.json").exists():
        build(folder, a)
    tokens = mx.array(np.random.default_rng(0).integers(1, 1000, size=(a.batch, a.len + 1)), dtype=mx.int32)
    print(f"MLX {mx.__version__} on {mx.default_device()}; {vars(a)}")
    tools = {"mlx_lm": mlx_lm_steps, "ours": our_steps}
    if a.only:
        tools = {a.only: tools[a.only]}
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in tools}
    for _ in range(a.rounds):
        for name, run in tools.items():
            gc.collect()
            mx.clear_cache()
            model = adapted(folder, a)
            layer_class = type(model.layers[0])
            call = layer_class.__call__
            weights = mx.get_active_memory()
            reset_peak(keep_run_peak=False)
            times = run(model, tokens, a)
            layer_class.__call__ = call
            peak = sample().mlx_peak
            results[name].append((statistics.median(times[1:]), (peak - weights) / 1e9, peak / 1e9))
            del model
    print(f"{'':8}{'step ms':>10}{'tok/s':>10}{'peak GB':>10}{'above weights':>15}")
    med = {k: [statistics.median(r[i] for r in rows) for i in range(3)] for k, rows in results.items()}
    for name, (secs, above, peak) in med.items():
        print(f"{name:8}{secs * 1e3:10.1f}{a.batch * a.len / secs:10.0f}{peak:10.3f}{above:15.3f}")
    if len(med) == 2:
        ours, theirs = med["ours"], med["mlx_lm"]
        print(
            f"ours/mlx_lm: speed {theirs[0] / ours[0]:.2f}x, peak {ours[2] / theirs[2]:.2f}x, "
            f"above the weights {ours[1] / theirs[1]:.2f}x"
        )


if __name__ == "__main__":
    main()
