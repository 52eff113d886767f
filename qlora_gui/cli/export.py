"""`qlora-gui export`: take a run's model where people run it (MLX, GGUF, adapters; LM Studio, Ollama)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.after.export import FORMATS
from ..core.after.gguf_export import GGUF_TYPES
from ..core.after.gguf_kquants import K_QUANTS
from .console import note, progress


def add_export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a run's model: MLX folder, GGUF, GGUF LoRA adapter or PEFT adapter",
        description="Export a run (its best checkpoint, else its latest) or one of its checkpoints. "
        "Formats: "
        + "; ".join(f"{k}: {v}" for k, v in FORMATS.items())
        + ". GGUF types: "
        + "; ".join(f"{t.key}: {t.note}" for t in GGUF_TYPES.values())
        + ". Everything goes into a new folder (--out), written under a staging name and renamed at the end.",
    )
    p.add_argument("run", metavar="RUN", help="a run folder or one of its checkpoints/NNNNNNN folders")
    p.add_argument("--format", choices=tuple(FORMATS), required=True)
    p.add_argument(
        "--type",
        default="q8_0",
        choices=(*GGUF_TYPES, *K_QUANTS),
        help="GGUF type (default q8_0); the K-quants need llama-cpp-python",
    )
    p.add_argument("--bits", type=int, choices=(4, 8), help="MLX: quantize the fused model to 4 or 8 bits")
    p.add_argument("--dequantize", action="store_true", help="MLX: de-quantize a quantized base to 16-bit")
    p.add_argument("--out", required=True, help="the new folder to write (never overwritten)")
    p.add_argument("--model", help="the base model (default: the one the run trained on)")
    p.add_argument("--lmstudio", action="store_true", help="also put it in LM Studio's models folder")
    p.add_argument("--lmstudio-dir", help="LM Studio's models folder (default: from its settings)")
    p.add_argument("--ollama", metavar="NAME", help="write an Ollama Modelfile and run `ollama create NAME`")
    p.add_argument("--system", help="a system prompt for the Ollama Modelfile")
    p.add_argument(
        "--hub", metavar="REPO", help="publish to the Hugging Face Hub as USER/NAME (private unless --public)"
    )
    p.add_argument("--public", action="store_true", help="with --hub: make the repository public")


def run_export(args: argparse.Namespace) -> int:
    from ..core.after.export import ExportRequest, export
    from ..core.inference.adapters import default_adapter, read_adapter
    from ..core.runs.run_folder import checkpoint_step

    path = Path(args.run).expanduser()
    adapter = read_adapter(path) if checkpoint_step(path) is not None else default_adapter(path)

    req = ExportRequest(
        adapter=adapter,
        format=args.format,
        out=Path(args.out).expanduser(),
        gguf_type=args.type,
        bits=args.bits,
        dequantize=args.dequantize,
        model=args.model,
        lmstudio=args.lmstudio or bool(args.lmstudio_dir),
        lmstudio_dir=Path(args.lmstudio_dir).expanduser() if args.lmstudio_dir else None,
        ollama_name=args.ollama,
        system=args.system,
        hub_repo=args.hub,
        hub_public=args.public,
    )
    note(f"Exporting {adapter.label} as {args.format}")
    result = export(req, progress)
    print(f"Exported to {result.path} ({result.size_bytes / 1e6:.1f} MB):")
    for f in result.files:
        print(f"  {f.name}")
    if result.modelfile:
        print(f"Ollama Modelfile: {result.modelfile}")
    if result.lmstudio:
        print(f"LM Studio: {result.lmstudio}")
    if result.hub_url:
        print(f"Hugging Face Hub: {result.hub_url}")
    for line in result.notes:
        print(line)
    return 0
