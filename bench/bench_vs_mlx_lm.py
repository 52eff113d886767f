"""Our trainer against `mlx_lm.lora` on identical work, side by side, on whatever device MLX uses here.

    .venv/bin/python bench/bench_vs_mlx_lm.py [--shape tiny|proxy|1b] [--dtypes fp32,q4,bf16] [--mask-prompt]
                                              [--iters 60] [--reps 2] [--batch 4] [--grad-checkpoint]
                                              [--no-fast-quant] [--mlx-lm-first] [--work DIR]

Shapes (random weights, built here; nothing downloads):
  tiny   Llama, hidden 256, 4 layers, vocab 1024 (float32; the 4-bit copy from it)
  proxy  Llama, hidden 256, 4 layers, vocab 128,256, tied embeddings (bfloat16): a large-vocabulary stand-in
  mid    Llama, hidden 1024, 8 layers, intermediate 2816, 8/4 heads, vocab 128,256, tied (float32: arithmetic-
         bound on a CPU; --dtypes bf16 where the machine has bfloat16 arithmetic)
  1b     Llama-3.2-1B shape: hidden 2048, 16 layers, intermediate 8192, 32/8 heads, vocab 128,256, tied (bfloat16)
Dtypes: fp32, bf16, q4 (a 4-bit copy made by mlx-lm's own converter from the shape's float model).

Both tools get the same model, data (../shared/data/wikisql; with --mask-prompt, chat rows made from it with
a few-shot system prompt, prompt masked), batch size, rank 8, scale 20, layers (all), learning rate (constant),
optimizer (Adam, no clipping), sequence cap, seed and steps, alternating A B A B. tok/s is the median of the
per-step reports after the first (steady state); peak is MLX's peak memory. mlx-lm runs through its own
`main()`, with a callback that records its reports.
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

SHAPES = {
    "tiny": dict(hidden_size=256, num_layers=4, intermediate_size=512, num_heads=4, num_kv_heads=2, dtype="float32"),
    "proxy": dict(
        hidden_size=256,
        num_layers=4,
        intermediate_size=512,
        num_heads=4,
        num_kv_heads=2,
        model_vocab_size=128_256,
        tie_word_embeddings=True,
        dtype="bfloat16",
    ),
    "mid": dict(
        hidden_size=1024,
        num_layers=8,
        intermediate_size=2816,
        num_heads=8,
        num_kv_heads=4,
        model_vocab_size=128_256,
        tie_word_embeddings=True,
        dtype="float32",
    ),
    "1b": dict(
        hidden_size=2048,
        num_layers=16,
        intermediate_size=8192,
        num_heads=32,
        num_kv_heads=8,
        model_vocab_size=128_256,
        tie_word_embeddings=True,
        dtype="bfloat16",
    ),
}

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
    if status != 0:
        print(proc.stderr.read().decode()[-3000:], file=sys.stderr)
    return time.perf_counter() - t0, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status)


def common_flags(model: Path, data: Path, a: argparse.Namespace) -> list[str]:
    return (
        [
            "--model",
            str(model),
            "--data",
            str(data),
            "--batch-size",
            str(a.batch),
            "--num-layers",
            "-1",
            "--iters",
            str(a.iters),
            "--learning-rate",
            str(a.lr),
            "--max-seq-length",
            str(a.max_len),
            "--seed",
            "0",
            "--steps-per-report",
            "1",
            "--steps-per-eval",
            str(a.iters),
            "--val-batches",
            str(a.val_batches),
            "--save-every",
            str(a.iters),
        ]
        + (["--mask-prompt"] if a.mask_prompt else [])
        + (["--grad-checkpoint"] if a.grad_checkpoint else [])
    )


def summary(tok_s: list[float], peak: float, wall: float, rss: int, val: float, code: int) -> dict:
    return {
        "tok_s": statistics.median(tok_s[1:] or tok_s),
        "peak": peak,
        "wall": wall,
        "rss": rss,
        "val_loss": val,
        "code": code,
    }


def run_mlx_lm(model: Path, data: Path, out: Path, a: argparse.Namespace, env: dict) -> dict:
    log = out / "mlx_lm.jsonl"
    cmd = [
        sys.executable,
        "-c",
        MLX_LM_CHILD,
        str(log),
        "--train",
        "--adapter-path",
        str(out / "adapters"),
        *common_flags(model, data, a),
    ]
    wall, rss, code = run_child(cmd, env)
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    train = [r for r in rows if r["kind"] == "train"]
    vals = [r for r in rows if r["kind"] == "val"]
    if not train:
        return summary([0.0], 0, wall, rss, float("nan"), code or 1)
    return summary(
        [r["tokens_per_second"] for r in train],
        max(r["peak_memory"] for r in train) * 1e9,
        wall,
        rss,
        vals[-1]["val_loss"] if vals else float("nan"),
        code,
    )


def run_ours(model: Path, data: Path, out: Path, a: argparse.Namespace, env: dict) -> dict:
    cfg = out / "constant_lr.yaml"
    cfg.write_text(f"lr_schedule: {{name: linear_schedule, arguments: [{a.lr}, {a.lr}, {a.iters}]}}\n")
    run_dir = out / "ours"
    cmd = [
        sys.executable,
        "-m",
        "qlora_gui",
        "train",
        "-c",
        str(cfg),
        "--adapter-path",
        str(run_dir),
        *common_flags(model, data, a),
        # mlx-lm's defaults, so both take the same optimizer steps: Adam, no gradient clipping
        "--optimizer",
        "adam",
        "--grad-clip",
        "0",
        "--sample-answers",  # mlx_lm.lora answers no prompts while training: the same work for both
        "0",
        *(["--no-fast-quant"] if a.no_fast_quant else []),
    ]
    wall, rss, code = run_child(cmd, env)
    metrics = run_dir / "metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.exists() else []
    steps = [r for r in rows if r["event"] == "step"]
    vals = [r for r in rows if r["event"] == "validation"]
    if not steps:
        return summary([0.0], 0, wall, rss, float("nan"), code or 1)
    return summary(
        [r["tokens_per_sec"] for r in steps],
        max(r["mlx_peak_gb"] for r in steps) * 1024**3,
        wall,
        rss,
        vals[-1]["val_loss"] if vals else float("nan"),
        code,
    )


def chat_data(folder: Path) -> Path:
    """WikiSQL as chat rows with a few-shot system prompt: long prompts, short answers (masked training)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {
        s: [json.loads(x)["text"] for x in (DATA / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "valid")
    }
    shots = "\n\n".join(rows["train"][-3:])
    system = (
        "You write one SQL query for a question about a table. Use only the columns listed; quote text "
        "values; answer with the query alone. Examples:\n\n" + shots
    )
    for split, texts in rows.items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for text in texts[:-3] if split == "train" else texts:
                question, answer = text.rsplit("\nA: ", 1)
                f.write(
                    json.dumps(
                        {
                            "messages": [
                                {"role": "system", "content": system},
                                {"role": "user", "content": question + "\nA:"},
                                {"role": "assistant", "content": answer},
                            ]
                        }
                    )
                    + "\n"
                )
    return folder


def device_line() -> str:
    import mlx.core as mx

    info = mx.device_info()
    return f"MLX {mx.__version__}, device {mx.default_device()} ({info.get('device_name', '?')})"


def ratio_line(label: str, key: str, ours: list[dict], theirs: list[dict], fmt: str, scale: float) -> str:
    ratios = [o[key] / t[key] if t[key] else float("nan") for o, t in zip(ours, theirs, strict=True)]
    mine, other = statistics.median(o[key] for o in ours), statistics.median(t[key] for t in theirs)
    return (
        f"  {label:<22}{fmt.format(mine / scale):>12}{fmt.format(other / scale):>14}"
        f"{statistics.median(ratios):>10.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--dtypes", default="q4,fp32", help="comma-separated: fp32, bf16, q4")
    ap.add_argument("--mask-prompt", action="store_true", help="chat rows with long prompts, prompt masked")
    ap.add_argument("--grad-checkpoint", action="store_true")
    ap.add_argument(
        "--no-fast-quant",
        action="store_true",
        help="ours with MLX's quantized kernels (what Metal runs) instead of dequantize + matmul",
    )
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--val-batches", type=int, default=-1, help="validation batches for both (-1: all)")
    ap.add_argument(
        "--mlx-lm-first",
        action="store_true",
        help="run mlx_lm.lora first in each pair (on CUDA the first run also pays for compiling kernels)",
    )
    ap.add_argument("--work", type=Path, help="folder for the built models, reused by later runs (default: a new one)")
    a = ap.parse_args()

    from mlx_lm import convert

    from qlora_gui.core.blas import openblas_library
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model

    tmp = a.work or Path(tempfile.mkdtemp())
    tmp.mkdir(parents=True, exist_ok=True)
    shape = dict(SHAPES[a.shape])
    dtypes = a.dtypes.split(",")
    models = {}
    for dtype in dtypes:
        float_dtype = {"fp32": "float32", "bf16": "bfloat16", "q4": shape["dtype"]}[dtype]
        folder = tmp / f"{a.shape}-{float_dtype}"
        if not folder.exists():
            build_demo_model(folder, DemoModelSpec(vocab_size=1024, **{**shape, "dtype": float_dtype}))
        if dtype == "q4":
            quantized = tmp / f"{a.shape}-q4"
            if not quantized.exists():
                convert(str(folder), mlx_path=str(quantized), quantize=True, q_bits=4, q_group_size=64)
            folder = quantized
        models[dtype] = folder
    data = chat_data(tmp / "chat") if a.mask_prompt else DATA
    env = {**os.environ, "QLORA_GUI_NO_BLAS_REEXEC": "1", "TOKENIZERS_PARALLELISM": "false"}
    blas = openblas_library()
    if blas:
        env["LD_PRELOAD"] = blas  # the same BLAS for both commands
    print(f"{time.strftime('%Y-%m-%d')}, {device_line()}, {os.cpu_count()} cores, BLAS: {blas or 'bundled'}")
    dims = {k: v for k, v in shape.items() if k != "dtype"}
    print(
        f"shape {a.shape} ({dims}); data: {'chat rows, prompt masked' if a.mask_prompt else 'wikisql text'}; "
        f"batch {a.batch}, {a.iters} steps, rank 8, all layers, lr {a.lr} constant, Adam, max length "
        f"{a.max_len}{', gradient checkpointing' if a.grad_checkpoint else ''}; {a.reps} alternating runs each; "
        f"ours with {'MLX quantized kernels' if a.no_fast_quant else 'the default quantized path'}"
    )
    for dtype, model in models.items():
        ours, theirs, loads = [], [], []
        for rep in range(a.reps):
            loads.append(os.getloadavg()[0])
            out = Path(tempfile.mkdtemp(prefix=f"{dtype}-{rep}-", dir=tmp))
            if a.mlx_lm_first:
                theirs.append(run_mlx_lm(model, data, out, a, env))
            ours.append(run_ours(model, data, out, a, env))
            if not a.mlx_lm_first:
                theirs.append(run_mlx_lm(model, data, out, a, env))
        print(f"\n{dtype}: {'':<17}{'qlora-gui':>12}{'mlx_lm.lora':>14}{'ratio (median, min-max)':>26}")
        for label, key, fmt, scale in (
            ("tok/s (steady state)", "tok_s", "{:,.0f}", 1),
            ("peak MLX GB", "peak", "{:.2f}", 1e9),
            ("peak RSS GB", "rss", "{:.2f}", 1e9),
            ("wall s", "wall", "{:.1f}", 1),
            ("final val loss", "val_loss", "{:.3f}", 1),
        ):
            print(ratio_line(label, key, ours, theirs, fmt, scale))
        loads.append(os.getloadavg()[0])
        print(f"  load average (1 min) at each pair's start and at the end: {', '.join(f'{x:.1f}' for x in loads)}")
        if any(r["code"] for r in ours + theirs):
            print(f"  exit codes: ours {[r['code'] for r in ours]}, mlx_lm {[r['code'] for r in theirs]}")


if __name__ == "__main__":
    main()
