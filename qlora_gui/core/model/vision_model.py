"""Vision-language models: which families train here, loading them with mlx-vlm's own classes and processors,
adapters on the language model, and the forward pass with a causal mask built right for each family.

mlx-vlm's classes are used, not its trainer: its Gemma 3 takes the 2-D padding mask as the whole attention mask
(an outer product of it, so every token sees every later one) and trains non-causally. Here a family's forward
is given no padding mask at all: rows are padded at the end and padding is never a target, so the causal mask
each language model builds for itself is exactly right (and Gemma 3 keeps its sliding windows).
A family enters `FAMILIES` only with a test that changing a later token leaves every earlier logit as it was.

mlx-vlm is the optional `vision` extra (it brings OpenCV, datasets, an audio stack and a web server), so it is
imported only here and only when a vision model is used.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ..config import TrainConfig
from ..errors import ModelError
from .loader import LoadedModel

VISION_EXTRA = "pip install 'qlora-gui[vision]'"
# model_type -> the name people know it by. Each passes the causality test (tests/test_vision_training.py).
FAMILIES = {"qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL", "gemma3": "Gemma 3"}
QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl")


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def is_vision_model(path: str | Path) -> bool:
    """The folder holds a model with a vision tower (its config has a vision_config)."""
    return isinstance(read_config(Path(path)).get("vision_config"), dict)


def vision_family(path: Path) -> str:
    """The model_type of a vision model that trains here; ModelError saying why not otherwise."""
    model_type = str(read_config(path).get("model_type", ""))
    if model_type not in FAMILIES:
        supported = ", ".join(f"{name} ({t})" for t, name in FAMILIES.items())
        raise ModelError(
            f"{path / 'config.json'}: model_type '{model_type}' is a vision-language model that QLoRA Studio does "
            f"not train: its causal mask is not checked here (mlx-vlm's own trainer lets later tokens leak into "
            f"earlier ones for some families). Vision training supports {supported}"
        )
    try:
        importlib.import_module(f"mlx_vlm.models.{model_type}")  # registers its processor with transformers
    except ImportError as e:
        raise ModelError(
            f"{path}: training a vision-language model needs mlx-vlm, which is not installed ({e}); "
            f"install it with `{VISION_EXTRA}`"
        ) from e
    return model_type


def load_processor(path: Path) -> Any:
    """The model's processor (its tokenizer, chat template and image processor), offline."""
    vision_family(path)
    from mlx_vlm.utils import load_processor as _load

    eos = read_config(path).get("eos_token_id")
    try:
        return _load(path, add_detokenizer=True, eos_token_ids=[eos] if isinstance(eos, int) else eos)
    except Exception as e:  # transformers raises many kinds for broken processor files
        raise ModelError(f"{path}: cannot load the model's processor ({type(e).__name__}: {e})") from e


def load_vision_base(path: Path, processor: Any, quantize_bits: int | None = None, group_size: int = 64) -> LoadedModel:
    """The whole model (vision tower, projector, language model) with mlx-vlm's classes; its language model
    quantized on load when asked (the vision tower stays as it is: it is small and frozen)."""
    from mlx_vlm.utils import load_model

    try:
        model = load_model(path)
    except Exception as e:  # mlx-vlm raises ValueError, KeyError, ... for weights that do not fit
        raise ModelError(f"{path}: mlx-vlm cannot load this model ({type(e).__name__}: {e})") from e
    config = read_config(path)
    notes: list[str] = []
    quantization = config.get("quantization")
    quantized_on_load = False
    if quantize_bits:
        if quantization:
            notes.append(f"the model is already quantized ({quantization.get('bits')}-bit); used as it is")
        else:
            quantize_language_model(model, quantize_bits, group_size)
            quantization = {"bits": quantize_bits, "group_size": group_size}
            quantized_on_load = True
    return LoadedModel(model, processor, config, path, quantization, quantized_on_load, notes)


def quantize_language_model(model: nn.Module, bits: int, group_size: int) -> None:
    def fits(_: str, module: nn.Module) -> bool:
        return isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.shape[-1] % group_size == 0

    nn.quantize(model.language_model, group_size=group_size, bits=bits, class_predicate=fits)
    mx.eval(model.parameters())


def quantized_modules(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Each quantized module's settings by its full name in the base (an adapted layer's own name, not its
    wrapped `.linear`), as mlx-vlm's adapter loader restores a base before it adds the adapters."""
    modules = dict(model.named_modules())
    out = {}
    for name, m in modules.items():
        if isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
            owner = name.removesuffix(".linear")
            base_name = owner if owner != name and hasattr(modules.get(owner), "lora_a") else name
            out[base_name] = {"group_size": m.group_size, "bits": m.bits, "mode": getattr(m, "mode", "affine")}
    return out


def add_vision_adapters(model: nn.Module, cfg: TrainConfig) -> tuple[str, list[str]]:
    """LoRA/DoRA on the last `num_layers` blocks of the language model; the vision tower and projector stay
    frozen. Returns a note (fewer layers than asked) and the adapted modules' full names."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    if cfg.fine_tune_type == "full":
        raise ModelError("full fine-tuning of a vision-language model is not supported here; use lora or dora")
    model.freeze()
    mx.random.seed(cfg.seed)
    layers = model.language_model.model.layers
    num_layers, note = cfg.num_layers, ""
    if num_layers > len(layers) or num_layers < 0:
        if num_layers > len(layers):
            note = f"adapters on all {len(layers)} layers: the model has fewer than the {num_layers} asked for"
        num_layers = len(layers)
    holder = _Layers(layers)
    params = dict(cfg.lora_parameters)
    try:
        linear_to_lora_layers(cast(nn.Module, holder), num_layers, params, use_dora=cfg.fine_tune_type == "dora")
    except ValueError as e:
        raise ModelError(f"cannot add {cfg.fine_tune_type} adapters: {e}") from e
    flat = cast(list[tuple[str, mx.array]], tree_flatten(model.trainable_parameters()))
    keys = sorted({name.rsplit(".", 1)[0] for name, _ in flat})
    if not keys:
        raise ModelError(f"no layer matched the LoRA target keys {params.get('keys')}; leave 'keys' empty")
    return note, keys


class _Layers:
    """The language model's blocks where mlx-lm's adapter code looks for them (`.layers`)."""

    def __init__(self, layers: list[nn.Module]):
        self.layers = layers

    def named_modules(self) -> list[tuple[str, nn.Module]]:
        return []

    def update_modules(self, modules: Any) -> None:
        """Nothing outside the blocks is adapted."""


def vision_adapter_config(
    cfg: TrainConfig, base_path: Path, loaded: LoadedModel, keys: list[str], family: str
) -> dict[str, Any]:
    """The run's settings for people, and what `mlx_vlm.load(..., adapter_path=RUN)` reads: the adapted
    modules by full name and the base's quantization module by module."""
    out = cfg.to_dict()
    out.update(
        {
            "model": str(base_path),
            "model_type": family,
            "fine_tune_type": cfg.fine_tune_type,
            "num_layers": cfg.num_layers,
            "lora_parameters": {**dict(cfg.lora_parameters), "keys": keys},
            "base_quantization": quantized_modules(loaded.model) if loaded.quantized_on_load else {},
            "quantized_on_load": loaded.quantized_on_load,
            "quantization_settings": loaded.quantization,
            "data_format": "vision",
        }
    )
    return out


def picture_inputs(
    model: nn.Module, family: str, inputs: mx.array, pixels: mx.array | None, grid: mx.array | None = None
) -> tuple[mx.array, ...]:
    """What the language model takes besides the token ids: the token embeddings with each picture's features
    in place (and, for Qwen, the 3-D rope positions of text and pictures). Nothing here is trained (the
    vision tower, the projector and the embedding are frozen), so it is computed outside the gradient, once
    per batch; the language model's step can then be compiled. Qwen's positions are always given: its
    language model otherwise reuses the positions of its previous call."""
    if family in QWEN_FAMILIES:
        if pixels is None:
            embeds = model.language_model.model.embed_tokens(inputs)
        else:
            embeds = model.get_input_embeddings(inputs, pixels, image_grid_thw=grid).inputs_embeds
        positions, _ = model.language_model.get_rope_index(inputs, grid, None, None)
        return mx.stop_gradient(embeds), positions
    if family == "gemma3":
        if pixels is None:  # the language model scales the embeddings it is given, as its own
            return (mx.stop_gradient(model.language_model.model.embed_tokens(inputs)),)
        features = model.get_input_embeddings(inputs, pixels, mask=mx.ones(inputs.shape, dtype=mx.int32))
        return (mx.stop_gradient(features.inputs_embeds),)
    raise ModelError(f"model_type '{family}' is not a vision family trained here")


def language_logits(
    model: nn.Module, family: str, inputs: mx.array, embeds: mx.array, positions: mx.array | None = None
) -> mx.array:
    """Logits (B, T, V) of the language model on `picture_inputs`, under its own causal mask: no padding mask
    is handed over (see the module's note)."""
    if family in QWEN_FAMILIES:
        out = model.language_model(inputs, embeds, mask=None, cache=None, position_ids=positions)
    else:
        out = model.language_model(inputs=inputs, inputs_embeds=embeds, mask=None, cache=None)
    return getattr(out, "logits", out)


def vision_logits(
    model: nn.Module, family: str, inputs: mx.array, pixels: mx.array | None, grid: mx.array | None = None
) -> mx.array:
    """Logits (B, T, V) for token rows with their pictures, as training computes them."""
    return language_logits(model, family, inputs, *picture_inputs(model, family, inputs, pixels, grid))


def add_vision_adapters_from(model: nn.Module, adapter_path: Path, quantize: bool = True) -> dict[str, Any]:
    """A trained run's adapters on a freshly loaded base: its base quantized as the run's was (unless not
    `quantize`), the adapted modules replaced by name, the weights loaded. Returns the adapter's config."""
    from mlx_lm.tuner.dora import DoRALinear
    from mlx_lm.tuner.lora import LoRALinear

    folder = adapter_path if adapter_path.is_dir() else adapter_path.parent
    weights = adapter_path / "adapters.safetensors" if adapter_path.is_dir() else adapter_path
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{folder}: no readable adapter_config.json ({e}); give a run folder") from e
    if not weights.is_file():
        raise ModelError(f"{weights} not found; give a run folder that holds adapters.safetensors")
    settings = config.get("quantization_settings")
    if quantize and config.get("quantized_on_load") and isinstance(settings, dict):
        quantize_language_model(model, int(settings["bits"]), int(settings["group_size"]))
    params = config.get("lora_parameters") or {}
    kind = DoRALinear if config.get("fine_tune_type") == "dora" else LoRALinear
    model.freeze()
    modules = dict(model.named_modules())
    replaced = []
    for name in params.get("keys") or []:
        if name not in modules:
            raise ModelError(f"{folder}: the adapter names {name}, which this model does not have; use its base")
        replaced.append(
            (name, kind.from_base(modules[name], r=params["rank"], scale=params["scale"], dropout=params["dropout"]))
        )
    from mlx.utils import tree_unflatten

    model.update_modules(tree_unflatten(replaced))
    model.load_weights(str(weights), strict=False)
    mx.eval(model.parameters())
    return config
