# SPDX-License-Identifier: Apache-2.0
"""A jitted training step that donates params and optimizer state by default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gradtx._base import GradientTransformation
from gradtx._update import apply_updates


def make_step(
    tx: GradientTransformation,
    loss_fn: Callable[..., Any] | None = None,
    *,
    has_aux: bool = False,
    donate: bool = True,
) -> Callable[..., Any]:
    """Returns `jax.jit`-compiled step that donates the params and optimizer state.

    Donation lets XLA write the new params and state into the old buffers: no
    fresh allocation (and no first-touch page faults) per step, and no second copy of
    the model in memory. The arrays passed as params and state are invalid after the
    call; use the returned ones.

    Args:
        tx: The optimizer.
        loss_fn: Optional `loss_fn(params, *args, **kwargs)`. Without it the step takes
            gradients; with it the step computes them (and passes `value=loss` to
            `tx.update`, for transforms that use it).
        has_aux: `loss_fn` returns `(loss, aux)`.
        donate: Donate params and state (argument positions 0 and 1).

    Returns:
        `step(params, state, grads, **extra_args) -> (params, state)` without `loss_fn`;
        `step(params, state, *args, **kwargs) -> (params, state, loss_or_(loss, aux))`
        with it.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.sgd(0.5)
        >>> step = gradtx.make_step(tx, lambda p, x: jnp.sum((p - x) ** 2))
        >>> params = jnp.zeros(2)
        >>> params, state, loss = step(params, tx.init(params), jnp.ones(2))
        >>> params
        Array([1., 1.], dtype=float32)
    """
    donate_argnums = (0, 1) if donate else ()

    if loss_fn is None:

        def grad_step(params, state, grads, **extra_args):
            updates, state = tx.update(grads, state, params, **extra_args)
            return apply_updates(params, updates), state

        return jax.jit(grad_step, donate_argnums=donate_argnums)

    value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)

    def loss_step(params, state, *args, **kwargs):
        out, grads = value_and_grad(params, *args, **kwargs)
        loss = out[0] if has_aux else out
        updates, state = tx.update(grads, state, params, value=loss)
        return apply_updates(params, updates), state, out

    return jax.jit(loss_step, donate_argnums=donate_argnums)
