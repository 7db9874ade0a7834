# SPDX-License-Identifier: Apache-2.0
"""Lookahead: k fast steps forward, one slow step back."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support


class LookaheadState(NamedTuple):
    """State of `lookahead`: the fast optimizer's state and the steps since sync."""

    fast_state: Any
    steps_since_sync: jax.Array


class LookaheadParams(NamedTuple):
    """Fast params (take gradients here) and slow params (evaluate here)."""

    fast: Any
    slow: Any

    @classmethod
    def init_synced(cls, params: Any) -> LookaheadParams:
        """A pair of equal fast and slow params."""
        return cls(slow=params, fast=params)


def lookahead(
    fast_optimizer: GradientTransformation,
    sync_period: ArrayLike,
    slow_step_size: ArrayLike,
    reset_state: bool = False,
) -> GradientTransformation:
    """Lookahead: every `sync_period` fast steps, pull both params along the slow path.

    The params are `LookaheadParams(fast, slow)`; gradients must be taken at
    `params.fast`, and the returned updates (a `LookaheadParams`) must be applied
    unchanged.

    Update rule:
        fast' = fast + u (u from `fast_optimizer`); on a sync step:
        slow' = slow + a (fast' - slow);  fast' = slow'

    Args:
        fast_optimizer: The inner optimizer.
        sync_period: Fast steps per synchronization, an integer >= 1.
        slow_step_size: Step size `a` of the slow params, in [0, 1].
        reset_state: Re-initialize the fast optimizer's state at each sync.

    Returns:
        A transformation with `LookaheadState`; `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.lookahead(gradtx.sgd(1.0), sync_period=1, slow_step_size=0.5)
        >>> p = gradtx.LookaheadParams.init_synced(jnp.zeros(1))
        >>> u, _ = tx.update(jnp.ones(1), tx.init(p), p)
        >>> gradtx.apply_updates(p, u).slow
        Array([-0.5], dtype=float32)

    References:
        Zhang et al., 2019: https://arxiv.org/abs/1907.08610
    """
    _validate.check_positive_int("lookahead", "sync_period", sync_period)
    _validate.check_range("lookahead", "slow_step_size", slow_step_size, 0.0, 1.0)
    fast_optimizer = with_extra_args_support(fast_optimizer)

    def init(params):
        fast = getattr(params, "fast", None)
        return LookaheadState(
            fast_state=fast_optimizer.init(params if fast is None else fast),
            steps_since_sync=jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None, **extra_args):
        if not isinstance(params, LookaheadParams):
            raise ValueError(
                "gradtx.lookahead: params must be a LookaheadParams(fast, slow), "
                f"got {type(params).__name__}"
            )
        updates, fast_state = fast_optimizer.update(
            updates, state.fast_state, params.fast, **extra_args
        )
        sync = state.steps_since_sync == jnp.asarray(sync_period) - 1
        alpha = _numerics.hparam(slow_step_size)

        def leaf(f, u, s):
            cd = _numerics.leaf_dtype(f, u, s)
            a = alpha.astype(cd)
            diff = f.astype(cd) + u.astype(cd) - s.astype(cd)
            slow = jnp.where(sync, a * diff, 0)
            fast = jnp.where(sync, u.astype(cd) - (1 - a) * diff, u.astype(cd))
            return fast.astype(u.dtype), slow.astype(u.dtype)

        out = jax.tree.map(leaf, params.fast, updates, params.slow)
        fast, slow = _tree.unzip(out, updates, 2)
        if reset_state:
            fast_state = _tree.select(
                sync, fast_optimizer.init(params.fast), fast_state
            )
        steps = (state.steps_since_sync + 1) % jnp.asarray(sync_period, jnp.int32)
        return LookaheadParams(fast=fast, slow=slow), LookaheadState(fast_state, steps)

    return GradientTransformation(init, update)
