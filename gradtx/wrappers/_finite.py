# SPDX-License-Identifier: Apache-2.0
"""`apply_if_finite`: skip updates that contain a NaN or an Inf."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support


class ApplyIfFiniteState(NamedTuple):
    """State of `apply_if_finite`.

    Attributes:
        notfinite_count: Length of the current streak of skipped non-finite
            updates (int32). Reset to 0 by a finite update and, unlike optax, also
            when the wrapper gives up and applies a non-finite update.
        last_finite: Whether the last updates were all finite (bool).
        total_notfinite: Non-finite updates seen since `init` (int32, saturating).
        inner_state: The state of the wrapped transformation.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: Any


def apply_if_finite(
    inner: GradientTransformation, max_consecutive_errors: int
) -> GradientTransformation:
    """Skips updates that contain a NaN or an Inf, up to a streak of `max` in a row.

    A skipped step returns exact zeros and leaves the inner state bitwise unchanged
    (its step count included). After `max_consecutive_errors` skips in a row the
    next non-finite update is applied and the streak restarts at 0 (optax keeps
    counting, so it then applies every later non-finite update; optax PR #1746).

    Args:
        inner: The transformation to guard; extra keyword arguments reach it.
        max_consecutive_errors: Integer >= 0: how many non-finite updates in a row
            are skipped before one is applied; 0 applies everything. A value of at
            least `2**31 - 1` never gives up.

    Returns:
        A transformation with `ApplyIfFiniteState`.

    Raises:
        HyperparameterError: If `max_consecutive_errors` is not an integer >= 0.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.apply_if_finite(gradtx.sgd(1.0), max_consecutive_errors=2)
        >>> u, state = tx.update(jnp.array([jnp.nan]), tx.init(jnp.zeros(1)))
        >>> u, state.notfinite_count, state.total_notfinite
        (Array([0.], dtype=float32), Array(1, dtype=int32), Array(1, dtype=int32))
    """
    _validate.check_positive_int(
        "apply_if_finite", "max_consecutive_errors", max_consecutive_errors, minimum=0
    )
    # Saturating counters never exceed INT32_MAX, so a larger limit is "never".
    limit = max_consecutive_errors
    if not isinstance(limit, jax.core.Tracer):
        limit = min(limit, _numerics.INT32_MAX)
    inner = with_extra_args_support(inner)

    def init(params):
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros([], jnp.int32),
            last_finite=jnp.array(True, jnp.bool_),
            total_notfinite=jnp.zeros([], jnp.int32),
            inner_state=inner.init(params),
        )

    def update(updates, state, params=None, **extra_args):
        finite = _tree.all_finite(updates)
        streak = _numerics.safe_int32_increment(state.notfinite_count)
        apply = finite | (streak > limit)
        # Both outcomes are computed and one is selected (no lax.cond), so an inner
        # update that changes dtypes (bf16 params, f32 updates) is no type error.
        new_updates, new_inner = inner.update(
            updates, state.inner_state, params, **extra_args
        )
        old, total = state.inner_state, state.total_notfinite
        zeros = _tree.zeros_like(new_updates)
        return _tree.select(apply, new_updates, zeros), ApplyIfFiniteState(
            notfinite_count=jnp.where(apply, jnp.zeros([], jnp.int32), streak),
            last_finite=finite,
            total_notfinite=jnp.where(
                finite, total, _numerics.safe_int32_increment(total)
            ),
            inner_state=_tree.select(apply, _tree.cast_like(new_inner, old), old),
        )

    return GradientTransformation(init, update)
