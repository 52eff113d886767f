"""A faster frozen quantized base for the CPU backend.

On MLX's CPU backend `quantized_matmul` runs at about 3 GFLOP/s on our 2-core
test machine, while dequantizing the weight and using a BLAS matmul runs at
about 180 GFLOP/s with OpenBLAS. `FastQuantizedLinear` does the latter, in the
forward and in the backward. Its custom VJP recomputes the dequantized weight
instead of keeping it alive from the forward, so peak memory stays at one
layer's float weight at a time. The base is frozen, so only the input gets a
gradient.

On Apple GPUs MLX's quantized kernels are the fast path: this module leaves
them alone there (see `fast_path_available` for each backend's figures). The
layer keeps QuantizedLinear's parameters and names, so adapter files and fusing
are the same whichever path trained them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import cast

import mlx.core as mx
import mlx.nn as nn

Arrays4 = tuple[mx.array, mx.array, mx.array, mx.array]
MatMul = Callable[[mx.array, mx.array, mx.array, mx.array], mx.array]  # (x, weight, scales, biases) -> x @ W.T


@cache
def _dequantized_matmul(group_size: int, bits: int) -> MatMul:
    def weight(w: mx.array, scales: mx.array, biases: mx.array) -> mx.array:
        return mx.dequantize(w, scales, biases, group_size=group_size, bits=bits)

    @mx.custom_function
    def matmul(x: mx.array, w: mx.array, scales: mx.array, biases: mx.array) -> mx.array:
        return x @ weight(w, scales, biases).astype(x.dtype).T

    @matmul.vjp
    def matmul_vjp(primals: Arrays4, cotangent: mx.array, output: mx.array) -> Arrays4:
        x, w, scales, biases = primals
        dx = cotangent @ weight(w, scales, biases).astype(cotangent.dtype)
        return dx, mx.zeros_like(w), mx.zeros_like(scales), mx.zeros_like(biases)

    return cast(MatMul, matmul)  # a custom_function, whose stub says calling it returns object


class FastQuantizedLinear(nn.QuantizedLinear):
    """QuantizedLinear computed as dequantize + matmul (the same numbers, a different kernel)."""

    def __call__(self, x: mx.array) -> mx.array:
        y = _dequantized_matmul(self.group_size, self.bits)(x, self["weight"], self["scales"], self["biases"])
        if "bias" in self:
            y = y + self["bias"]
        return y


def fast_path_available() -> bool:
    """Whether dequantize + matmul beats MLX's quantized kernels on the default device, as measured.

    CPU backend (2-core x86-64, OpenBLAS): 8.8x mlx_lm.lora's tok/s with it on a 4-bit base, about 0.3x
    without. Metal: MLX's quantized kernels are the fast path, so it stays off. CUDA (H200, Llama-3.2-1B
    shape, batch 8, before the compiled step and the chunked loss): 6,209 tok/s and 12.2 GB peak with it,
    5,367 tok/s and 17.3 GB with MLX's kernels, so it is on there. After the compiled step (H100, the same
    shape): MLX's kernels 6,382 tok/s at 11.5 GB; the dequantize path is not measured there yet.
    """
    if mx.default_device().type == mx.DeviceType.cpu:
        return True
    cuda = getattr(mx, "cuda", None)  # decided by the backend itself, never by "not Metal"
    return bool(cuda is not None and cuda.is_available())


def use_fast_quantized_layers(model: nn.Module) -> int:
    """Switch every affine QuantizedLinear in the model to the fast path; returns how many."""
    count = 0
    for _, module in model.named_modules():
        if type(module) is nn.QuantizedLinear and getattr(module, "mode", "affine") == "affine" and "biases" in module:
            module.__class__ = FastQuantizedLinear  # same parameters, only __call__ differs
            count += 1
    return count


def restore_quantized_layers(model: nn.Module) -> None:
    """Back to plain QuantizedLinear (before fusing or saving a model)."""
    for _, module in model.named_modules():
        if type(module) is FastQuantizedLinear:
            # mypy narrowed `module` to FastQuantizedLinear; switching it back to its base class is the point
            module.__class__ = nn.QuantizedLinear  # type: ignore[assignment]
