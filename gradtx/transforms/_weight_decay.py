# SPDX-License-Identifier: Apache-2.0
"""Decoupled weight decay: `add_decayed_weights`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _fusion, _numerics, _tree, _validate
from gradtx._base import EmptyState, GradientTransformation
from gradtx._types import MaskOrFn, ScalarOrSchedule


class WeightDecaySchedule(NamedTuple):
    """State of `add_decayed_weights` with a scheduled decay: the int32 step."""

    count: jax.Array


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0, mask: MaskOrFn | None = None
) -> GradientTransformation:
    """Adds `weight_decay * params` to the updates (decoupled weight decay).

    Put it after the preconditioner and before `scale_by_learning_rate`, so the decay
    is multiplied by the learning rate but not divided by adaptive second moments.
    A callable `mask` is called with the params; a bool tree may be a prefix of them.

    Args:
        weight_decay: Non-negative coefficient, a traced array, or a schedule.
        mask: A tree of bools (or `params -> tree`); `False` leaves get no decay.
            `None` decays every leaf.

    Returns:
        A transformation whose `update` needs `params`; its state is `EmptyState`, or
        `WeightDecaySchedule` when `weight_decay` is a schedule.

    Raises:
        HyperparameterError: If a concrete `weight_decay` is negative or not finite.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.add_decayed_weights(0.5)
        >>> params = {"w": jnp.array([2.0])}
        >>> new, _ = tx.update({"w": jnp.array([1.0])}, tx.init(params), params)
        >>> new["w"]
        Array([2.], dtype=float32)

    References:
        Loshchilov & Hutter, 2019: https://arxiv.org/abs/1711.05101
    """
    _validate.check_nonnegative("add_decayed_weights", "weight_decay", weight_decay)
    scheduled = callable(weight_decay)

    def init(params):
        del params
        if scheduled:
            return WeightDecaySchedule(count=jnp.zeros([], jnp.int32))
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params("add_decayed_weights", params)
        if scheduled:
            wd = _numerics.hparam(weight_decay(state.count))
            new_state = WeightDecaySchedule(
                count=_numerics.safe_int32_increment(state.count)
            )
        else:
            wd = _numerics.hparam(weight_decay)
            new_state = state

        def leaf(u, p, keep=True):
            if u is None or keep is False:
                return u
            x = _numerics.up(u)
            decayed = x + _numerics.like(wd, x) * p.astype(x.dtype)
            return (
                decayed.astype(u.dtype)
                if keep is True
                else jnp.where(keep, decayed, x).astype(u.dtype)
            )

        if mask is None:
            return jax.tree.map(leaf, updates, params, is_leaf=_tree.is_none), new_state
        full_mask = _tree.resolve_mask(mask, params)
        out = jax.tree.map(leaf, updates, params, full_mask, is_leaf=_tree.is_none)
        return out, new_state

    tx = GradientTransformation(init, update)
    return _fusion.describe(
        tx, "add_decayed_weights", weight_decay=weight_decay, mask=mask
    )
