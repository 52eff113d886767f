"""One export step, several destinations: what `qlora-gui export` and the Fuse & export dialog run.

Formats: an MLX folder (fused; kept at the base's quantization, de-quantized, or quantized to
4/8 bits), a GGUF model (F16/BF16/Q8_0/Q4_0), a GGUF LoRA adapter, a PEFT adapter folder. Every
format is written into a new folder, staged and renamed at the end; then, when asked, sent to
LM Studio's models folder and described to Ollama by a Modelfile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..inference.adapters import AdapterSource, base_as_trained, base_model_of
from .adapter_export import write_gguf_adapter, write_peft_adapter
from .destinations import (
    chat_template_of,
    lmstudio_models_dir,
    modelfile_text,
    ollama_create,
    ollama_template,
    send_to_lmstudio,
)
from .gguf_export import (
    GGUF_TYPES,
    check_gguf_export,
    estimate_parameters,
    estimated_bytes,
    gguf_file_name,
    gguf_type,
)
from .gguf_kquants import K_QUANTS, NEEDS, llama_cpp_available, quantize_k
from .staging import refuse_existing, staged

FORMATS = {
    "mlx": "MLX folder (mlx_lm.generate, LM Studio's MLX engine on a Mac)",
    "gguf": "GGUF model (llama.cpp, LM Studio, Ollama)",
    "adapter-gguf": "GGUF LoRA adapter (llama.cpp --lora, Ollama ADAPTER) for the original base",
    "peft": "PEFT LoRA folder (Hugging Face PEFT, Ollama ADAPTER) for the original base",
}
# The MLX folder's weights: (label, dequantize, bits)
MLX_WEIGHTS: dict[str, tuple[str, bool, int | None]] = {
    "keep": ("as the base (its quantization kept)", False, None),
    "dequantize": ("de-quantized to 16-bit (exactly base + adapter)", True, None),
    "8": ("quantized to 8 bits", False, 8),
    "4": ("quantized to 4 bits", False, 4),
}
FOLDER_SUFFIX = {"mlx": "fused", "gguf": "gguf", "adapter-gguf": "lora-gguf", "peft": "peft"}
MODELFILE = "Modelfile"
# Weights exported per second, loading, fusing and converting included: bench/check_gguf.py --rate on the
# CPU backend of a shared 2-core Linux machine (README); a Mac is faster, so these are upper bounds.
WEIGHTS_PER_SECOND = {"mlx": 10e6, "f16": 9e6, "bf16": 9e6, "q8_0": 9e6, "q4_0": 6.5e6}
Progress = Callable[[float, str], None]


@dataclass
class ExportRequest:
    adapter: AdapterSource
    format: str
    out: Path
    gguf_type: str = "q8_0"
    bits: int | None = None  # MLX: quantize the fused model to 4 or 8 bits
    dequantize: bool = False  # MLX: de-quantize a quantized base
    model: str | None = None  # the base, when not the one the adapter trained on
    lmstudio: bool = False
    lmstudio_dir: Path | None = None
    ollama_name: str | None = None
    system: str | None = None  # Ollama's SYSTEM
    hub_repo: str | None = None  # publish to the Hugging Face Hub as USER/NAME
    hub_public: bool = False


@dataclass
class ExportResult:
    path: Path
    files: list[Path]
    size_bytes: int
    lmstudio: Path | None = None
    modelfile: Path | None = None
    hub_url: str | None = None
    notes: list[str] = field(default_factory=list)


def check_request(req: ExportRequest) -> None:
    """Everything that can be refused before any work: format, type, architecture, folder, destinations."""
    if req.format not in FORMATS:
        raise UserError(f"unknown format '{req.format}'; choose one of {', '.join(FORMATS)}")
    if req.bits is not None and (req.format != "mlx" or req.bits not in (4, 8)):
        raise UserError("--bits 4 or 8 quantizes the MLX folder only; GGUF takes --type")
    if req.adapter.is_vision:
        if req.format != "mlx" or req.bits is not None or req.ollama_name is not None:
            raise UserError(
                f"{req.adapter.path}: a vision run exports as an MLX folder that mlx-vlm loads (format mlx, "
                "without --bits); GGUF, PEFT and Ollama exports of vision-language models are not supported"
            )
    else:
        _check_text_request(req)
    if req.format in ("adapter-gguf", "peft") and req.adapter.config.get("fine_tune_type", "lora") == "dora":
        raise UserError(
            f"{req.adapter.path}: a DoRA adapter cannot be exported alone: GGUF and PEFT LoRA files have no "
            "place for its magnitude vector; export the fused model (MLX or GGUF) instead"
        )
    if req.ollama_name is not None and req.format == "mlx":
        raise UserError("Ollama does not load MLX folders; export --format gguf (or an adapter) for Ollama")
    refuse_existing(Path(req.out))
    if req.hub_repo is not None and "/" not in req.hub_repo:
        raise UserError(f"--hub '{req.hub_repo}': give the repository as USER/NAME or ORG/NAME")
    if req.lmstudio and (req.lmstudio_dir or lmstudio_models_dir()) is None:
        send_to_lmstudio(Path(req.out), None)  # raises the message that says where to point it


def _check_text_request(req: ExportRequest) -> None:
    """A text run's format against its base: GGUF needs an architecture the writer knows."""
    base_path, config, _ = base_as_trained(req.adapter, req.model)
    if req.format == "gguf":
        if req.gguf_type in K_QUANTS:
            if not llama_cpp_available():
                raise UserError(NEEDS)
        else:
            gguf_type(req.gguf_type)
        check_gguf_export(base_path, config)
    if req.format == "adapter-gguf":
        check_gguf_export(base_path, config)


def estimate_bytes(adapter: AdapterSource, fmt: str, gguf_key: str = "q8_0", bits: int | None = None) -> int:
    """About how large the export will be, from the configs alone."""
    if fmt in ("adapter-gguf", "peft"):
        return int((adapter.path / "adapters.safetensors").stat().st_size)
    if adapter.is_vision:  # fused into the base's own weights: about the base's size
        return sum(f.stat().st_size for f in base_model_of(adapter).glob("*.safetensors"))
    _, config, quant = base_as_trained(adapter)
    if fmt == "gguf" and gguf_key in K_QUANTS:
        return int(estimate_parameters(config) * K_QUANTS[gguf_key][2])
    if fmt == "gguf":
        return estimated_bytes(config, gguf_type(gguf_key))
    float_bits = 32 if str(config.get("torch_dtype", "")) == "float32" else 16
    per_weight = (bits + 1) / 8 if bits else ((quant or {}).get("bits", float_bits) + (1 if quant else 0)) / 8
    return int(estimated_bytes(config, GGUF_TYPES["f16"]) / 2 * per_weight)


def gguf_choices() -> list[tuple[str, str, str, bool]]:
    """(key, label, note, available) of every GGUF type: ours, then llama.cpp's K-quants when it is installed."""
    k_ok = llama_cpp_available()
    ours = [(t.key, t.label, t.note, True) for t in GGUF_TYPES.values()]
    return ours + [
        (key, label, f"llama.cpp's {label}" + ("" if k_ok else f": {NEEDS}"), k_ok)
        for key, (label, _, _) in K_QUANTS.items()
    ]


def human_size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def estimate_text(adapter: AdapterSource, fmt: str, gguf_key: str = "q8_0", bits: int | None = None) -> str:
    """'About 1.2 GB, about 40 s.': the size from the configs, the time from WEIGHTS_PER_SECOND."""
    size = estimate_bytes(adapter, fmt, gguf_key, bits)
    seconds = 2.0
    if fmt in ("mlx", "gguf"):
        _, config, _ = base_as_trained(adapter)
        rate = WEIGHTS_PER_SECOND["mlx" if fmt == "mlx" else gguf_key if gguf_key in GGUF_TYPES else "q4_0"]
        seconds = max(seconds, estimate_parameters(config) / rate)
    return f"About {human_size(size)}, about {seconds:.0f} s."


def export(req: ExportRequest, progress: Progress | None = None) -> ExportResult:
    say = progress or (lambda _f, _m: None)
    check_request(req)
    out = Path(req.out).expanduser()
    if req.format == "mlx" and req.adapter.is_vision:
        from .vision_fuse import fuse_vision_adapter

        fused = fuse_vision_adapter(req.adapter, out, model=req.model, progress=lambda f, m: say(0.9 * f, m))
        result = ExportResult(out, sorted(out.iterdir()), fused.size_bytes)
        result.notes.append(f'Try it: mlx_vlm.generate --model "{out}" --image FILE --prompt "..."')
    elif req.format == "mlx":
        from .fuse import fuse_adapter

        fused = fuse_adapter(
            req.adapter,
            out,
            model=req.model,
            dequantize=req.dequantize,
            bits=req.bits,
            progress=lambda f, m: say(0.9 * f, m),
        )
        result = ExportResult(out, sorted(out.iterdir()), fused.size_bytes)
        result.notes.append(f'Try it: mlx_lm.generate --model "{out}" --prompt "..."')
    else:
        if req.format == "peft":
            say(0.2, "writing the PEFT adapter")
            write_peft_adapter(req.adapter, out, req.model)
            name = out.name
        else:
            with staged(out, folder=True) as staging:
                name = _write_format(req, staging, out.name, say)
        files = sorted(out.iterdir())
        result = ExportResult(out, files, sum(f.stat().st_size for f in files if f.is_file()))
        if req.format == "gguf":
            result.notes.append(f'Try it: llama-cli -m "{out / name}" -cnv')
        elif req.format == "adapter-gguf":
            result.notes.append(f'Try it: llama-cli -m BASE-F16.gguf --lora "{out / name}" -cnv')
    if req.ollama_name is not None:
        _ollama(req, result, say)
        result.files = sorted(out.iterdir())
    if req.lmstudio:
        say(0.97, "sending to LM Studio")
        result.lmstudio = send_to_lmstudio(out, req.lmstudio_dir or lmstudio_models_dir())
        listed = f"{result.lmstudio.parent.name}/{result.lmstudio.name}"
        result.notes.append(f"In LM Studio: My Models lists {listed}; load it from the model picker at the top")
    if req.hub_repo:
        from .hub_upload import upload, write_model_card

        write_model_card(out, req.adapter, req.format)
        result.files = sorted(out.iterdir())
        result.hub_url = upload(
            out, req.hub_repo, private=not req.hub_public, progress=lambda f, m: say(0.97 + 0.03 * f, m)
        )
        result.notes.append(f"Published ({'public' if req.hub_public else 'private'}): {result.hub_url}")
    say(1.0, f"exported to {out}")
    return result


def _write_format(req: ExportRequest, staging: Path, stem: str, say: Progress) -> str:
    if req.format == "gguf":
        from .fuse import fuse_in_memory

        k_quant = K_QUANTS.get(req.gguf_type)
        kind = GGUF_TYPES["f16"] if k_quant else gguf_type(req.gguf_type)
        fused = fuse_in_memory(req.adapter, model=req.model, dequantize=True, progress=lambda f, m: say(0.5 * f, m))
        name = gguf_file_name(stem, kind)
        fused.write_gguf(staging / name, kind, name=stem, progress=lambda f, m: say(0.5 + 0.3 * f, m))
        if k_quant:  # llama.cpp's own quantizer, from the F16 file, which then goes
            say(0.82, f"quantizing to {k_quant[0]} with llama.cpp")
            f16, name = staging / name, f"{stem}-{k_quant[0]}.gguf"
            quantize_k(f16, staging / name, req.gguf_type)
            f16.unlink()
        return name
    say(0.2, "writing the GGUF LoRA adapter")
    name = f"{stem}-LoRA-F32.gguf"
    write_gguf_adapter(req.adapter, staging / name, req.model)
    return name


def _ollama(req: ExportRequest, result: ExportResult, say: Progress) -> None:
    say(0.95, "writing the Ollama Modelfile")
    base_path, _, _ = base_as_trained(req.adapter, req.model)
    template, eos = chat_template_of(base_path)
    translated = ollama_template(template, eos)
    if req.format == "gguf":
        text = modelfile_text(f"./{result.files[0].name}", translated, system=req.system)
    else:
        adapter = f"./{result.files[0].name}" if req.format == "adapter-gguf" else "."
        text = modelfile_text(str(base_path), translated, adapter=adapter, system=req.system)
    modelfile = result.path / MODELFILE
    modelfile.write_text(text, encoding="utf-8")
    result.modelfile = modelfile
    if translated is None:
        result.notes.append("The chat template is not one we translate for Ollama: the Modelfile has no TEMPLATE")
    ran, output = ollama_create(str(req.ollama_name), modelfile)
    result.notes.append(f"ollama: {output}" if ran else f"Ollama is not installed here; then run: {output}")
    if ran:
        result.notes.append(f"Try it: ollama run {req.ollama_name}")
