"""Preference pairs per second, each pair's prompt computed once (prefix sharing) against whole rows.

    .venv/bin/python bench/bench_pairs.py [--mode dpo|orpo] [--hidden 256 --layers 4 --inter 512 --heads 4
        --kv-heads 2] [--dtype float32] [--batch 4] [--steps 12] [--rounds 2] [--work DIR]

Pairs from ../shared/data/wikisql: each row's table, columns and question is the prompt, its SQL the chosen
answer, the next row's SQL the rejected one. A random Llama of the given shape (built here with its own
tokenizer, LoRA rank 8 on all layers). Each round runs `--steps` optimizer steps of `--batch` pairs (the
trainer's `TrainStep` and `PreferenceLoss`) with whole rows, then with shared prefixes, on the same batches,
twice: the first pass compiles each batch shape (a long run meets each shape many times), the second is timed.
For DPO each timed step also measures its pairs' reference (the base's answer log-probabilities, adapters
off), as the trainer's lazy reference does in the first epoch. Reported: pairs/s of each (median step over
the rounds), their ratio, the positions each layout runs through the model, and the load average (the figure
is noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wikisql"
sys.path.insert(0, str(ROOT))


def write_pairs(folder: Path) -> Path:
    rows = [json.loads(line)["text"] for line in (DATA / "train.jsonl").read_text().splitlines() if line.strip()]
    split = [r.split("\nA: ", 1) for r in rows if "\nA: " in r]
    out = folder / "pairs"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.jsonl", "w") as f:
        for i, (prompt, answer) in enumerate(split):
            other = split[(i + 1) % len(split)][1]
            if other != answer:
                f.write(json.dumps({"prompt": prompt + "\nA:", "chosen": " " + answer, "rejected": " " + other}) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", default="dpo", choices=("dpo", "orpo"))
    for name, default in (("hidden", 256), ("layers", 4), ("inter", 512), ("heads", 4), ("kv-heads", 2)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path)
    a = ap.parse_args()

    from qlora_gui.core.config import TrainConfig
    from qlora_gui.core.data.batching import epoch_batches, make_batch
    from qlora_gui.core.data.dataset import check_data
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model
    from qlora_gui.core.model.loader import add_adapters, load_base
    from qlora_gui.core.model.model_files import load_tokenizer
    from qlora_gui.core.train.optimizer import build_optimizer
    from qlora_gui.core.train.preference import PreferenceLoss
    from qlora_gui.core.train.preference_mode import answer_logps
    from qlora_gui.core.train.step import TrainStep

    work = a.work or Path(tempfile.mkdtemp(prefix="bench_pairs_"))
    model_dir = work / f"llama_{a.hidden}_{a.layers}_{a.dtype}"
    if not (model_dir / "config.json").exists():
        corpus = [json.loads(line)["text"] for line in (DATA / "train.jsonl").read_text().splitlines()]
        spec = DemoModelSpec(
            vocab_size=1024,
            hidden_size=a.hidden,
            num_layers=a.layers,
            intermediate_size=a.inter,
            num_heads=a.heads,
            num_kv_heads=a.kv_heads,
            dtype=a.dtype,
            chat_template=False,
        )
        build_demo_model(model_dir, spec, corpus=corpus)
    tokenizer = load_tokenizer(model_dir)
    split = check_data(write_pairs(work) / "train.jsonl", tokenizer, valid_fraction=0).encoded["train"]
    batches = epoch_batches(split.lengths, a.batch, 0, 0)[: a.steps]
    cfg = TrainConfig(model="m", data="d", num_layers=a.layers, train_mode=a.mode, learning_rate=1e-5)
    cfg.lora_parameters = {"rank": 8, "scale": 20.0, "dropout": 0.0}

    def run(shared: bool) -> tuple[list[float], int]:
        model = load_base(model_dir).model
        add_adapters(model, cfg)
        loss = PreferenceLoss(a.mode, 0.1)
        loss.bind(model)
        if shared and not loss.shares_prefix:
            raise SystemExit("this model does not share prefixes")
        loss.shares_prefix = shared
        split.share_prefix = shared
        split.reference = np.zeros(len(split.tokens), dtype=np.float32) if a.mode == "dpo" else None
        optimizer = build_optimizer(cfg, 1000)
        step = TrainStep(model, optimizer, loss)
        for idx in batches:  # a first pass compiles each shape (a long run meets each shape many times)
            step([make_batch(split, idx)])
        mx.synchronize()
        times, positions = [], 0
        for idx in batches:
            t0 = time.perf_counter()
            if a.mode == "dpo":
                assert split.reference is not None
                split.reference[np.concatenate([idx, idx + split.pairs])] = answer_logps(model, split, idx, loss.head)
            batch = make_batch(split, idx)
            step([batch])
            mx.synchronize()
            times.append(time.perf_counter() - t0)
            if batch.shared is not None:
                positions += batch.shared.prompts.size + batch.shared.continuations.size
            else:
                positions += batch.inputs.size
        return times, positions

    results: dict[bool, list[float]] = {False: [], True: []}
    positions: dict[bool, int] = {}
    for _ in range(a.rounds):
        for shared in (False, True):
            times, positions[shared] = run(shared)
            results[shared] += times
    load = os.getloadavg()
    per_s = {k: a.batch / statistics.median(v) for k, v in results.items()}
    print(f"MLX {mx.__version__} on {mx.default_device()}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(
        f"{a.mode.upper()}, {a.hidden}x{a.layers} {a.dtype}, batch {a.batch} pairs, {a.steps} steps x {a.rounds} rounds"
    )
    for shared, label in ((False, "whole rows"), (True, "shared prefix")):
        print(f"  {label:14s} {per_s[shared]:7.2f} pairs/s   positions through the model {positions[shared]:,}")
    print(
        f"  shared/whole: {per_s[True] / per_s[False]:.2f}x pairs/s, "
        f"{positions[True] / positions[False]:.2f}x positions"
    )


if __name__ == "__main__":
    main()
