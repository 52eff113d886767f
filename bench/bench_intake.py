"""Data intake at scale: time and memory to check a 100,000-row file.

    .venv/bin/python bench/bench_intake.py [--rows 100000]

Each measurement runs in a fresh process, so its peak RSS is its own. Memory is
reported as the growth of peak RSS over the process after imports, against the
file's size.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from qlora_gui.core.data.dataset import check_data
from qlora_gui.core.model.model_files import load_tokenizer
path, model = sys.argv[1], sys.argv[2]
tok = load_tokenizer(model) if model != "-" else None
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
result = check_data(path, tok, mask_prompt=(model != "-" and "chat" in path))
secs = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"secs": secs, "grow_kb": peak - base, "usable": result.report.usable,
                  "rows": sum(s.rows for s in result.report.splits.values())}))
"""


def make_files(folder: Path, rows: int) -> dict[str, Path]:
    rng = random.Random(0)
    words = "select count name city team year score from where table the of and what how many".split()

    def sentence(n):
        return " ".join(rng.choice(words) for _ in range(n))

    files = {"text": folder / "text.jsonl", "chat": folder / "chat.jsonl"}
    with files["text"].open("w") as f:
        for _ in range(rows):
            f.write(json.dumps({"text": sentence(rng.randint(20, 120))}) + "\n")
    with files["chat"].open("w") as f:
        for _ in range(rows):
            f.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "system", "content": "answer in SQL"},
                            {"role": "user", "content": sentence(rng.randint(10, 60))},
                            {"role": "assistant", "content": sentence(rng.randint(5, 40))},
                        ]
                    }
                )
                + "\n"
            )
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sys.path.insert(0, str(ROOT))
        from qlora_gui.core.model.demo_model import build_demo_model

        model = build_demo_model(tmp / "model")
        files = make_files(tmp, args.rows)
        print(f"{args.rows:,} rows per file; machine: {subprocess.getoutput('nproc')} cores")
        print(f"{'file':<6} {'size MB':>8} {'tokenizer':<10} {'seconds':>8} {'RSS growth MB':>14} {'x file':>7}")
        for name, path in files.items():
            size = path.stat().st_size
            for tok in ("-", str(model)):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(path), tok], capture_output=True, text=True, cwd=ROOT, check=True
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                assert r["usable"] and r["rows"] == args.rows
                grow = r["grow_kb"] * 1024
                print(
                    f"{name:<6} {size / 1e6:>8.1f} {'none' if tok == '-' else 'demo BPE':<10} {r['secs']:>8.2f} "
                    f"{grow / 1e6:>14.0f} {grow / size:>7.1f}"
                )


if __name__ == "__main__":
    main()
