"""Load a base model, quantize it on load if asked (the Q in QLoRA), and add adapters.

Call these in the thread that trains: MLX streams belong to the thread that made them.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..config import TrainConfig
from ..errors import ModelError
from .grouped_lora import ELEMENTWISE_OPTIMIZERS, SharedInputLoRA, group_lora_layers, grouped_layout, mlx_layout
from .model_files import load_tokenizer
from .stacked_lora import stack_adapters, unstack_adapters


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: Any
    config: dict[str, Any]
    path: Path
    quantization: dict[str, Any] | None  # bits/group_size of the base, as trained
    quantized_on_load: bool
    notes: list[str]


def load_base(
    path: Path,
    quantize_bits: int | None = None,
    group_size: int = 64,
    tokenizer: Any = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load weights with mlx-lm and quantize a full-precision model when asked; trust_remote_code lets a model
    folder's own Python module build it (mlx-lm's model_file)."""
    from mlx_lm.utils import load_model, quantize_model

    try:
        model, config = load_model(path, trust_remote_code=trust_remote_code)
    except ValueError as e:  # mlx-lm raises ValueError for unknown architectures and bad weights
        raise ModelError(
            f"{path}: mlx-lm cannot load this model ({e}); pick a model whose architecture mlx-lm supports"
        ) from e
    except FileNotFoundError as e:
        raise ModelError(f"{path}: {e}") from e
    if tokenizer is None:
        tokenizer = load_tokenizer(path, trust_remote_code)
    notes = []
    quantization = config.get("quantization")
    quantized_on_load = False
    if quantize_bits:
        if quantization:
            notes.append(f"the model is already quantized ({quantization.get('bits')}-bit); used as it is")
        else:
            with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints an INFO line
                model, config = quantize_model(model, config, group_size, quantize_bits)
            mx.eval(model.parameters())
            quantization = {"bits": quantize_bits, "group_size": group_size}
            quantized_on_load = True
    return LoadedModel(model, tokenizer, config, path, quantization, quantized_on_load, notes)


def add_adapters(model: nn.Module, cfg: TrainConfig) -> str:
    """Freeze the base and put LoRA/DoRA layers on the last `num_layers` blocks, or on all when the model
    has fewer (presets and the default of 16 fit every model). Returns a note when that happened."""
    from mlx_lm.tuner.lora import LoRALinear
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model.freeze()
    mx.random.seed(cfg.seed)  # adapter initialisation is part of what the seed fixes
    layers = len(model.layers)
    note = ""
    num_layers = cfg.num_layers
    if num_layers > layers:
        note = f"adapters on all {layers} layers: the model has fewer than the {num_layers} asked for"
        num_layers = layers
    if cfg.fine_tune_type == "full":
        train_whole_layers(model, num_layers)
        if cfg.train_mode == "dpo":  # its reference is the base: kept beside the weights that change
            keep_base_weights(model, list(dict(tree_flatten(model.trainable_parameters()))))
        return note
    try:
        linear_to_lora_layers(model, num_layers, dict(cfg.lora_parameters), use_dora=cfg.fine_tune_type == "dora")
    except ValueError as e:
        raise ModelError(f"cannot add {cfg.fine_tune_type} adapters: {e}") from e
    # Grouping and stacking keep the same adapters with fewer kernels per step and the same files; only under an
    # optimizer whose update of an element reads that element alone (Muon's and Adafactor's read whole matrices).
    if cfg.optimizer in ELEMENTWISE_OPTIMIZERS:
        group_lora_layers(model)  # projections that share an input (grouped_lora.py)
        stack_adapters(model, (LoRALinear, SharedInputLoRA))  # one tensor per kind across blocks (stacked_lora.py)
    if not tree_flatten(model.trainable_parameters()):
        keys = cfg.lora_parameters.get("keys")
        raise ModelError(f"no layer matched the LoRA target keys {keys}; leave 'keys' empty for mlx-lm's defaults")
    return note


def train_whole_layers(model: nn.Module, num_layers: int) -> None:
    """Full fine-tuning as mlx-lm does it: every weight of the last `num_layers` blocks (-1: all) is trained, the
    rest stays frozen. A quantized block is refused: its packed integer weights have no gradient."""
    chosen = model.layers[-num_layers:] if num_layers > 0 else model.layers
    for layer in chosen:
        quantized = [
            name for name, m in layer.named_modules() if isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))
        ]
        if quantized:
            raise ModelError(
                "full fine-tuning needs a float base: this model's layers are quantized (packed integer weights "
                "have no gradient); use lora or dora on it (QLoRA), or a 16- or 32-bit model without quantize-on-load"
            )
        layer.unfreeze()


class BaseWeights:
    """Full fine-tuning: the base's own values of the weights training changes (the same arrays the base was
    loaded with: an update replaces a weight, it never writes into it). A plain attribute of the model, so they
    are no parameters of it."""

    ATTRIBUTE = "_qlora_base_weights"

    def __init__(self, weights: dict[str, mx.array]):
        self.weights = weights


def keep_base_weights(model: nn.Module, keys: list[str]) -> None:
    """Remember the base's values of `keys` (before fully fine-tuned weights replace them) for `base_weights`."""
    params = dict(tree_flatten(model.parameters()))
    setattr(model, BaseWeights.ATTRIBUTE, BaseWeights({k: params[k] for k in keys}))


@contextlib.contextmanager
def base_weights(model: nn.Module) -> Iterator[None]:
    """Inside the block a fully fine-tuned model holds the base's weights (kept by `keep_base_weights`); its own
    are put back on exit. Nothing changes for a model without them (LoRA keeps the base's weights as they are)."""
    held = getattr(model, BaseWeights.ATTRIBUTE, None)
    if held is None:
        yield
        return
    params = dict(tree_flatten(model.parameters()))
    own = [(k, params[k]) for k in held.weights]
    model.update(tree_unflatten(list(held.weights.items())))
    try:
        yield
    finally:
        model.update(tree_unflatten(own))


def load_start_adapter(model: nn.Module, path: Path) -> str:
    """Adapter weights a new run starts from (mlx-lm's resume_adapter_file): a file, or a run folder holding one.
    Every weight in it must be one of this model's adapter weights, of the same shape. Returns a note."""
    file = path / "adapters.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise ModelError(f"resume_adapter_file: {file} not found; give an adapters.safetensors file or its folder")
    try:
        weights = cast(dict[str, mx.array], mx.load(str(file)))
    except Exception as e:  # mx.load raises RuntimeError/ValueError for files that are not safetensors
        raise ModelError(f"resume_adapter_file: {file} cannot be read as safetensors ({e})") from e
    mine = adapter_weights(model)
    for key, value in weights.items():
        if key not in mine:
            raise ModelError(
                f"resume_adapter_file: {file} holds {key}, which these adapter settings do not have; start from "
                "an adapter made with the same model, method, layers and target keys"
            )
        if value.shape != mine[key].shape:
            raise ModelError(
                f"resume_adapter_file: {file}: {key} has shape {tuple(value.shape)}, this run's "
                f"{tuple(mine[key].shape)}; use the same rank and target keys as that adapter"
            )
    if not weights:
        raise ModelError(f"resume_adapter_file: {file} holds no weights")
    by_parameter = grouped_layout(model, weights)  # the model may hold q/k/v (gate/up) adapters as one group
    trainable = dict(tree_flatten(model.trainable_parameters()))
    split = sorted(k for k in by_parameter if k not in trainable)
    if split:
        raise ModelError(
            f"resume_adapter_file: {file} holds {split[0]} without the other projections that share its input; "
            "start from an adapter with the same target keys as this run"
        )
    model.load_weights(list(by_parameter.items()), strict=False)
    mx.eval(model.parameters())
    fresh = len(mine) - len(weights)
    rest = f"; {fresh} others start fresh" if fresh else ""
    return f"the run starts from the {len(weights)} adapter weights of {file}{rest}"


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total); quantized weights count as the parameters they stand for."""
    from mlx_lm.utils import get_total_parameters

    trainable = sum(v.size for v in adapter_weights(model).values())  # a group's zeros between blocks are not
    return trainable, get_total_parameters(model)


def adapter_weights(model: nn.Module) -> dict[str, mx.array]:
    """The adapters in mlx-lm's layout (`...q_proj.lora_a`), however the model groups them."""
    return mlx_layout(model, dict(tree_flatten(model.trainable_parameters())))


def adapter_config(cfg: TrainConfig, base_path: Path, loaded: LoadedModel) -> dict[str, Any]:
    """What mlx-lm's load_adapters and fuse read, plus the run's settings for people."""
    out = cfg.to_dict()
    out.update(
        {
            "model": str(base_path),
            "fine_tune_type": cfg.fine_tune_type,
            "num_layers": cfg.num_layers,
            "lora_parameters": dict(cfg.lora_parameters),
            "base_quantization": loaded.quantization,
            "quantized_on_load": loaded.quantized_on_load,
        }
    )
    return out


class _Keys:
    """Where a checkpointed block puts the dropout keys of one call (a plain object: not a parameter)."""

    keys: mx.array | None = None


class _KeyedDropout(nn.Module):
    """nn.Dropout's numbers, from a key the checkpointed block hands over: its recomputation in the
    backward then draws the same mask as the forward (the global key would give a new one)."""

    def __init__(self, p: float, keys: _Keys, index: int):
        super().__init__()
        self._p_1 = 1 - p
        self._keys, self._index = keys, index

    def __call__(self, x: mx.array) -> mx.array:
        if self._p_1 == 1 or not self.training or self._keys.keys is None:
            return x
        mask = mx.random.bernoulli(self._p_1, x.shape, key=self._keys.keys[self._index])
        return (mask * x) * (1 / self._p_1)


def use_grad_checkpoint(model: nn.Module) -> int:
    """Recompute each transformer block in the backward instead of keeping its activations; returns how many.

    Each layer object gets its own subclass whose call is checkpointed (mlx-lm patches the class for the
    whole process instead), so other models in the process are untouched. Dropout inside a block draws
    from keys passed into the checkpointed call, so forward and recomputation use the same masks.
    """
    unstack_adapters(model)  # the recomputation takes each block's own parameters as its inputs
    count = 0
    for layer in model.layers:
        base, box = type(layer), _Keys()
        dropouts = [(name, m) for name, m in layer.named_modules() if isinstance(m, nn.Dropout)]
        layer.update_modules(
            tree_unflatten([(name, _KeyedDropout(1 - m._p_1, box, i)) for i, (name, m) in enumerate(dropouts)])
        )

        # Bound as defaults: each layer class keeps its own call, key box and dropout count.
        def checkpointed(
            self: nn.Module,
            *args: Any,
            _call: Callable[..., Any] = base.__call__,
            _box: _Keys = box,
            _n: int = max(len(dropouts), 1),  # noqa: B008
            **kwargs: Any,
        ) -> Any:
            if not self.training:  # validation and sample answers: no backward to save memory for
                return _call(self, *args, **kwargs)

            def inner(params: Any, key: mx.array, *args: Any, **kwargs: Any) -> Any:
                self.update(params)
                _box.keys = mx.stop_gradient(mx.random.split(mx.stop_gradient(key), _n))
                return _call(self, *args, **kwargs)

            # A key drawn from the global generator: (seed, step) still fix every mask.
            key = mx.stop_gradient(mx.random.randint(0, 2**31 - 1, (2,)).astype(mx.uint32))
            return mx.checkpoint(inner)(self.trainable_parameters(), key, *args, **kwargs)

        layer.__class__ = type(base.__name__, (base,), {"__call__": checkpointed})
        count += 1
    return count
