"""Our GRPO against mlx-lm-lora's on the same model, data, reward and settings, on whatever device MLX uses here.

    .venv/bin/python bench/bench_grpo.py [--peer /work/venvs/mlxlmlora/bin/python] [--iters 8] [--batch 2]
                                         [--group 8] [--max-tokens 16] [--beta 0.1] [--work DIR]

The model is a random-weight Llama (hidden 256, 4 layers, float32), built here; nothing downloads. The task:
prompts of random words with the system turn "Answer in one word.", each row's answer the word the base most
often starts with; the reward pays 1 when the answer contains that word (our built-in `contains`, and the same
function registered in mlx-lm-lora's reward registry). Both tools get LoRA on every layer (rank 8, scale 10),
Adam at a constant learning rate without clipping, the same batch of prompts, group size, answer length,
temperature, beta and seed. mlx-lm-lora (installed in its own virtual environment, never one of our
dependencies) runs through its own command line; we run through ours.

Reported per tool: seconds per step (median over the steps after the first), generated tokens per second
(answer tokens sampled per second of step time), MLX's peak memory, and the held-out mean reward after the
steps, measured for both adapters by one evaluator here (each held-out prompt answered G times from a fixed
seed with mlx-lm's model and adapter loading).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE = dict(hidden_size=256, num_layers=4, intermediate_size=512, num_heads=4, num_kv_heads=2, dtype="float32")
WORDS = (
    "table columns select where from count name year city team score player number date what which how many is "
    "the of in for and list show"
).split()
SYSTEM = "Answer in one word."
PEER_REWARDS = """
from mlx_lm_lora.trainer.grpo_reward_functions import register_reward_function


@register_reward_function()
def contains_answer(prompts, completions, answer, types=None):
    norm = lambda s: " ".join(str(s).split()).lower()
    return [1.0 if a and norm(a) in norm(c) else 0.0 for c, a in zip(completions, answer)]
"""


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(n)]


def build(work: Path, temperature: float) -> tuple[Path, Path, str]:
    """The model, the data folder and the rewarded word (the base's likeliest first word at this temperature)."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load

    from qlora_gui.core.data.chat_template import render_chat
    from qlora_gui.core.data.encode import encode_chat_text
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model

    model_dir = work / "model"
    if not (model_dir / "config.json").exists():
        build_demo_model(model_dir, DemoModelSpec(**SHAPE), corpus=texts(400, 0))
    prompts = texts(64, 3)
    model, tok = load(str(model_dir))
    probs = 0
    for p in prompts[:8]:
        turns = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}]
        ids = encode_chat_text(tok, render_chat(tok, turns, add_generation_prompt=True))
        probs = probs + mx.softmax(model(mx.array(ids)[None])[0, -1].astype(mx.float32) / temperature)
    word = next(w for i in np.argsort(-np.array(probs)) if (w := tok.decode([int(i)]).strip()).isalpha() and len(w) > 1)
    data = work / "data"
    data.mkdir(exist_ok=True)
    rows = [{"prompt": p, "answer": word, "system": SYSTEM} for p in prompts]
    for name, part in (("train", rows[:48]), ("valid", rows[48:])):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return model_dir, data, word


def run_peer(peer: str, model: Path, data: Path, out: Path, a: argparse.Namespace) -> dict:
    rewards = out / "peer_rewards.py"
    rewards.write_text(PEER_REWARDS)
    config = out / "peer.yaml"
    config.write_text(json.dumps({"lora_parameters": {"rank": 8, "dropout": 0.0, "scale": 10.0}}))
    cmd = [peer, "-m", "mlx_lm_lora.train", "--config", str(config), "--model", str(model), "--train"]
    cmd += ["--data", str(data), "--train-mode", "grpo", "--train-type", "lora", "--optimizer", "adam"]
    cmd += ["--iters", str(a.iters), "--batch-size", str(a.batch), "--group-size", str(a.group)]
    cmd += ["--max-completion-length", str(a.max_tokens), "--temperature", str(a.temperature)]
    cmd += ["--beta", str(a.beta), "--learning-rate", str(a.lr), "--steps-per-report", "1"]
    cmd += ["--steps-per-eval", str(a.iters + 1), "--val-batches", "1", "--seed", "0", "--num-layers", "-1"]
    cmd += ["--reward-functions-file", str(rewards), "--reward-functions", "contains_answer"]
    cmd += ["--adapter-path", str(out / "peer_adapter"), "--save-every", str(a.iters)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=out)
    if done.returncode:
        raise SystemExit(f"mlx-lm-lora failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    speeds = [float(x) for x in re.findall(r"Speed: ([\d.]+) it/s", done.stdout)]
    lengths = [float(x) for x in re.findall(r"Avg tokens: ([\d.]+)", done.stdout)]
    peaks = [float(x) for x in re.findall(r"Memory: ([\d.]+)GB", done.stdout)]
    seconds = [1 / s for s in speeds[1:]] or [1 / s for s in speeds]
    tokens = [n * a.batch * a.group / (1 / s) for n, s in zip(lengths[1:], speeds[1:], strict=True)]
    return {
        "seconds_per_step": statistics.median(seconds),
        "generated_tokens_per_s": statistics.median(tokens) if tokens else float("nan"),
        "peak_gb": max(peaks),
        "adapter": out / "peer_adapter",
    }


def run_ours(model: Path, data: Path, out: Path, a: argparse.Namespace) -> dict:
    run = out / "ours_run"
    cmd = [sys.executable, "-m", "qlora_gui", "train", "--model", str(model), "--data", str(data)]
    cmd += ["--adapter-path", str(run), "--train-mode", "grpo", "--optimizer", "adam", "--grad-clip", "0"]
    cmd += ["--iters", str(a.iters), "--batch-size", str(a.batch), "--group-size", str(a.group)]
    cmd += ["--max-completion-length", str(a.max_tokens), "--temperature", str(a.temperature)]
    cmd += ["--beta", str(a.beta), "--learning-rate", str(a.lr), "--warmup-steps", "0", "--steps-per-report", "1"]
    cmd += ["--steps-per-eval", str(a.iters + 1), "--val-batches", "1", "--seed", "0", "--num-layers", "-1"]
    cmd += ["--lora-rank", "8", "--lora-scale", "10", "--sample-answers", "0", "--save-every", str(a.iters)]
    cmd += ["--reward-functions", "contains"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"ours failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    rewards = [e for e in events if e["event"] == "rewards" and e["split"] == "train"]
    seconds = [1 / e["steps_per_sec"] for e in steps[1:]] or [1 / e["steps_per_sec"] for e in steps]
    tokens = [
        r["completion_length"] * r["groups"] * a.group * s["steps_per_sec"]
        for r, s in zip(rewards[1:], steps[1:], strict=True)
    ]
    return {
        "seconds_per_step": statistics.median(seconds),
        "generated_tokens_per_s": statistics.median(tokens) if tokens else float("nan"),
        "peak_gb": max(e["mlx_peak_gb"] for e in steps),
        "adapter": run,
    }


def held_out_reward(model: Path, adapter: Path | None, data: Path, word: str, a: argparse.Namespace) -> float:
    """The mean reward of G answers to each held-out prompt, sampled from a fixed seed (the same evaluator for
    both adapters, and for the base)."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load

    from qlora_gui.core.data.chat_template import render_chat
    from qlora_gui.core.data.encode import encode_chat_text
    from qlora_gui.core.train.grpo_mode import sample_group
    from qlora_gui.core.train.rewards import normalized

    loaded, tok = load(str(model), adapter_path=str(adapter) if adapter else None)
    loaded.eval()
    mx.random.seed(1234)
    scores = []
    eos = sorted(tok.eos_token_ids)
    for line in (data / "valid.jsonl").read_text().splitlines():
        row = json.loads(line)
        turns = [{"role": "system", "content": row["system"]}, {"role": "user", "content": row["prompt"]}]
        ids = np.array(encode_chat_text(tok, render_chat(tok, turns, add_generation_prompt=True)))
        tokens, lengths = sample_group(loaded, ids, a.group, a.max_tokens, a.temperature, 1.0, eos)
        for j in range(a.group):
            said = tok.decode([int(t) for t in tokens[j, : lengths[j]] if int(t) not in eos])
            scores.append(float(normalized(word) in normalized(said)))
    return float(np.mean(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", default="/work/venvs/mlxlmlora/bin/python", help="python of mlx-lm-lora's venv")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--work", type=Path, help="folder for the model and the runs (default: a new one)")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-grpo-"))
    work.mkdir(parents=True, exist_ok=True)
    model, data, word = build(work, a.temperature)
    import mlx.core as mx

    print(f"device: {mx.default_device()}; model: {SHAPE}; rewarded word: {word!r}; {vars(a)}")
    base = held_out_reward(model, None, data, word, a)
    results = {}
    for name, runner in (("mlx-lm-lora", lambda out: run_peer(a.peer, model, data, out, a)),
                         ("qlora-gui", lambda out: run_ours(model, data, out, a))):  # fmt: skip
        out = work / name
        shutil.rmtree(out, ignore_errors=True)  # a run folder is never continued by accident
        out.mkdir()
        r = runner(out)
        r["held_out_reward"] = held_out_reward(model, r.pop("adapter"), data, word, a)
        results[name] = r
    print(f"held-out mean reward of the base: {base:.3f}")
    print(f"| tool | s/step | generated tok/s | peak MLX memory | held-out reward after {a.iters} steps |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['seconds_per_step']:.3f} | {r['generated_tokens_per_s']:.0f} | {r['peak_gb']:.3f} GB | "
            f"{r['held_out_reward']:.3f} |"
        )
    (work / "bench_grpo.json").write_text(json.dumps({"base": base, **results}, indent=2))


if __name__ == "__main__":
    main()
