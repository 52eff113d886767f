"""LoRA of projections that read the same input, computed together: fewer, larger kernels per step.

In a transformer block q, k and v read the same hidden states, and so do the MLP's gate and up. mlx-lm
gives each projection its own adapter: per step, 6 rank-r matmuls each (x·A, (xA)·B, four in the
backward), tiny and latency-bound on a GPU, and an optimizer update and a finiteness check per tensor.
Here the projections of one group share one `lora_a` holding their A side by side (x·[A_q|A_k|A_v] is one
matmul) and one `lora_b` holding their B as blocks on the diagonal, read through a constant block mask (so
the zeros between blocks stay out of the product and their gradient is exactly zero): 6 matmuls and 2
optimizer updates per group, whatever its size. Where the members' frozen base layers are alike (all
`Linear`, or all `QuantizedLinear` with one setting), they become one layer too, their weights stacked on
the output axis at load: one base matmul forward and one backward per group, and the group's output is
split (a view) among its members. Each member gets the value mlx-lm's `LoRALinear` gives it (the base's
output plus the scaled LoRA's, in the input's dtype), to rounding.

On disk nothing changes: `mlx_layout` splits a group's arrays (and its optimizer moments) back into
mlx-lm's `...q_proj.lora_a` / `lora_b`, and `grouped_layout` puts them back together, exactly (blocks are
copied, never recomputed). Only plain LoRA without dropout is grouped: dropout draws a mask per projection,
DoRA has its own magnitude per projection; those keep mlx-lm's layers. And only under an optimizer that updates
each element on its own (ELEMENTWISE_OPTIMIZERS): Muon orthogonalizes a whole matrix and Adafactor factors its
second moment by rows and columns, so on a group's matrix they would compute another update than on each
projection's, and Adafactor's factored moments cannot be split back into mlx-lm's per-projection ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn

from .stacked_lora import per_layer_layout, stacked_layout

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # projections that read the same input
ELEMENTWISE_OPTIMIZERS = ("adamw", "adam", "sgd")  # their update of an element reads that element alone
GROUP_PREFIX = "lora_group_"  # the group's attribute in the block: lora_group_q_proj, lora_group_gate_proj


class _Box:
    """A plain holder: what it holds is not a parameter or a child module of the module that holds it."""

    def __init__(self, value: Any):
        self.value = value


class SharedInputLoRA(nn.Module):
    """The adapters of projections that read one input: A side by side, B as diagonal blocks; with `base`,
    the projections' frozen base layers too, as one layer whose outputs are theirs side by side."""

    def __init__(
        self,
        names: tuple[str, ...],
        lora_a: list[mx.array],
        lora_b: list[mx.array],
        scale: float,
        base: nn.Module | None = None,
    ):
        super().__init__()
        self.scale = scale
        if base is not None:
            self.base = base
        # Plain attributes (a tuple or list set on a Module would join its parameter tree).
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "widths", [b.shape[1] for b in lora_b])
        self.rank = lora_a[0].shape[1]
        r, total = self.rank, sum(self.widths)
        self.lora_a = mx.concatenate(lora_a, axis=1)
        mask = mx.zeros((r * len(names), total), dtype=lora_b[0].dtype)
        blocks = mx.zeros_like(mask)
        for i, (start, width) in enumerate(self._columns()):
            mask[i * r : (i + 1) * r, start : start + width] = 1
            blocks[i * r : (i + 1) * r, start : start + width] = lora_b[i]
        self.lora_b = blocks
        mx.eval(mask)
        self._mask = _Box(mask)
        self._cache = _Box(None)  # (input, outputs, reads left): the members' shared product for one input
        self.adapters_on = True  # off: the members compute their base layers alone (see `adapters_off`)

    def block_mask(self) -> mx.array:
        """1 on the members' blocks of `lora_b`, 0 between them."""
        return cast(mx.array, self._mask.value)

    def masked_b(self) -> mx.array:
        """`lora_b` as the product reads it (a stack applies the mask to all blocks' B at once: stacked_lora.py)."""
        return self.lora_b * self._mask.value

    def _columns(self) -> list[tuple[int, int]]:
        starts = [sum(self.widths[:i]) for i in range(len(self.widths))]
        return list(zip(starts, self.widths, strict=True))

    def outputs(self, x: mx.array) -> list[mx.array]:
        """Each member's output for input x (with a shared base), else its unscaled LoRA output; made once
        for the members that share x."""
        cached = self._cache.value
        if cached is not None and cached[0] is x:
            x_, outs, left = cached
            self._cache.value = (x_, outs, left - 1) if left > 1 else None
            return cast(list[mx.array], outs)
        if not self.adapters_on:
            z = self.base(x) if "base" in self else x[..., :0]  # a member with a base of its own adds nothing
        else:
            z = (x @ self.lora_a) @ self.masked_b()
            if "base" in self:  # as LoRALinear: the base's output plus the scaled LoRA's, in the input's dtype
                z = self.base(x) + (self.scale * z).astype(x.dtype)
        outs = cast(list[mx.array], mx.split(z, [s for s, _ in self._columns()[1:]], axis=-1))
        self._cache.value = (x, outs, len(self.names) - 1)
        return outs

    def split(self, a: mx.array, b: mx.array) -> list[tuple[mx.array, mx.array]]:
        """Each member's (A, B) from arrays of this group's layout (its parameters or their moments)."""
        r = self.rank
        return [
            (a[:, i * r : (i + 1) * r], b[i * r : (i + 1) * r, s : s + w]) for i, (s, w) in enumerate(self._columns())
        ]

    def join(self, parts: list[tuple[mx.array, mx.array]]) -> tuple[mx.array, mx.array]:
        """The group's (lora_a, lora_b) layout from each member's (A, B), zeros between the blocks."""
        r = self.rank
        a = mx.concatenate([p[0] for p in parts], axis=1)
        b = mx.zeros((r * len(parts), sum(self.widths)), dtype=parts[0][1].dtype)
        for i, (s, w) in enumerate(self._columns()):
            b[i * r : (i + 1) * r, s : s + w] = parts[i][1]
        return a, b


class GroupedLoRALinear(nn.Module):
    """A projection of a group: its block of the group's output (with its own base layer, unless the group
    holds the members' bases as one)."""

    def __init__(self, linear: nn.Module | None, group: SharedInputLoRA, index: int, scale: float):
        super().__init__()
        if linear is not None:
            self.linear = linear
        self.scale = scale
        self._group = _Box(group)
        self._index = index

    def __call__(self, x: mx.array) -> mx.array:
        group = self._group.value
        if "linear" in self and not group.adapters_on:
            return self.linear(x)
        out = group.outputs(x)[self._index]
        if "linear" not in self:
            return out
        return self.linear(x) + (self.scale * out).astype(x.dtype)


@contextlib.contextmanager
def adapters_off(model: nn.Module) -> Iterator[None]:
    """Inside the block the grouped layers compute their base layers alone (the DPO reference, the base's
    sample answers); restored on exit."""
    groups = list(_groups(model).values())
    for group in groups:
        group.adapters_on = False
        group._cache.value = None
    try:
        yield
    finally:
        for group in groups:
            group.adapters_on = True
            group._cache.value = None


def _shared_base(bases: list[nn.Module]) -> nn.Module | None:
    """One layer computing the bases' outputs side by side (their weights stacked on the output axis: a
    quantized weight's groups run along the input axis, so rows stack as they are), or None when the
    bases differ in kind or settings."""
    kinds = {type(b) for b in bases}
    if len(kinds) != 1 or kinds.pop() not in (nn.Linear, nn.QuantizedLinear):
        return None
    first = bases[0]
    keys = set(first.keys())
    if any(set(b.keys()) != keys for b in bases):
        return None
    if isinstance(first, nn.QuantizedLinear):
        settings = {(b.group_size, b.bits, b.mode) for b in bases}
        if len(settings) != 1:
            return None
        out_dims = sum(b["weight"].shape[0] for b in bases)
        fused: nn.Module = nn.QuantizedLinear(
            first["scales"].shape[1] * first.group_size,
            out_dims,
            "bias" in first,
            first.group_size,
            first.bits,
            first.mode,
        )
    else:
        fused = nn.Linear(first["weight"].shape[1], sum(b["weight"].shape[0] for b in bases), "bias" in first)
    for key in keys:  # weight (scales, biases), bias: every array stacks on the output axis
        fused[key] = mx.concatenate([b[key] for b in bases], axis=0)
    mx.eval(fused.parameters())  # the members' own copies go with them
    fused.freeze()
    return fused


def group_lora_layers(model: nn.Module) -> int:
    """Replace the LoRA layers of each block's shared-input projections by grouped ones; returns how many
    groups. A group forms only where all its projections have plain LoRA of one rank and scale, no dropout."""
    from mlx_lm.tuner.lora import LoRALinear

    count = 0
    for layer in getattr(model, "layers", []):
        for _, parent in layer.named_modules():
            for names in GROUPS:
                members = [parent.get(n) if isinstance(parent, dict) else None for n in names]
                if not all(type(m) is LoRALinear for m in members):
                    continue
                loras = cast(list[Any], members)
                same = {(m.lora_a.shape[0], m.lora_a.shape[1], m.scale, 1 - m.dropout._p_1) for m in loras}
                if len(same) != 1 or next(iter(same))[3] != 0:
                    continue
                base = _shared_base([m.linear for m in loras])
                scale = loras[0].scale
                group = SharedInputLoRA(names, [m.lora_a for m in loras], [m.lora_b for m in loras], scale, base)
                parent[GROUP_PREFIX + names[0]] = group
                for i, (name, m) in enumerate(zip(names, loras, strict=True)):
                    parent[name] = GroupedLoRALinear(None if base is not None else m.linear, group, i, scale)
                count += 1
    return count


def load_adapter_weights(model: nn.Module, flat: dict[str, mx.array]) -> None:
    """Adapter weights in mlx-lm's layout (a checkpoint, a saved start) into the model, grouped or not."""
    model.load_weights(list(grouped_layout(model, flat).items()), strict=False)


def _groups(model: nn.Module) -> dict[str, SharedInputLoRA]:
    """Each group by its path: 'model.layers.0.self_attn.lora_group_q_proj'."""
    return {p: m for p, m in model.named_modules() if isinstance(m, SharedInputLoRA)}


def mlx_layout(model: nn.Module, flat: dict[str, mx.array]) -> dict[str, mx.array]:
    """Flat arrays named after the model's parameters (adapters, or optimizer moments: 'PATH.lora_a.m') with
    each group's arrays split into mlx-lm's per-projection names (a stacked tensor first into its blocks' names,
    stacked_lora.py); other entries as they are."""
    flat = per_layer_layout(model, flat)
    groups = _groups(model)
    if not groups:
        return flat
    out: dict[str, mx.array] = {}
    done: set[str] = set()
    for key, value in flat.items():
        owner = next((p for p in groups if key.startswith(p + ".lora_")), None)
        if owner is None:
            out[key] = value
            continue
        rest = key[len(owner) + len(".lora_a") :]  # '' for a parameter, '.m' for a moment
        if owner + rest in done:
            continue
        done.add(owner + rest)
        group, parent = groups[owner], owner.rsplit(".", 1)[0]
        parts = group.split(flat[f"{owner}.lora_a{rest}"], flat[f"{owner}.lora_b{rest}"])
        for name, (a, b) in zip(group.names, parts, strict=True):
            out[f"{parent}.{name}.lora_a{rest}"] = a
            out[f"{parent}.{name}.lora_b{rest}"] = b
    return out


def grouped_layout(model: nn.Module, flat: dict[str, mx.array]) -> dict[str, mx.array]:
    """`mlx_layout`'s inverse: mlx-lm's per-projection names put together into the model's groups (and stacks)."""
    groups = _groups(model)
    if not groups:
        return stacked_layout(model, flat)
    out = dict(flat)
    for owner, group in groups.items():
        parent = owner.rsplit(".", 1)[0]
        first = f"{parent}.{group.names[0]}.lora_a"
        for key in [k for k in flat if k.startswith(first)]:
            rest = key[len(first) :]
            names = [(f"{parent}.{n}.lora_a{rest}", f"{parent}.{n}.lora_b{rest}") for n in group.names]
            if not all(a in flat and b in flat for a, b in names):
                continue
            a, b = group.join([(flat[a], flat[b]) for a, b in names])
            for ka, kb in names:
                del out[ka], out[kb]
            out[f"{owner}.lora_a{rest}"], out[f"{owner}.lora_b{rest}"] = a, b
    return stacked_layout(model, out)
