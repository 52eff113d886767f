"""Do our GGUF files run in llama.cpp as the model runs in MLX? Greedy tokens and top-1 agreement.

Not in CI: it needs llama-cpp-python, which compiles llama.cpp (about ten minutes). Run it from
a venv that has both this project and llama-cpp-python:

    python bench/check_gguf.py                 # trains a demo run, then checks every type and arch
    python bench/check_gguf.py --run RUN       # a run of your own (llama-family base)

For each file: 20 chat prompts, the same token ids fed to both (the tokenizer is checked on its
own: llama.cpp's tokenization of the prompt text against the Hugging Face tokenizer's), 16 greedy
tokens from each, and the top-1 agreement of llama.cpp's next-token choice with MLX's at every
position of MLX's greedy continuation. Targets: F16 identical greedy text, Q8_0 >= 95% top-1.
The LoRA adapter GGUF is checked applied by llama.cpp to an F16 GGUF of the base, against MLX's
base + adapter. Other architectures are tiny random models (tests/gguf_models.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

GREEDY_TOKENS = 16


def prompts(n: int = 20) -> list[str]:
    from conftest import fixture_texts

    return fixture_texts(n, seed=42)


def mlx_greedy(model, tokens: list[int], n: int) -> list[int]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    steps = generate_step(mx.array(tokens), model, max_tokens=n, sampler=lambda logits: mx.argmax(logits, -1))
    return [int(token) for token, _ in steps]


def llama_logits(llm, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)])


def show(name: str, r: dict) -> tuple[str, dict]:
    """Print a table row as soon as it is measured (a slow machine still shows what it has)."""
    print(f"| {name} | {r['greedy_identical']} | {r['top1']:.1%} | {r.get('tokenizer', '—')} |", flush=True)
    return name, r


def compare(llm, model, token_lists: list[list[int]]) -> dict:
    """MLX's greedy continuation, then llama.cpp's next-token choice at each of its positions (one pass):
    llama.cpp's own greedy text is the same exactly when it agrees at every position."""
    same_greedy, agree, total = 0, 0, 0
    for tokens in token_lists:
        ours = np.array(mlx_greedy(model, tokens, GREEDY_TOKENS))
        theirs = llama_logits(llm, tokens + ours.tolist())[len(tokens) - 1 : -1].argmax(-1)
        same_greedy += bool((ours == theirs).all())
        agree += int((ours == theirs).sum())
        total += len(ours)
    return {"greedy_identical": f"{same_greedy}/{len(token_lists)}", "top1": agree / total}


def open_llama(path: Path, lora: Path | None = None):
    from llama_cpp import Llama

    kw = {"lora_path": str(lora)} if lora else {}
    return Llama(model_path=str(path), n_ctx=512, logits_all=True, verbose=False, n_threads=2, seed=0, **kw)


def tokenizer_agreement(llm, tokenizer, texts: list[str]) -> str:
    same = sum(
        llm.tokenize(t.encode(), add_bos=False, special=True) == tokenizer.encode(t, add_special_tokens=False)
        for t in texts
    )
    return f"{same}/{len(texts)}"


def chat_tokens(tokenizer, texts: list[str]) -> list[list[int]]:
    return [
        list(tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True)) for t in texts
    ]


def train_demo_run(root: Path) -> Path:
    from conftest import fixture_texts, tiny_config, write_jsonl

    from qlora_gui.core.model.demo_model import build_demo_model
    from qlora_gui.core.train.trainer import Trainer

    model = build_demo_model(root / "demo")
    rows = [{"prompt": t, "completion": "select name from table"} for t in fixture_texts(48, seed=5)]
    cfg = tiny_config(model, write_jsonl(root / "pc.jsonl", rows), root / "run", iters=60, learning_rate=3e-3)
    Trainer(cfg, lambda e: None).run()
    return root / "run"


def check_run(run: Path, work: Path) -> list[tuple[str, dict]]:
    from qlora_gui.core.after.export import ExportRequest, export
    from qlora_gui.core.after.fuse import fuse_in_memory
    from qlora_gui.core.after.gguf_export import GGUF_TYPES, write_gguf
    from qlora_gui.core.inference.adapters import default_adapter, load_with_adapter

    adapter = default_adapter(run)
    fused = fuse_in_memory(adapter, dequantize=True)
    tok = fused.loaded.tokenizer
    texts = prompts()
    token_lists = chat_tokens(tok, texts)
    rows = []
    for key in ("f16", "q8_0", "q4_0"):
        result = export(ExportRequest(adapter, "gguf", work / f"run-{key}", gguf_type=key))
        llm = open_llama(result.files[0])
        row = compare(llm, fused.net, token_lists) | {"tokenizer": tokenizer_agreement(llm, tok._tokenizer, texts)}
        rows.append(show(f"{run.name} fused {GGUF_TYPES[key].label}", row))
    # The adapter alone, applied by llama.cpp to an F16 GGUF of the base.
    import mlx.core as mx

    base = fused.loaded.path
    base_config = json.loads((base / "config.json").read_text())
    weights = mx.load(str(base / "model.safetensors"))
    base_gguf = write_gguf(base, base_config, weights, work / "base-F16.gguf", GGUF_TYPES["f16"])
    lora = export(ExportRequest(adapter, "adapter-gguf", work / "lora")).files[0]
    with_adapter = load_with_adapter(None, adapter)
    rows.append(show("LoRA adapter on F16 base", compare(open_llama(base_gguf, lora), with_adapter.model, token_lists)))
    return rows


def check_architectures(work: Path) -> list[tuple[str, dict]]:
    from gguf_models import ARCHS, build_arch_model
    from mlx_lm import load

    from qlora_gui.core.after.gguf_export import GGUF_TYPES, write_gguf

    rows = []
    for model_type in ARCHS:
        folder = work / model_type
        config, weights, args = build_arch_model(model_type, folder)
        import mlx.core as mx

        mx.save_safetensors(str(folder / "model.safetensors"), weights)
        model, tok = load(str(folder))
        texts = prompts()
        token_lists = chat_tokens(tok, texts)
        for key in ("f16", "q8_0"):
            path = write_gguf(
                folder, config, weights, work / f"{model_type}-{key}.gguf", GGUF_TYPES[key], model_args=args
            )
            llm = open_llama(path)
            row = compare(llm, model, token_lists) | {"tokenizer": tokenizer_agreement(llm, tok._tokenizer, texts)}
            rows.append(show(f"{model_type} (random) {GGUF_TYPES[key].label}", row))
    return rows


def measure_rates(work: Path) -> None:
    """Seconds to export a ~35M-parameter demo model in each format: the rates behind the dialog's time estimate."""
    import time

    from conftest import fixture_texts, tiny_config, write_jsonl

    from qlora_gui.core.after.export import ExportRequest, export
    from qlora_gui.core.inference.adapters import default_adapter
    from qlora_gui.core.model.demo_model import DemoModelSpec, build_demo_model
    from qlora_gui.core.train.trainer import Trainer

    spec = DemoModelSpec(vocab_size=8000, hidden_size=512, num_layers=8, intermediate_size=1408, num_heads=8)
    model = build_demo_model(work / "medium", spec, corpus=fixture_texts(400))
    rows = [{"text": t} for t in fixture_texts(16)]
    Trainer(tiny_config(model, write_jsonl(work / "t.jsonl", rows), work / "mrun", iters=1), lambda e: None).run()
    adapter = default_adapter(work / "mrun")
    print("| format | size | seconds | MB/s |")
    print("|---|---|---|---|")
    for fmt, key in (("mlx", "q8_0"), ("gguf", "f16"), ("gguf", "q8_0"), ("gguf", "q4_0")):
        start = time.perf_counter()
        result = export(ExportRequest(adapter, fmt, work / f"rate-{fmt}-{key}", gguf_type=key))
        took = time.perf_counter() - start
        label = fmt if fmt == "mlx" else f"gguf {key}"
        print(f"| {label} | {result.size_bytes / 1e6:.0f} MB | {took:.1f} | {result.size_bytes / 1e6 / took:.0f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="a run folder (default: train a demo run)")
    p.add_argument("--skip-archs", action="store_true", help="only the run, not the tiny models of each architecture")
    p.add_argument("--rate", action="store_true", help="only time each format's export (no llama-cpp-python needed)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.rate:
            measure_rates(work)
            return 0
        run = Path(args.run) if args.run else train_demo_run(work)
        print("| file | greedy identical (20 prompts) | top-1 agreement | llama.cpp tokenizer = HF |")
        print("|---|---|---|---|", flush=True)
        check_run(run, work)
        if not args.skip_archs:
            check_architectures(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
