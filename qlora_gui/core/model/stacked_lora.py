"""Adapter tensors of one kind stacked across blocks: one optimizer update and one check per kind, not per block.

Every block's `self_attn.o_proj.lora_a` (say) has the same shape. Here those live as one (blocks, ...) parameter of
an `AdapterStack` at the model's top (`model.adapter_stack`), and each block's layer reads its slice. The forward
splits each stacked tensor once per step (`mx.split`, a view: no kernel) and the backward gives its gradient as one
concatenation of the blocks' gradients, so the optimizer's update, the finiteness check and clipping run once per
kind: 8 tensors at the 1B structure (LoRA on 7 projections, grouped) instead of 128 (issue 27). A group's block mask
(grouped_lora.py) is applied to its stacked B once per step instead of once per block.

The values are those of separate tensors, element for element: the slices are the blocks' tensors, the optimizers
work element by element. On disk nothing changes: `per_layer_layout` names each block's slice as the block's own
parameter again (which grouped_lora's `mlx_layout` then splits into mlx-lm's names), `stacked_layout` is its
inverse. Gradient checkpointing passes each block's parameters into its recomputation, so it calls
`unstack_adapters` first (a block then owns its adapters again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
import numpy as np

STACK = "adapter_stack"  # the stack's attribute on the model, and the first part of its parameters' names
ATTRS = ("lora_a", "lora_b")


class _Box:
    """A plain holder: what it holds is not a parameter or a child module of the module that holds it."""

    def __init__(self, value: Any):
        self.value = value


@dataclass(frozen=True)
class Kind:
    """One stacked tensor: the adapter's path inside a block ('self_attn.o_proj'), which attribute, the blocks
    (their parameter-name prefixes, 'model.layers.3.', in stacking order) and the block mask of a group's B."""

    path: str
    attr: str
    prefixes: tuple[str, ...]
    mask: mx.array | None

    @property
    def name(self) -> str:
        return f"{self.path}.{self.attr}"


class AdapterStack(nn.Module):
    """The stacked adapter tensors, as nested parameters named after the path inside a block."""

    def __init__(self, kinds: list[Kind], arrays: list[mx.array]):
        super().__init__()
        object.__setattr__(self, "kinds", {k.name: k for k in kinds})
        self._pieces = _Box({})  # kind -> (the stacked array split, masked?, its slices)
        for kind, array in zip(kinds, arrays, strict=True):
            node: Any = self
            parts = kind.name.split(".")
            for part in parts[:-1]:
                if part not in node:
                    node[part] = {}
                node = node[part]
            node[parts[-1]] = array

    def stacked(self, name: str) -> mx.array:
        node: Any = self
        for part in name.split("."):
            node = node[part]
        return cast(mx.array, node)

    def piece(self, name: str, index: int, masked: bool = False) -> mx.array:
        """Block `index`'s slice of a stacked tensor (with the kind's block mask applied when asked): all the
        blocks' slices come from one split of the current array, made once (per step, per traced call)."""
        array = self.stacked(name)
        cached = self._pieces.value.get((name, masked))
        if cached is None or cached[0] is not array:
            mask = self.kinds[name].mask
            source = array * mask if masked and mask is not None else array
            cached = (array, _slices(source))
            self._pieces.value[(name, masked)] = cached
        return cast(mx.array, cached[1][index])


@mx.custom_function
def _split_blocks(stacked: mx.array) -> tuple[mx.array, ...]:
    return tuple(p.squeeze(0) for p in mx.split(stacked, stacked.shape[0], axis=0))


@_split_blocks.vjp
def _split_blocks_vjp(primals: Any, cotangents: Any, outputs: Any) -> mx.array:
    # One concatenation of the blocks' gradients: MLX's own split makes one only up to 10 parts (a slice
    # update per part past that).
    return mx.stack(list(cotangents))


def _slices(stacked: mx.array) -> list[mx.array]:
    """The blocks' slices of a stacked array (views); their gradients join in one concatenation."""
    return list(cast(tuple[mx.array, ...], _split_blocks(stacked)))


def _stacked_property(attr: str) -> property:
    def get(self: nn.Module) -> mx.array:
        stack, names, index = self._stack_ref.value
        return stack.piece(names[attr], index)

    return property(get)


def _masked_b(self: nn.Module) -> mx.array:
    stack, names, index = self._stack_ref.value
    return stack.piece(names["lora_b"], index, masked=True)


_CLASSES: dict[type, type] = {}


def _stacked_class(cls: type) -> type:
    """`cls` with its adapter tensors read from the stack (one subclass per class, made once)."""
    if cls not in _CLASSES:
        namespace: dict[str, Any] = {attr: _stacked_property(attr) for attr in ATTRS}
        if hasattr(cls, "masked_b"):
            namespace["masked_b"] = _masked_b
        namespace["stacked_base"] = cls
        _CLASSES[cls] = type(cls.__name__, (cls,), namespace)
    return _CLASSES[cls]


def _mask_of(module: nn.Module) -> mx.array | None:
    mask = getattr(module, "block_mask", None)
    return cast(mx.array, mask()) if callable(mask) else None


def stack_adapters(model: nn.Module, kinds: Iterable[type]) -> int:
    """Move the adapters of the given layer classes into one stack per kind; returns how many tensors are stacked.

    A kind is stacked where at least two blocks hold it, all with one shape, dtype and block mask."""
    if STACK in model:
        return 0
    kinds = tuple(kinds)
    prefix_of = {id(m): p for p, m in model.named_modules()}
    found: dict[str, list[tuple[str, nn.Module]]] = {}
    for layer in getattr(model, "layers", []):
        prefix = prefix_of.get(id(layer))
        if prefix is None:
            continue
        for path, module in layer.named_modules():
            if type(module) in kinds and all(a in module for a in ATTRS):
                found.setdefault(path, []).append((prefix + ".", module))
    stacked: list[Kind] = []
    arrays: list[mx.array] = []
    members: list[tuple[str, list[tuple[str, nn.Module]]]] = []
    for path, blocks in found.items():
        if len(blocks) < 2:
            continue
        modules = [m for _, m in blocks]
        masks = [_mask_of(m) for m in modules]
        alike = all(
            {(m[a].shape, m[a].dtype) for m in modules} == {(modules[0][a].shape, modules[0][a].dtype)} for a in ATTRS
        )
        same_mask = all(
            (m is None and masks[0] is None)
            or (m is not None and masks[0] is not None and np.array_equal(np.array(m), np.array(masks[0])))
            for m in masks
        )
        if not alike or not same_mask:
            continue
        prefixes = tuple(p for p, _ in blocks)
        for attr in ATTRS:
            stacked.append(Kind(path, attr, prefixes, masks[0] if attr == "lora_b" else None))
            arrays.append(mx.stack([m[attr] for m in modules]))
        members.append((path, blocks))
    if not stacked:
        return 0
    stack = AdapterStack(stacked, arrays)
    mx.eval(stack.parameters())
    for path, blocks in members:
        names = {attr: f"{path}.{attr}" for attr in ATTRS}
        for index, (_, module) in enumerate(blocks):
            for attr in ATTRS:
                del module[attr]
            module._stack_ref = _Box((stack, names, index))
            module.__class__ = _stacked_class(type(module))
    model[STACK] = stack
    return len(stacked)


def unstack_adapters(model: nn.Module) -> None:
    """Give each block its adapters back as its own parameters (same values); the stack goes."""
    if STACK not in model:
        return
    stack = cast(AdapterStack, model[STACK])
    for module in [m for _, m in model.named_modules() if hasattr(type(m), "stacked_base")]:
        own = {attr: mx.array(getattr(module, attr)) for attr in ATTRS}
        module.__class__ = type(module).stacked_base
        del module._stack_ref
        for attr, value in own.items():
            module[attr] = value
    del model[STACK]
    mx.eval(model.trainable_parameters())
    stack._pieces.value = {}


def _kinds(model: nn.Module) -> dict[str, Kind]:
    return cast(dict[str, Kind], model[STACK].kinds) if STACK in model else {}


def per_layer_layout(model: nn.Module, flat: dict[str, mx.array]) -> dict[str, mx.array]:
    """Flat arrays named after the model's parameters (or optimizer moments: 'adapter_stack.PATH.lora_a.m') with
    each stacked tensor split into its blocks' names ('model.layers.3.PATH.lora_a.m'); others as they are."""
    kinds = _kinds(model)
    if not kinds:
        return flat
    out: dict[str, mx.array] = {}
    for key, value in flat.items():
        kind = next((k for n, k in kinds.items() if key == f"{STACK}.{n}" or key.startswith(f"{STACK}.{n}.")), None)
        if kind is None:
            out[key] = value
            continue
        rest = key[len(f"{STACK}.{kind.name}") :]
        for i, prefix in enumerate(kind.prefixes):
            out[f"{prefix}{kind.name}{rest}"] = value[i]
    return out


def stacked_layout(model: nn.Module, flat: dict[str, mx.array]) -> dict[str, mx.array]:
    """`per_layer_layout`'s inverse. A parameter some blocks lack in `flat` (a start adapter for fewer blocks)
    takes those blocks' current values; a moment is stacked only where every block has it."""
    kinds = _kinds(model)
    if not kinds:
        return flat
    out = dict(flat)
    for kind in kinds.values():
        first = f"{kind.prefixes[0]}{kind.name}"
        rests = {k[len(first) :] for k in flat if k == first or k.startswith(first + ".")}
        rests |= {
            k[len(f"{p}{kind.name}") :]
            for p in kind.prefixes
            for k in flat
            if k == f"{p}{kind.name}"  # a parameter given for some blocks only
        }
        for rest in rests:
            names = [f"{p}{kind.name}{rest}" for p in kind.prefixes]
            if rest == "" and any(n in flat for n in names):
                current = model[STACK].stacked(kind.name)
                parts = [flat[n] if n in flat else current[i] for i, n in enumerate(names)]
            elif all(n in flat for n in names):
                parts = [flat[n] for n in names]
            else:
                continue
            for n in names:
                out.pop(n, None)
            out[f"{STACK}.{kind.name}{rest}"] = mx.stack(parts)
    return out
