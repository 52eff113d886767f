"""Data intake at scale: time and memory to check and encode a large file, cold and from the token cache.

    .venv/bin/python bench/bench_intake.py [--rows 1000000] [--formats text,chat] [--turns 3] [--no-tokenizer]
        [--batches N] [--workers N]

Rows are wikisql rows (/work/shared/data/wikisql, or the bundled sample) made distinct (each names its own
table), so nothing is shared between rows that real data would not share. Each measurement runs
`check_data` in a fresh process: "cold" with an empty token cache, "warm" the same check again. Reported:
wall seconds, CPU seconds (user + system, all threads and the encoding worker processes: the tokenizer's batch
encoder runs on every core, and a large file is encoded in one worker process per core), the process's peak RSS
and its largest worker's, and the machine's load average (the machine may be shared: wall time is only comparable at the
same load). After the warm check, training batches are made from the memory-mapped arrays (`--batches`):
reading them costs no memory that grows with the data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIKISQL = Path("/work/shared/data/wikisql/train.jsonl")

CHILD = r"""
import json, resource, sys, time
from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.model.model_files import load_tokenizer
path, model = sys.argv[1], sys.argv[2]
tok = load_tokenizer(model) if model != "-" else None
def cpu_now():
    me, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + workers.ru_utime + workers.ru_stime
t, cpu = time.perf_counter(), cpu_now()
result = check_data(path, tok, mask_prompt=(model != "-" and "chat" in path))
secs, cpu = time.perf_counter() - t, cpu_now() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
batches_secs = 0.0
if result.encoded and int(sys.argv[3]):  # batches as training makes them, from the (memory-mapped) arrays
    from qlora_gui.core.data.batching import epoch_batches, make_batch
    t = time.perf_counter()
    train = result.encoded["train"]
    for idx in epoch_batches(train.lengths, 8, seed=0, epoch=1)[: int(sys.argv[3])]:
        make_batch(train, idx)
    batches_secs = time.perf_counter() - t
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"secs": secs, "cpu": cpu, "peak_kb": peak, "worker_peak_kb": worker_peak,
                  "usable": result.report.usable,
                  "rows": sum(s.rows for s in result.report.splits.values()),
                  "batches_secs": batches_secs, "after_batches_kb": after}))
"""


def _texts() -> list[str]:
    source = WIKISQL if WIKISQL.is_file() else ROOT / "qlora_gui" / "resources" / "sample_data" / "train.jsonl"
    return [json.loads(line)["text"] for line in source.read_text().splitlines() if line.strip()]


def make_files(folder: Path, rows: int, formats: list[str], turns: int = 1) -> dict[str, Path]:
    """`rows` distinct rows per format, from wikisql rows with their table renamed row by row; a chat row is a
    system turn and `turns` questions with their answers (each from its own wikisql row)."""
    texts = _texts()
    rng = random.Random(0)
    files = {}

    def distinct(i: int) -> str:
        text = texts[rng.randrange(len(texts))]
        head, _, rest = text.partition("\n")
        return f"table: 1-{i}-{rng.randrange(100)}\n{rest}" if head.startswith("table:") else f"{i} {text}"

    for fmt in formats:
        path = files.setdefault(fmt, folder / f"{fmt}.jsonl")
        with path.open("w") as f:
            for i in range(rows):
                if fmt == "text":
                    f.write(json.dumps({"text": distinct(i)}) + "\n")
                    continue
                chat = [{"role": "system", "content": "Answer with one SQL query."}]
                for _ in range(turns):
                    question, _, answer = distinct(i).rpartition("\nA: ")
                    chat += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
                f.write(json.dumps({"messages": chat}) + "\n")
    return files


def run(path: Path, model: str, cache: Path, batches: int = 0) -> dict:
    env = dict(os.environ, QLORA_GUI_TOKEN_CACHE=str(cache))
    command = ["nice", sys.executable, "-c", CHILD, str(path), model, str(batches)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--formats", default="text,chat")
    ap.add_argument("--no-tokenizer", action="store_true", help="check only (lengths in characters)")
    ap.add_argument("--batches", type=int, default=2000, help="batches made from the warm check's arrays")
    ap.add_argument("--turns", type=int, default=1, help="questions and answers per chat row")
    ap.add_argument("--workers", help="encoding worker processes (QLORA_GUI_ENCODE_WORKERS; default: one per core)")
    ap.add_argument("--folder", type=Path, help="where the files and the cache go (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(ROOT))
        from qlora_gui.core.model.demo_model import build_demo_model

        model = "-" if args.no_tokenizer else str(build_demo_model(folder / "model"))
        if args.workers is not None:
            os.environ["QLORA_GUI_ENCODE_WORKERS"] = args.workers
        files = make_files(folder, args.rows, args.formats.split(","), args.turns)
        print(
            f"{args.rows:,} rows per file; {os.cpu_count()} cores; tokenizer: {'none' if model == '-' else 'demo BPE'}"
        )
        print(f"{'file':<5} {'MB':>6} {'run':<5} {'wall s':>7} {'CPU s':>7} {'RSS MB':>6} {'worker MB':>9} {'load':>5}")
        for name, path in files.items():
            cache = folder / f"cache-{name}"
            for label in ("cold", "warm"):
                r = run(path, model, cache, args.batches if label == "warm" else 0)
                assert r["usable"] and r["rows"] == args.rows, r
                print(
                    f"{name:<5} {path.stat().st_size / 1e6:>6.0f} {label:<5} {r['secs']:>7.1f} {r['cpu']:>7.1f} "
                    f"{r['peak_kb'] / 1024:>6.0f} {r['worker_peak_kb'] / 1024:>9.0f} {os.getloadavg()[0]:>5.1f}",
                    flush=True,
                )
            if r["batches_secs"]:
                print(
                    f"      then {args.batches} training batches of 8 rows from the cached arrays: "
                    f"{r['batches_secs']:.1f} s, peak RSS {r['after_batches_kb'] / 1024:.0f} MB",
                    flush=True,
                )


if __name__ == "__main__":
    main()
