"""Kernels per optimizer step, ours against mlx-lm's trainer step, by primitive kind, from the lazy graph.

    .venv/bin/python bench/bench_kernels.py [--layers 16 --hidden 128 --inter 256 --heads 32 --kv-heads 8]
        [--vocab 512] [--batch 8] [--len 96] [--chunk 261] [--dtypes bf16,q4] [--grad-clip 0]
        [--json FILE]

On a big GPU a LoRA step of a 1B model is bound by per-kernel overhead, not arithmetic, so the number of
kernels a step launches sets its time (issue 27). This builds one optimizer step of each tool on the same
model and batch, never evaluates it, and counts the primitive nodes of the step's graph as `mx.compile` left
them (after its simplification and fusion: a fused elementwise chain is one `Compiled...` node), minus the
views, which launch nothing (reshape, transpose, slice, broadcast, as_strided, squeeze, expand_dims,
stop_gradient, depends, split). `Concatenate` launches a copy per input on every MLX backend: it is also
counted that way, in "launches".

mlx-lm's step is its trainer's: `default_loss` (full logits), `nn.value_and_grad`, one `mx.compile`d step
with the optimizer's update (Adam at a constant rate, its default). Ours is `TrainStep` as the trainer builds
it: our adapters (`add_adapters`), our optimizer and schedule (AdamW with warmup and cosine, the default),
the chunked loss with `--chunk` positions per chunk (261: the GPU's chunk for a 128,256 vocabulary), clipping
at `--grad-clip` (the app's default is 1.0; mlx_lm.lora has none, hence 0 here by default).

Two counts: "cpu graph" is the graph as MLX builds it here, where `mx.fast.rms_norm` and `mx.fast.rope` have no
CPU kernel and expand into their fallbacks (about 30 nodes per block, the same in both tools); "gpu" counts them
as they launch on a GPU (Metal and CUDA have fused kernels for both and for their gradients): one kernel forward
and one backward per call. Attention stays a fallback in both counts: MLX uses its fused attention only outside
gradient tracing.

The count depends on the structure (layers, projections, chunks, positions), not on the widths: the defaults
are the 1B layer structure (16 layers, 32/8 heads, LoRA rank 8 on all 7 projections, batch 8 x 96) at small
widths so it builds in seconds; `--hidden 2048 --inter 8192 --vocab 128256` gives the same counts.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VIEWS = {
    "Reshape",
    "Transpose",
    "Slice",
    "Broadcast",
    "BroadcastAxes",
    "AsStrided",
    "Squeeze",
    "ExpandDims",
    "StopGradient",
    "Depends",
    "Split",
    "Flatten",
    "Unflatten",
    "View",
}
_NODE = re.compile(r'^\{ (\d+) \[label ="([^"]+)", shape=rectangle\]; \}$')
_EDGE = re.compile(r'^"?([^" ]+)"? -> "?([^" ]+)"?$')


def count_kernels(outputs: list[mx.array], gpu: bool = False) -> dict[str, Any]:
    """Primitive nodes of the outputs' lazy graph by kind (fused elementwise chains as one 'Compiled'), and
    the launches they make (a Concatenate makes one copy per input). `gpu`: a custom function's node, which
    only hands on its inner outputs, launches nothing either."""
    buf = io.StringIO()
    mx.export_to_dot(buf, *outputs)
    labels: dict[str, str] = {}
    inputs: Counter[str] = Counter()
    for line in buf.getvalue().splitlines():
        node = _NODE.match(line)
        if node:
            labels[node.group(1)] = node.group(2)
            continue
        edge = _EDGE.match(line)
        if edge and edge.group(2) in labels:
            inputs[edge.group(2)] += 1  # an array flowing into a primitive node
    kinds: Counter[str] = Counter()
    launches = 0
    for node, label in labels.items():
        kind = "Compiled" if label.startswith("Compiled") else label
        if kind in VIEWS or (gpu and kind == "CustomTransforms"):
            continue
        kinds[kind] += 1
        launches += inputs[node] if kind == "Concatenate" else 1
    return {"kernels": sum(kinds.values()), "launches": launches, "by_kind": dict(sorted(kinds.items()))}


def _one_kernel_each_way(x: mx.array, *_: Any, **__: Any) -> mx.array:
    """A stand-in for a fused GPU op of x (the output's shape is x's): one kernel forward, one backward (a scan,
    which `mx.compile` does not fuse with its neighbours, as a fused GPU kernel is not)."""

    @mx.custom_function
    def op(x: mx.array) -> mx.array:
        return mx.cummax(x, axis=-1)

    @op.vjp
    def op_vjp(primals: Any, cotangent: Any, output: Any) -> Any:
        return mx.cummax(cotangent, axis=-1)

    return op(x)  # type: ignore[no-any-return]


def gpu_fast_ops() -> Any:
    """Patch `mx.fast.rms_norm` and `mx.fast.rope` with one-kernel stand-ins (for counting only); returns a
    function that puts them back."""
    saved = mx.fast.rms_norm, mx.fast.rope
    mx.fast.rms_norm, mx.fast.rope = _one_kernel_each_way, _one_kernel_each_way

    def restore() -> None:
        mx.fast.rms_norm, mx.fast.rope = saved

    return restore


def build_model(a: argparse.Namespace, dtype: str) -> nn.Module:
    """The layer structure asked for, random weights, tied embedding as Llama 3.2 1B; q4: every Linear and
    the embedding at 4 bits in groups of 64, as `mlx_lm convert -q` does."""
    from mlx_lm.models.llama import Model, ModelArgs

    args = ModelArgs(
        model_type="llama",
        hidden_size=a.hidden,
        num_hidden_layers=a.layers,
        intermediate_size=a.inter,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        rms_norm_eps=1e-5,
        vocab_size=a.vocab,
        tie_word_embeddings=True,
    )
    mx.random.seed(0)
    model = Model(args)
    model.set_dtype(mx.bfloat16)
    if dtype == "q4":
        nn.quantize(model, group_size=64, bits=4)
    mx.eval(model.parameters())
    return model


def mlx_lm_outputs(model: nn.Module, tokens: mx.array) -> list[mx.array]:
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.trainer import default_loss
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model.freeze()
    linear_to_lora_layers(model, len(model.layers), {"rank": 8, "scale": 20.0, "dropout": 0.0})
    mx.eval(model.parameters())
    model.train()
    optimizer = optim.Adam(learning_rate=1e-5)
    optimizer.init(model.trainable_parameters())
    mx.eval(optimizer.state)
    state = [model.state, optimizer.state, mx.random.state]
    lvg = nn.value_and_grad(model, default_loss)
    lengths = mx.array([[0, tokens.shape[1]]] * tokens.shape[0])

    # as mlx_lm.tuner.trainer.train's step, with one micro-batch (prev_grad None, do_update True)
    def step(batch: mx.array, lengths: mx.array) -> tuple[mx.array, mx.array]:
        (loss, toks), grad = lvg(model, batch, lengths)
        optimizer.update(model, grad)
        return loss, toks

    loss, toks = mx.compile(step, inputs=state, outputs=state)(tokens, lengths)
    return [loss, toks] + [v for _, v in tree_flatten(state) if isinstance(v, mx.array)]


def our_outputs(model: nn.Module, tokens: mx.array, a: argparse.Namespace) -> list[mx.array]:
    from mlx.utils import tree_flatten

    from qlora_gui.core.config import TrainConfig
    from qlora_gui.core.data.batching import Batch
    from qlora_gui.core.model.loader import add_adapters
    from qlora_gui.core.train.losses import ChunkedLoss, chunked_loss_for
    from qlora_gui.core.train.optimizer import build_optimizer
    from qlora_gui.core.train.step import TrainStep

    cfg = TrainConfig(model="m", data="d", grad_clip=a.grad_clip, num_layers=len(model.layers))
    cfg.lora_parameters = {"rank": 8, "scale": 20.0, "dropout": 0.0}
    add_adapters(model, cfg)
    mx.eval(model.parameters())
    loss_fn, _ = chunked_loss_for(model)
    if not isinstance(loss_fn, ChunkedLoss):
        raise SystemExit("the model's head did not split from its body")
    loss_fn.chunk = a.chunk
    model.train()
    optimizer = build_optimizer(cfg, total_steps=1000)
    optimizer.init(model.trainable_parameters())
    mx.eval(optimizer.state)
    b, t = tokens.shape
    batch = Batch(
        inputs=np.array(tokens[:, :-1]),
        positions=np.arange(b * (t - 1), dtype=np.int32),
        targets=np.array(tokens[:, 1:]).reshape(-1),
        weights=np.ones(b * (t - 1), dtype=np.float32),
    )
    step = TrainStep(model, optimizer, loss_fn, cfg.grad_clip)
    outputs = step.queued([batch])
    return outputs + [v for _, v in tree_flatten(step.state) if isinstance(v, mx.array)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in (("hidden", 128), ("layers", 16), ("inter", 256), ("heads", 32), ("kv-heads", 8)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--len", type=int, default=96, help="tokens per row (every one trained)")
    ap.add_argument("--chunk", type=int, default=261, help="our loss's positions per chunk")
    ap.add_argument("--dtypes", default="bf16,q4")
    ap.add_argument("--grad-clip", type=float, default=0.0, help="ours: clip the global norm (0: off, as mlx-lm)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    a = ap.parse_args()
    tokens = mx.array(np.random.default_rng(0).integers(1, a.vocab, size=(a.batch, a.len + 1)), dtype=mx.int32)
    async_eval = mx.async_eval
    mx.async_eval = lambda *arrays: None  # type: ignore[assignment]  # the step is counted, never run
    result: dict[str, Any] = {"mlx": mx.__version__, "shape": {k: v for k, v in vars(a).items() if k != "json"}}
    try:
        for dtype in a.dtypes.split(","):
            ours = count_kernels(our_outputs(build_model(a, dtype), tokens, a))
            theirs = count_kernels(mlx_lm_outputs(build_model(a, dtype), tokens))
            result[dtype] = {"ours": ours, "mlx_lm": theirs, "ratio": round(ours["kernels"] / theirs["kernels"], 3)}
            restore = gpu_fast_ops()
            try:
                ours = count_kernels(our_outputs(build_model(a, dtype), tokens, a), gpu=True)
                theirs = count_kernels(mlx_lm_outputs(build_model(a, dtype), tokens), gpu=True)
            finally:
                restore()
            result[dtype]["gpu"] = {
                "ours": ours,
                "mlx_lm": theirs,
                "ratio": round(ours["kernels"] / theirs["kernels"], 3),
            }
    finally:
        mx.async_eval = async_eval  # type: ignore[assignment]
    text = json.dumps(result, indent=1)
    print(text)
    for dtype in a.dtypes.split(","):
        r = result[dtype]
        o, m = r["ours"], r["mlx_lm"]
        g = r["gpu"]
        print(
            f"{dtype}: ours {o['kernels']} kernels ({o['launches']} launches), mlx-lm {m['kernels']} "
            f"({m['launches']}): {r['ratio']:.2f}x; gpu: ours {g['ours']['kernels']} ({g['ours']['launches']}), "
            f"mlx-lm {g['mlx_lm']['kernels']} ({g['mlx_lm']['launches']}): {g['ratio']:.2f}x",
            file=sys.stderr,
        )
        diff = {k: (o["by_kind"].get(k, 0), m["by_kind"].get(k, 0)) for k in set(o["by_kind"]) | set(m["by_kind"])}
        print(
            "  ours vs mlx-lm where they differ:",
            {k: v for k, v in sorted(diff.items()) if v[0] != v[1]},
            file=sys.stderr,
        )
    if a.json:
        a.json.write_text(text)


if __name__ == "__main__":
    main()
