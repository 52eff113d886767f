"""The training loss: next-token cross-entropy over the trained positions, summed, with their count.

Every loss here takes `(model, inputs, positions, targets, weights)`: `inputs` is
the (B, T) token batch, `positions` indexes the flattened (B*T) positions whose
next token is trained (padded with weight-0 entries to a fixed bucket size), and
`targets`/`weights` belong to those positions. Prompt and padding positions are
never in `positions`, so they cost nothing in the output projection.

`token_loss` computes the full logits, as a model's forward does. `ChunkedLoss`
never holds float32 logits for the whole vocabulary: it runs the model's body
once, then the output projection and the cross-entropy a chunk of positions at a
time (the idea of Apple's "Cut Your Losses in Large-Vocabulary Language Models",
Wijmans et al., 2024, in a chunked form). While training, each chunk also makes
its share of the gradient w.r.t. the hidden states before its logits are freed,
and a custom VJP hands that on. The log-sum-exp is taken in float32, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

# (model, inputs, positions, targets, weights[, reference]) -> (loss sum, count[, statistics]): the count divides
# the sums (trained tokens, or pairs); statistics are further sums a report shows (see preference.py).
LossFn = Callable[..., tuple[mx.array, ...]]
Head = Callable[[mx.array], mx.array]  # hidden states -> logits
Arrays2 = tuple[mx.array, mx.array]
Arrays3 = tuple[mx.array, mx.array, mx.array]
CHUNK_ELEMENTS = 1 << 22  # logits per chunk on the CPU (16 MB in float32): the largest tensors the loss holds
# A GPU needs taller chunks: the head's matmul reads the whole vocabulary's weights once per chunk, and at
# 32 positions (128k vocabulary) those reads and the chunks' serial launches cost the 1B shape a tenth of
# its step on an H100; at 256 positions the matmul is compute-bound again.
GPU_CHUNK_ELEMENTS = 1 << 25


def chunk_positions(vocab: int, memory_first: bool = False) -> int:
    """Positions per chunk of the loss for this vocabulary size on the default device.

    `memory_first` (gradient checkpointing: the user chose memory over time) keeps the small chunks on a GPU
    too. MLX allocates an op's output when it queues the op, ahead of the device, so several chunks' logits
    can exist at once however they are chained (measured on the CPU: about ten chunk-sized buffers at a
    time); a chunk an eighth of the size makes all of them an eighth."""
    gpu = mx.default_device().type == mx.DeviceType.gpu and not memory_first
    return max((GPU_CHUNK_ELEMENTS if gpu else CHUNK_ELEMENTS) // max(vocab, 1), 16)


def token_loss(
    model: nn.Module, inputs: mx.array, positions: mx.array, targets: mx.array, weights: mx.array
) -> tuple[mx.array, mx.array]:
    """Summed float32 cross-entropy of the trained positions from the model's full logits, and their count."""
    logits = model(inputs)
    logits = mx.take(logits.reshape(-1, logits.shape[-1]), positions, axis=0).astype(mx.float32)
    ce = nn.losses.cross_entropy(logits, targets) * weights
    return ce.sum(), weights.sum()


def _softcap(model: nn.Module) -> float | None:
    cap = getattr(model, "final_logit_softcapping", None)
    if cap is None:
        cap = getattr(getattr(model, "args", None), "final_logit_softcapping", None)
    return float(cap) if cap else None


def _head_candidates(model: nn.Module) -> list[tuple[str, Head, nn.Module]]:
    """Ways this model may map hidden states to logits: its lm_head, or its tied embedding."""
    inner = getattr(model, "model", None)
    out: list[tuple[str, Head, nn.Module]] = []
    head = getattr(model, "lm_head", None) if "lm_head" in model else None
    if isinstance(head, nn.Module):
        out.append(("lm_head", head, head))
    embed = getattr(inner, "embed_tokens", None) if inner is not None else None
    if isinstance(embed, nn.Module) and hasattr(embed, "as_linear"):
        out.append(("tied embedding", embed.as_linear, embed))
    return out


def _total(losses: Iterable[mx.array]) -> mx.array:
    """The sum of the chunks' losses (a float32 zero start adds nothing, and keeps the result an array)."""
    return sum(losses, mx.array(0.0, dtype=mx.float32))


class ChunkedLoss:
    """`token_loss`'s numbers, with logits made a chunk of positions at a time."""

    def __init__(self, model: nn.Module, head: Head, vocab: int, memory_first: bool = False):
        self.head = head
        self.cap = _softcap(model)
        self.chunk = chunk_positions(vocab, memory_first)
        # The vocabulary's ids, made once: inside a step an arange would be a kernel per chunk, every step.
        self.ids = mx.arange(vocab, dtype=mx.int32)[None, :]
        mx.eval(self.ids)

    def logits(self, hidden: mx.array) -> mx.array:
        return self._post(self.head(hidden))

    def _post(self, raw: mx.array) -> mx.array:
        if self.cap:
            raw = mx.tanh(raw / self.cap) * self.cap  # in the model's dtype, as its forward does
        return raw.astype(mx.float32)

    def _chunk(self, h: mx.array, t: mx.array, w: mx.array, with_grad: bool) -> tuple[mx.array, mx.array | None]:
        """One chunk's summed loss and, when asked, the loss's gradient w.r.t. h, made while its logits exist."""
        raw = self.head(h)
        logits = self._post(raw)
        lse = mx.logsumexp(logits, axis=-1)
        picked = mx.take_along_axis(logits, t[:, None], axis=-1)[:, 0]
        loss = ((lse - picked) * w).sum()
        if not with_grad:
            return loss, None
        ids = self.ids if self.ids.shape[-1] == logits.shape[-1] else mx.arange(logits.shape[-1])[None, :]
        onehot = ids == t[:, None]
        dlogits = (mx.exp(logits - lse[:, None]) - onehot) * w[:, None]
        if self.cap:
            dlogits = dlogits * (1 - mx.square(mx.tanh(raw / self.cap).astype(mx.float32)))
        # Only the head's input gradient: the forward inside vjp is never evaluated.
        return loss, mx.vjp(self.head, [h], [dlogits.astype(raw.dtype)])[1][0]

    def _chunks(self, h: mx.array, t: mx.array, w: mx.array, with_grad: bool) -> list[tuple[mx.array, mx.array | None]]:
        """Each chunk's (loss, gradient), in order: a chunk starts only once the one before it is done, so
        MLX never holds two chunks' logits at a time (independent chunks would all be made first)."""
        out: list[tuple[mx.array, mx.array | None]] = []
        for s in range(0, h.shape[0], self.chunk):
            hc = h[s : s + self.chunk]
            if out:
                hc = mx.depends(hc, [x for x in out[-1] if x is not None])
            out.append(self._chunk(hc, t[s : s + self.chunk], w[s : s + self.chunk], with_grad))
        return out

    def _cross_entropy(self, hidden: mx.array, targets: mx.array, weights: mx.array, with_grad: bool) -> mx.array:
        if not with_grad:  # evaluation: the forward alone
            return _total(loss for loss, _ in self._chunks(hidden, targets, weights, False))

        # The gradient w.r.t. the hidden states is made in the forward, a chunk at a time (as fused
        # linear-cross-entropy kernels do): the head runs once forward and once backward, as in a plain
        # loss, and no chunk's logits outlive it. The backward only scales it by the incoming cotangent.
        @mx.custom_function
        def summed_ce(h: mx.array, t: mx.array, w: mx.array) -> tuple[mx.array, mx.array]:
            chunks = self._chunks(h, t, w, True)
            grads = [g for _, g in chunks if g is not None]  # every chunk has one: made with_grad
            return _total(loss for loss, _ in chunks), mx.concatenate(grads, axis=0)

        @summed_ce.vjp
        def summed_ce_vjp(primals: Arrays3, cotangents: Arrays2, outputs: Arrays2) -> Arrays3:
            _, t, w = primals
            return outputs[1] * cotangents[0].astype(outputs[1].dtype), mx.zeros_like(t), mx.zeros_like(w)

        return cast(Arrays2, summed_ce(hidden, targets, weights))[0]

    def __call__(
        self, model: nn.Module, inputs: mx.array, positions: mx.array, targets: mx.array, weights: mx.array
    ) -> tuple[mx.array, mx.array]:
        hidden = model.model(inputs)
        hidden = mx.take(hidden.reshape(-1, hidden.shape[-1]), positions, axis=0)
        return self._cross_entropy(hidden, targets, weights, with_grad=model.training), weights.sum()


def logits_at(model: nn.Module, inputs: mx.array, positions: mx.array, head: ChunkedLoss | None) -> mx.array:
    """float32 logits at the given flat positions of (B*T): with the model's head split from its body (`head`),
    only those positions reach the output layer; else the full logits are made and those taken from them."""
    if head is not None:
        hidden = model.model(inputs)
        return head.logits(mx.take(hidden.reshape(-1, hidden.shape[-1]), positions, axis=0))
    logits = model(inputs)
    return mx.take(logits.reshape(-1, logits.shape[-1]), positions, axis=0).astype(mx.float32)


def chunked_loss_for(model: nn.Module, memory_first: bool = False) -> tuple[LossFn, str]:
    """The chunked loss when this model's head splits from its body (checked on a probe), else `token_loss`.

    Returns the loss and a sentence for the run's first lines. `memory_first`: see `chunk_positions`."""
    inner = getattr(model, "model", None)
    if inner is None or not callable(inner):
        return token_loss, "loss: full logits (this model has no separate body to split its output layer from)"
    probe = mx.arange(1, 9, dtype=mx.int32)[None]  # token ids every vocabulary has
    was_training = model.training
    model.eval()  # no dropout while comparing
    try:
        expected = model(probe).astype(mx.float32)
        hidden, vocab = inner(probe), expected.shape[-1]
        for name, head, module in _head_candidates(model):
            if tree_flatten(module.trainable_parameters()):
                continue  # a trained head needs its own gradient: only the full loss gives it
            loss = ChunkedLoss(model, head, vocab, memory_first)
            got = loss.logits(hidden)
            if got.shape == expected.shape and mx.allclose(got, expected, rtol=1e-4, atol=1e-4).item():
                return loss, f"loss: chunked over the vocabulary ({name}, {loss.chunk} positions per chunk)"
    except Exception as e:  # an architecture whose body needs other arguments
        return token_loss, f"loss: full logits (the output layer could not be split from the body: {e})"
    finally:
        model.train(was_training)
    return token_loss, "loss: full logits (this model's output layer could not be split from its body)"
