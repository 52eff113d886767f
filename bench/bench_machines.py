"""One process against N ranks on this machine (`qlora-gui train --nodes N`), the same run side by side.

    .venv/bin/python bench/bench_machines.py MODEL DATA [--nodes 2] [--iters 100] [--repeat 2] [-- TRAIN FLAGS...]

Each round runs the one-process command and then the --nodes one (alternating, so a machine that gets busier
or quieter affects both alike) and records the wall time of the whole command (start to exit: the ranks' start,
the check and the launcher included), the time the trainer reports from its first to its last step, the mean of
the reported tokens/s, and for the ranks each rank's share. Both runs train the same global batches, so their
adapters agree (to 1e-5); the table says so. It prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qlora_gui.core.distributed.event_lines import parse_event_line  # noqa: E402
from qlora_gui.core.events import Finished, StepReport  # noqa: E402


def one_run(model: str, data: str, run_dir: Path, nodes: int, iters: int, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "qlora_gui", "train", "--model", model, "--data", data, "--adapter-path",
               str(run_dir), "--iters", str(iters), "--sample-answers", "0", *extra]  # fmt: skip
    if nodes > 1:
        command += ["--nodes", str(nodes)]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} failed:\n{done.stderr[-2000:]}")
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()  # rank 0's every event
    return {"wall": wall, "dir": run_dir, "events": [e for e in map(parse_event_line, lines) if e is not None]}


def figures(run: dict) -> dict:
    reports = [e for e in run["events"] if isinstance(e, StepReport)]
    finished = next(e for e in run["events"] if isinstance(e, Finished))
    shares = [r.rank_tokens_per_sec for r in reports if r.rank_tokens_per_sec]
    split = [statistics.mean(s[i] for s in shares) for i in range(len(shares[0]))] if shares else []
    return {
        "wall": run["wall"],
        "train": finished.elapsed,
        "tok_s": statistics.mean(r.tokens_per_sec for r in reports),
        "ranks": " + ".join(f"{x:.0f}" for x in split),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--repeat", type=int, default=2)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    args.extra = argv[cut + 1 :]  # more `qlora-gui train` flags
    import mlx.core as mx

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for nodes in (1, args.nodes):
                run = one_run(args.model, args.data, Path(tmp) / f"{r}-{nodes}", nodes, args.iters, args.extra)
                rows.append((nodes, figures(run), run["dir"]))
        first = {n: d for n, _, d in rows[:2]}
        a = mx.load(str(first[1] / "adapters.safetensors"))
        b = mx.load(str(first[args.nodes] / "adapters.safetensors"))
        worst = max(float(mx.abs(a[k] - b[k]).max()) for k in a)
    print("| processes | whole command (s) | first to last step (s) | tokens/s | each rank's tokens/s |")
    print("|---|---|---|---|---|")
    for nodes, f, _ in rows:
        print(f"| {nodes} | {f['wall']:.1f} | {f['train']:.1f} | {f['tok_s']:.0f} | {f['ranks'] or '–'} |")
    print(f"\nlargest difference between the two adapters: {worst:.1e}")


if __name__ == "__main__":
    main()
