"""`qlora-gui generate`, `evaluate` and `fuse`: use a trained adapter headless.

`--adapter-path` is read exactly as mlx-lm reads it: a run folder means its
latest adapter; give RUN/checkpoints/NNNNNNN for a particular checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ..core.inference.sampling import SamplingSettings
from .console import note, progress

ADAPTER_HELP = (
    "run folder (its latest adapter) or one of its checkpoints/NNNNNNN folders; "
    "the base model defaults to the one it was trained on"
)


def add_adapter_parsers(sub) -> None:
    g = sub.add_parser(
        "generate",
        help="generate text with a model, with or without an adapter",
        description="Stream an answer from the model (with the adapter when given). The prompt gets "
        "the chat template as in training, or is used raw with --raw-prompt.",
    )
    g.add_argument("--model", help="base model folder or downloaded repo id")
    g.add_argument("--adapter-path", help=ADAPTER_HELP)
    g.add_argument("--prompt", required=True, help="the user message (or '-' to read it from stdin)")
    g.add_argument("--system", default="", help="an optional system prompt")
    sampling = SamplingSettings()  # the playground's defaults
    g.add_argument("--max-tokens", type=int, default=sampling.max_tokens, help=f"(default {sampling.max_tokens})")
    g.add_argument(
        "--temp",
        type=float,
        default=sampling.temperature,
        help=f"temperature; 0 is greedy (default {sampling.temperature})",
    )
    g.add_argument("--top-p", type=float, default=sampling.top_p, help=f"(default {sampling.top_p})")
    g.add_argument("--seed", type=int, default=sampling.seed, help=f"(default {sampling.seed})")
    g.add_argument("--raw-prompt", action="store_true", help="do not apply the chat template")
    g.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="FILE",
        help="a picture for a vision-language model, shown before the prompt (repeat for several)",
    )
    g.add_argument("--compare", action="store_true", help="also answer with the base alone, for comparison")

    e = sub.add_parser(
        "evaluate",
        help="loss and perplexity of the base and the adapter on held-out data",
        description="Token-weighted loss and perplexity, with the training loss and the run's "
        "settings. By default on the batches the run validated on (so the adapter's "
        "number equals the run's validation loss for that checkpoint); --all-rows or "
        "--split test measure more. With an adapter the result is also written to the "
        "run folder's evaluation.json.",
    )
    e.add_argument("--model", help="base model folder or downloaded repo id")
    e.add_argument("--adapter-path", help=ADAPTER_HELP)
    e.add_argument("--data", help="dataset (default: the one the adapter trained on)")
    e.add_argument(
        "--split",
        choices=("test", "valid", "train"),
        default="valid",
        help="default: valid, the split training validated on",
    )
    e.add_argument("--batch-size", type=int, help="default: the run's batch size")
    e.add_argument(
        "--max-batches",
        type=int,
        help="evaluate the first N batches (default: the run's val_batches on the valid split, else all)",
    )
    e.add_argument(
        "--all-rows", action="store_true", help="every row of the split, not only the batches training validated on"
    )
    e.add_argument("--no-base", action="store_true", help="skip the base model's numbers")
    e.add_argument(
        "--rows",
        nargs="?",
        type=int,
        const=20,
        metavar="N",
        help="also list the N rows (default 20) with the highest adapter loss, and the N the adapter "
        "improved least, from each row's own loss",
    )

    f = sub.add_parser(
        "fuse",
        help="merge an adapter into its base as a new model folder",
        description="Fuse the adapter into the base and save a model folder mlx_lm.load reads. "
        "The base keeps its quantization unless --dequantize.",
    )
    f.add_argument("--model", help="base model folder (default: the one the adapter was trained on)")
    f.add_argument("--adapter-path", required=True, help=ADAPTER_HELP)
    f.add_argument("--save-path", required=True, help="new folder for the fused model (never overwritten)")
    f.add_argument("--dequantize", action="store_true", help="save de-quantized (16-bit) weights")
    f.add_argument(
        "--export-gguf",
        action="store_true",
        help="also write NAME-F16.gguf beside it (needs --dequantize for a quantized base; `qlora-gui export` "
        "writes quantized GGUF)",
    )


def _adapter(args: argparse.Namespace):
    from ..core.inference.adapters import read_adapter

    return read_adapter(args.adapter_path) if args.adapter_path else None


def _is_vision(args: argparse.Namespace, adapter) -> bool:
    from ..core.inference.adapters import base_model_of
    from ..core.model.model_files import resolve_model_path
    from ..core.model.vision_model import is_vision_model

    base = base_model_of(adapter, args.model) if adapter is not None else resolve_model_path(args.model or "")
    return is_vision_model(base)


def run_vision_generate(args: argparse.Namespace, adapter, prompt: str) -> int:
    """Answers about pictures: the base's and the adapter's (--compare), through the forward training used."""
    import time

    from ..core.errors import UserError
    from ..core.inference.adapters import base_model_of
    from ..core.inference.vision_answer import load_vision_model, stream_answer
    from ..core.model.model_files import resolve_model_path

    base = base_model_of(adapter, args.model) if adapter is not None else resolve_model_path(args.model)
    for image in args.image:
        if not Path(image).expanduser().is_file():
            raise UserError(f"--image {image}: no such file")
    sides = ["base", "adapter"] if (args.compare and adapter) else ["adapter" if adapter else "base"]
    for side in sides:
        if len(sides) > 1:
            print(f"==== {side} ====", flush=True)
        vm = load_vision_model(base, adapter.path if side == "adapter" else None)
        t0, pieces = time.perf_counter(), 0
        for piece in stream_answer(vm, args.image, prompt, args.max_tokens, args.temp):
            print(piece, end="", flush=True)
            pieces += 1
        print(flush=True)
        print(f"[{pieces} pieces in {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from ..core.errors import UserError
    from ..core.inference.adapters import base_view, load_with_adapter
    from ..core.inference.generation import format_prompt, stream_text

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    adapter = _adapter(args)
    if _is_vision(args, adapter):
        return run_vision_generate(args, adapter, prompt)
    if args.image:
        raise UserError("--image needs a vision-language model (Qwen2-VL, Qwen2.5-VL, Gemma 3); this one reads text")
    loaded = load_with_adapter(args.model, adapter)
    use_template = not args.raw_prompt and (adapter is None or adapter.uses_template)
    text = format_prompt(loaded.tokenizer, prompt, args.system, use_template)
    settings = SamplingSettings(args.temp, args.top_p, args.max_tokens, args.seed)
    sides = ["base", "adapter"] if (args.compare and adapter) else ["adapter" if adapter else "base"]
    for side in sides:
        if len(sides) > 1:
            print(f"==== {side} ====", flush=True)
        view = base_view(loaded.model) if side == "base" and adapter else contextlib.nullcontext()
        with view:
            for update in stream_text(loaded.model, loaded.tokenizer, text, settings, side):
                if update.done:
                    print(flush=True)
                    print(
                        f"[{update.tokens} tokens, {update.tokens_per_sec:.1f} tokens/s, "
                        f"finished: {update.finish_reason}]",
                        file=sys.stderr,
                    )
                else:
                    print(update.text, end="", flush=True)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..core.after.evaluation import evaluate, save_evaluation

    adapter = _adapter(args)
    result = evaluate(
        args.model,
        adapter,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        max_batches=-1 if args.all_rows else args.max_batches,
        include_base=not args.no_base,
        per_row=args.rows is not None,
        progress=lambda msg: note(f"{msg}…"),
    )
    print(result.to_text())
    if args.rows is not None:
        from ..core.after.row_losses import rows_text

        print("\n" + rows_text(result.row_details(), args.rows))
    if adapter is not None:
        path = save_evaluation(adapter.run_dir, result)
        print(f"written to {path}")
    return 0


def run_fuse(args: argparse.Namespace) -> int:
    from ..core.after.fuse import fuse_adapter

    adapter = _adapter(args)
    if adapter is not None and adapter.is_vision:
        from ..core.after.vision_fuse import fuse_vision_adapter

        fused = fuse_vision_adapter(adapter, args.save_path, model=args.model, progress=progress)
        size = f"{fused.fused_layers} layers merged, {fused.size_bytes / 1e6:.1f} MB"
        print(f"Fused vision model ({size}) saved to {fused.path}")
        print(f'Try it: mlx_vlm.generate --model {fused.path} --image FILE --prompt "..."')
        return 0

    result = fuse_adapter(
        _adapter(args),
        args.save_path,
        model=args.model,
        dequantize=args.dequantize,
        export_gguf=args.export_gguf,
        progress=progress,
    )
    quant = f"{result.quantization['bits']}-bit" if result.quantization else "not quantized"
    print(
        f"Fused model ({quant}, {result.fused_layers} layers merged, {result.size_bytes / 1e6:.1f} MB) "
        f"saved to {result.path}"
    )
    if result.gguf:
        print(f"GGUF: {result.gguf}")
    print(f'Try it: mlx_lm.generate --model {result.path} --prompt "..."')
    return 0


RUNNERS = {"generate": run_generate, "evaluate": run_evaluate, "fuse": run_fuse}
