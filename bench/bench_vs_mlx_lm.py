"""Our trainer against `mlx_lm.lora` on identical work, side by side.

    .venv/bin/python bench/bench_vs_mlx_lm.py [--iters 60] [--reps 2]

Builds a small random-weight Llama (full precision) and a 4-bit copy made with
mlx-lm's own converter, then runs `mlx_lm lora` and `qlora-gui train` on the
same model, data (../shared/data/wikisql), batch size, LoRA rank and layers,
learning rate (constant), optimizer (Adam, no clipping), sequence cap, seed and
number of trained rows, with no gradient accumulation, alternating A B A B.
Both run with the same BLAS (OpenBLAS when installed).

mlx-lm runs through its own `main()`; a callback records its reports as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wikisql"
sys.path.insert(0, str(ROOT))

MLX_LM_CHILD = r"""
import json, sys
import mlx_lm.lora as lora
from mlx_lm.tuner.callbacks import TrainingCallback
out = open(sys.argv[1], "w")
class Record(TrainingCallback):
    def on_train_loss_report(self, info): out.write(json.dumps({"kind": "train", **info}) + "\n"); out.flush()
    def on_val_loss_report(self, info): out.write(json.dumps({"kind": "val", **info}) + "\n"); out.flush()
lora.get_reporting_callbacks = lambda *a, **k: Record()
sys.argv = ["mlx_lm.lora", *sys.argv[2:]]
lora.main()
"""


def run_child(cmd: list[str], env: dict) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in bytes and exit code of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        print(proc.stderr.read().decode()[-2000:], file=sys.stderr)
    return wall, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status)


def run_mlx_lm(model: Path, out: Path, a: argparse.Namespace, env: dict) -> dict:
    log = out / "mlx_lm.jsonl"
    cmd = [sys.executable, "-c", MLX_LM_CHILD, str(log), "--model", str(model), "--train", "--data", str(DATA),
           "--batch-size", str(a.batch), "--num-layers", str(a.layers), "--iters", str(a.iters),
           "--learning-rate", str(a.lr), "--max-seq-length", str(a.max_len), "--seed", "0",
           "--adapter-path", str(out / "adapters"), "--steps-per-report", "1", "--steps-per-eval", str(a.iters),
           "--val-batches", "-1", "--save-every", str(a.iters)]
    wall, rss, code = run_child(cmd, env)
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    vals = [r for r in rows if r["kind"] == "val"]
    return {"tok_s": statistics.mean(r["tokens_per_second"] for r in train[1:]), "wall": wall, "rss": rss,
            "peak": max(r["peak_memory"] for r in train) * 1e9, "first_loss": train[0]["train_loss"],
            "val_loss": vals[-1]["val_loss"], "code": code}


def run_ours(model: Path, out: Path, a: argparse.Namespace, env: dict, extra: list[str]) -> dict:
    cfg = out / "constant_lr.yaml"
    cfg.write_text(f"lr_schedule: {{name: linear_schedule, arguments: [{a.lr}, {a.lr}, {a.iters}]}}\n")
    run_dir = out / "ours"
    cmd = [sys.executable, "-m", "qlora_gui", "train", "-c", str(cfg), "--model", str(model), "--data", str(DATA),
           "--batch-size", str(a.batch), "--num-layers", str(a.layers), "--iters", str(a.iters),
           "--learning-rate", str(a.lr), "--max-seq-length", str(a.max_len), "--seed", "0",
           "--adapter-path", str(run_dir), "--steps-per-report", "1", "--steps-per-eval", str(a.iters),
           "--val-batches", "-1", "--save-every", str(a.iters),
           # mlx-lm's defaults, so both take the same optimizer steps: Adam, no gradient clipping
           "--optimizer", "adam", "--grad-clip", "0", *extra]
    wall, rss, code = run_child(cmd, env)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["event"] == "step"]
    vals = [r for r in rows if r["event"] == "validation"]
    return {"tok_s": statistics.mean(r["tokens_per_sec"] for r in steps[1:]), "wall": wall, "rss": rss,
            "peak": max(r["mlx_peak_gb"] for r in steps) * 1024**3, "first_loss": steps[0]["loss"],
            "val_loss": vals[-1]["val_loss"], "code": code}


def summarize(name: str, ours: list[dict], theirs: list[dict]) -> None:
    def stat(key, rows):
        return statistics.median(r[key] for r in rows)

    print(f"\n{name}")
    print(f"  {'':<22}{'qlora-gui':>14}{'mlx_lm.lora':>14}{'ratio (median, min-max)':>28}")
    for key, label, fmt, scale in (("tok_s", "trained tokens/s", "{:.0f}", 1), ("wall", "wall time (s)", "{:.1f}", 1),
                                   ("peak", "peak MLX memory (MB)", "{:.0f}", 1e6), ("rss", "peak RSS (MB)", "{:.0f}", 1e6),
                                   ("first_loss", "first-step loss", "{:.3f}", 1), ("val_loss", "final val loss", "{:.3f}", 1)):
        ratios = [o[key] / t[key] for o, t in zip(ours, theirs)]
        print(f"  {label:<22}{fmt.format(stat(key, ours) / scale):>14}{fmt.format(stat(key, theirs) / scale):>14}"
              f"{statistics.median(ratios):>12.2f} ({min(ratios):.2f}-{max(ratios):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=256)
    a = ap.parse_args()

    from mlx_lm import convert

    from qlora_gui.core.blas import openblas_library
    from qlora_gui.core.demo_model import DemoModelSpec, build_demo_model

    tmp = Path(tempfile.mkdtemp())
    fp = build_demo_model(tmp / "fp32", DemoModelSpec(hidden_size=a.hidden, num_layers=a.layers, vocab_size=1024,
                                                      intermediate_size=2 * a.hidden, num_heads=4, num_kv_heads=2))
    q4 = tmp / "q4"
    convert(str(fp), mlx_path=str(q4), quantize=True, q_bits=4, q_group_size=64)
    env = {**os.environ, "QLORA_GUI_NO_BLAS_REEXEC": "1", "TOKENIZERS_PARALLELISM": "false"}
    blas = openblas_library()
    if blas:
        env["LD_PRELOAD"] = blas  # the same BLAS for both commands
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, BLAS: {blas or 'bundled reference BLAS'}; "
          f"model: Llama hidden {a.hidden}, {a.layers} layers, vocab 1024; data: wikisql; batch {a.batch}, "
          f"{a.iters} steps ({a.iters * a.batch} rows), rank 8, {a.layers} layers, lr {a.lr} constant, "
          f"max length {a.max_len}; {a.reps} alternating runs each")
    for name, model in (("4-bit base (QLoRA)", q4), ("full-precision base (LoRA)", fp)):
        ours, theirs = [], []
        for rep in range(a.reps):
            out = tmp / f"{model.name}-{rep}"
            out.mkdir()
            ours.append(run_ours(model, out, a, env, []))
            theirs.append(run_mlx_lm(model, out, a, env))
        summarize(name, ours, theirs)


if __name__ == "__main__":
    main()
