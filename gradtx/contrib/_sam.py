# SPDX-License-Identifier: Apache-2.0
"""Sharpness-aware minimization: `sam` and its adversarial step's `normalize`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _numerics, _tree, _validate
from gradtx._base import EmptyState, GradientTransformation, with_extra_args_support
from gradtx._update import apply_updates

# optax names the (empty) state of `normalize` separately.
NormalizeState = EmptyState


def normalize() -> GradientTransformation:
    """Divides the updates by their global l2 norm (zero updates stay zero).

    The norm is accumulated in float32. Unlike optax, an all-zero gradient gives
    zero updates instead of 0/0 = NaN (optax PR#1743, RELIABILITY.md B5).

    Returns:
        A stateless transformation (`NormalizeState`).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.normalize()
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(None))[0]
        Array([0.6, 0.8], dtype=float32)
    """

    def init(params):
        del params
        return NormalizeState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        n = _tree.norm(updates)
        safe = jnp.where(n > 0, n, jnp.ones_like(n))

        def leaf(g):
            return (_numerics.up(g) / safe.astype(_numerics.up(g).dtype)).astype(
                g.dtype
            )

        return jax.tree.map(leaf, updates), state

    return GradientTransformation(init, update)


class SAMState(NamedTuple):
    """State of `sam`.

    Attributes:
        steps_since_sync: Adversarial steps taken since the last outer update.
        opt_state: State of the outer optimizer.
        adv_state: State of the adversarial optimizer.
        cache: The outer params at the last synchronization (None in opaque mode).
    """

    steps_since_sync: jax.Array
    opt_state: Any
    adv_state: Any
    cache: Any


def _neg(tree: Any) -> Any:
    return jax.tree.map(jnp.negative, tree)


def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradientTransformation:
    """Sharpness-aware minimization: adversarial ascent steps, then an outer step.

    Transparent mode (default): of every `sync_period` calls, the first
    `sync_period - 1` return ascent steps `-adv_optimizer(g)` and the last returns
    the outer step taken from the cached params with the gradient at the perturbed
    point. Opaque mode: each call runs the ascent steps internally, calling
    `update(..., grad_fn=fn)` with `fn(params, i) -> grads`, and returns the outer step.

    Args:
        optimizer: The outer optimizer.
        adv_optimizer: The adversarial optimizer, e.g. `chain(normalize(), sgd(rho))`.
        sync_period: Calls per outer step, an integer >= 1.
        reset_state: Re-initialize the adversarial state after each outer step.
        opaque_mode: Run the adversarial steps inside `update` (needs `grad_fn`).
        batch_axis_name: Opaque mode: `pmean` the adversarial grads over this axis.

    Returns:
        A transformation with `SAMState`; `update` needs `params`.

    Raises:
        HyperparameterError: If `sync_period` is not an integer >= 1.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> adv = gradtx.chain(gradtx.normalize(), gradtx.sgd(0.1))
        >>> tx = gradtx.sam(gradtx.sgd(0.01), adv)
        >>> p = jnp.ones(2)
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(p), p)[0].round(4)
        Array([0.06, 0.08], dtype=float32)

    References:
        Foret et al., 2021: https://arxiv.org/abs/2010.01412
    """
    _validate.check_positive_int("sam", "sync_period", sync_period)
    optimizer = with_extra_args_support(optimizer)
    adv_optimizer = with_extra_args_support(adv_optimizer)

    def init(params):
        return SAMState(
            steps_since_sync=jnp.zeros([], jnp.int32),
            opt_state=optimizer.init(params),
            adv_state=adv_optimizer.init(params),
            cache=None if opaque_mode else params,
        )

    def transparent(updates, state, params, grad_fn, extra_args):
        del grad_fn
        _tree.require_params("sam", params)
        first = state.steps_since_sync == 0
        last = state.steps_since_sync == sync_period - 1
        adv_updates, adv_state = adv_optimizer.update(
            updates, state.adv_state, params, **extra_args
        )
        adv_updates = _neg(adv_updates)
        opt_updates, opt_state = optimizer.update(
            updates, state.opt_state, state.cache, **extra_args
        )

        def outer(c, p, u, a):
            cd = _numerics.leaf_dtype(c, p, u)
            out = c.astype(cd) - p.astype(cd) + u.astype(cd)
            return out.astype(a.dtype)

        opt_updates = jax.tree.map(outer, state.cache, params, opt_updates, adv_updates)
        if reset_state:
            fresh = adv_optimizer.init(params)
            adv_state = _tree.select(last, fresh, adv_state)
        else:
            adv_state = _tree.select(last, state.adv_state, adv_state)
        return _tree.select(last, opt_updates, adv_updates), SAMState(
            steps_since_sync=(state.steps_since_sync + 1) % jnp.int32(sync_period),
            opt_state=_tree.select(last, opt_state, state.opt_state),
            adv_state=adv_state,
            cache=_tree.select(first, params, state.cache),
        )

    def opaque(updates, state, params, grad_fn, extra_args):
        if grad_fn is None:
            raise ValueError("gradtx.sam: opaque_mode=True needs update(..., grad_fn=)")
        _tree.require_params("sam", params)
        adv_params, adv_updates, adv_state = params, updates, state.adv_state
        for i in range(sync_period - 1):
            adv_updates, adv_state = adv_optimizer.update(
                adv_updates, adv_state, adv_params, **extra_args
            )
            adv_params = apply_updates(adv_params, _neg(adv_updates))
            adv_updates = grad_fn(adv_params, i)
            if batch_axis_name is not None:
                adv_updates = jax.lax.pmean(adv_updates, axis_name=batch_axis_name)
        if reset_state:
            adv_state = adv_optimizer.init(params)
        new, opt_state = optimizer.update(
            adv_updates, state.opt_state, params, **extra_args
        )
        new = jax.tree.map(lambda n, g: n.astype(g.dtype), new, updates)
        return new, SAMState(
            steps_since_sync=jnp.zeros([], jnp.int32),
            opt_state=opt_state,
            adv_state=adv_state,
            cache=None,
        )

    def update(
        updates,
        state,
        params=None,
        *,
        grad_fn: Callable[[Any, int], Any] | None = None,
        **extra_args,
    ):
        run = opaque if opaque_mode else transparent
        return run(updates, state, params, grad_fn, extra_args)

    return GradientTransformation(init, update)
