# SPDX-License-Identifier: Apache-2.0
"""A jitted training step that donates params and optimizer state by default."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax

from gradtx import _fusion, _kernels
from gradtx._base import GradientTransformation
from gradtx._update import apply_updates


def make_step(
    tx: GradientTransformation,
    loss_fn: Callable[..., Any] | None = None,
    *,
    has_aux: bool = False,
    donate: bool = True,
    fused: bool = False,
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
        fused: On CPU, run an Adam(W) chain as one in-place pass per float32 leaf
            with float32 or bfloat16 moments (a native kernel built on first use
            with the system C++ compiler): 28 instead of 40 bytes per parameter.
            `tx` must be `adam`, `adamw` or a chain of `clip_by_global_norm`/
            `scale`/`scale_by_schedule`, one `scale_by_adam(nesterov=False)`, then
            `add_decayed_weights`/`scale`/`scale_by_learning_rate`. The state is
            the same as without fusion. Where the kernel cannot be built, a
            `RuntimeWarning` says why and the step runs the jnp program. Other
            platforms always run the jnp program.

    Returns:
        `step(params, state, grads, **extra_args) -> (params, state)` without `loss_fn`;
        `step(params, state, *args, **kwargs) -> (params, state, loss_or_(loss, aux))`
        with it.

    Raises:
        ValueError: If `fused=True` and `tx` is not a chain of the form above.
        TypeError: If `fused` or `donate` is not a bool.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.sgd(0.5)
        >>> step = gradtx.make_step(tx, lambda p, x: jnp.sum((p - x) ** 2))
        >>> params = jnp.zeros(2)
        >>> params, state, loss = step(params, tx.init(params), jnp.ones(2))
        >>> params
        Array([1., 1.], dtype=float32)
    """
    for name, value in (("donate", donate), ("fused", fused)):
        if not isinstance(value, bool):
            raise TypeError(
                f"gradtx.make_step: {name} must be a bool, got {value!r} "
                f"({type(value).__name__})"
            )
    if not fused:
        return _jit_step(tx, loss_fn, has_aux, donate, _plain_update_and_apply)
    plan = _fusion.plan(tx)
    built, why = _kernels.load()
    if not built:
        warnings.warn(
            f"gradtx.make_step: fused=True runs the jnp program instead: {why}",
            RuntimeWarning,
            stacklevel=2,
        )
        return _jit_step(tx, loss_fn, has_aux, donate, _plain_update_and_apply)
    fused_step = _jit_step(
        tx, loss_fn, has_aux, donate, functools.partial(_fusion.update_and_apply, plan)
    )
    if jax.device_count() == 1:
        return fused_step
    # The kernel sees whole arrays: params laid out over several devices take the
    # jnp program, which XLA partitions (the kernel would gather and replicate them).
    plain_step = _jit_step(tx, loss_fn, has_aux, donate, _plain_update_and_apply)
    pick = lambda params: plain_step if _spans_devices(params) else fused_step

    @functools.wraps(fused_step)
    def step(params, state, *args, **kwargs):
        return pick(params)(params, state, *args, **kwargs)

    step.lower = lambda params, *a, **k: pick(params).lower(params, *a, **k)
    return step


def _spans_devices(tree: Any) -> bool:
    return any(
        isinstance(x, jax.Array)
        and not isinstance(x, jax.core.Tracer)
        and len(x.sharding.device_set) > 1
        for x in jax.tree.leaves(tree)
    )


def _jit_step(tx, loss_fn, has_aux, donate, update_and_apply):
    donate_argnums = (0, 1) if donate else ()
    if loss_fn is None:

        def grad_step(params, state, grads, **extra_args):
            return update_and_apply(tx, grads, state, params, **extra_args)

        return jax.jit(grad_step, donate_argnums=donate_argnums)

    value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)

    def loss_step(params, state, *args, **kwargs):
        out, grads = value_and_grad(params, *args, **kwargs)
        loss = out[0] if has_aux else out
        params, state = update_and_apply(tx, grads, state, params, value=loss)
        return params, state, out

    return jax.jit(loss_step, donate_argnums=donate_argnums)


def _plain_update_and_apply(tx, grads, state, params, **extra_args):
    updates, state = tx.update(grads, state, params, **extra_args)
    return apply_updates(params, updates), state
