"""The optimizer's update, applied or left out by an array inside the graph: a step has no host decision.

`mx.where(ok, new, old)` on each output of MLX's own update would do, but it costs kernels: the update's
new moments then have two readers (the choice and the parameter's update), and `mx.compile` splits its
fused kernel there, into five per tensor instead of one. So for the optimizers the app offers (Adam and
AdamW without bias correction, SGD) the update is written here with the choice where it fuses: on each
moment before the parameter reads it, and on the learning rate (a scalar), so a left-out step computes
`parameter - 0 * finite`, which is the parameter. With `ok` true every value is the one MLX's `update`
gives, operation for operation (tests/test_step.py compares them); other optimizers take the `where` path.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_map


def gated_update(optimizer: optim.Optimizer, model: nn.Module, grads: Any, ok: mx.array) -> None:
    """`optimizer.update(model, grads)` where `ok`; else model and optimizer state stay as they were."""
    params = model.trainable_parameters()
    single = _gated_single(optimizer, ok)
    if single is None:
        before = tree_map(lambda x: x, optimizer.state)  # the same arrays, in containers of its own
        new = optimizer.apply_gradients(grads, params)
        model.update(tree_map(lambda n, o: mx.where(ok, n, o), new, params))
        _keep_where(ok, optimizer.state, before)
        return
    # What `apply_gradients` does around each parameter's update, with the step counted only where ok.
    rates = {name: optimizer.state[name] for name in optimizer._schedulers}
    for name, schedule in optimizer._schedulers.items():
        optimizer.state[name] = schedule(optimizer.step)
    optimizer.state["step"] = mx.where(ok, optimizer.step + 1, optimizer.step)
    model.update(tree_map(single, grads, params, optimizer.state))
    for name, rate in rates.items():  # the rates the updates used, kept only where ok (as the step is)
        optimizer.state[name] = mx.where(ok, optimizer.state[name], rate)


def _gated_single(optimizer: optim.Optimizer, ok: mx.array) -> Any:
    """Each parameter's update with the choice inside, for the optimizers written here; else None."""
    if isinstance(optimizer, optim.Adam) and type(optimizer) in (optim.Adam, optim.AdamW):
        if optimizer.bias_correction:
            return None
        decay = optimizer.weight_decay if isinstance(optimizer, optim.AdamW) else 0.0

        def adam(gradient: mx.array, parameter: mx.array, state: dict[str, mx.array]) -> mx.array:
            lr = mx.where(ok, optimizer.learning_rate.astype(gradient.dtype), 0)
            if decay:
                parameter = parameter * (1 - lr * decay)  # AdamW's, before Adam's
            b1, b2 = optimizer.betas
            m = mx.where(ok, b1 * state["m"] + (1 - b1) * gradient, state["m"])
            v = mx.where(ok, b2 * state["v"] + (1 - b2) * mx.square(gradient), state["v"])
            state["m"], state["v"] = m, v
            return parameter - lr * m / (mx.sqrt(v) + optimizer.eps)

        return adam
    if type(optimizer) is optim.SGD:

        def sgd(gradient: mx.array, parameter: mx.array, state: dict[str, mx.array]) -> mx.array:
            gradient = mx.where(ok, gradient, 0)
            lr = mx.where(ok, optimizer.learning_rate.astype(gradient.dtype), 0)
            if optimizer.weight_decay != 0:
                gradient = gradient + optimizer.weight_decay * parameter
            if optimizer.momentum <= 0:
                return parameter - lr * gradient
            v = optimizer.momentum * state["v"]
            v = v + (1 - optimizer.dampening) * gradient if optimizer.dampening > 0 else v + gradient
            v = mx.where(ok, v, state["v"])
            update = gradient + optimizer.momentum * v if optimizer.nesterov else v
            state["v"] = v
            return parameter - lr * update

        return sgd
    return None


def _keep_where(ok: mx.array, tree: Any, before: Any) -> None:
    """In place (the compiled step reads the optimizer's state from the very containers it was given): each
    array of `tree` becomes itself where `ok`, else its value in `before`."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for key, value in list(items):
        if isinstance(value, mx.array):
            tree[key] = mx.where(ok, value, before[key])
        elif isinstance(value, (dict, list)):
            _keep_where(ok, value, before[key])
