# SPDX-License-Identifier: Apache-2.0
"""Scaling by constants, schedules, learning rates and signs."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _fusion, _numerics, _validate
from gradtx._base import GradientTransformation, stateless, stateless_with_tree_map
from gradtx._types import ScalarOrSchedule, Schedule


class ScaleByScheduleState(NamedTuple):
    """State of `scale_by_schedule`: the int32 step the schedule is evaluated at."""

    count: jax.Array


def _times(updates, factor: jax.Array):
    """Multiplies every leaf by a scalar in float32 (or wider), keeping leaf dtypes."""
    factor = _numerics.hparam(factor)

    def leaf(u):
        x = _numerics.up(u)
        return (x * _numerics.like(factor, x)).astype(u.dtype)

    return jax.tree.map(leaf, updates)


def scale(step_size: ArrayLike) -> GradientTransformation:
    """Multiplies every update by a constant `step_size`.

    Args:
        step_size: A finite scalar (negative values flip the direction); may be traced.

    Returns:
        A stateless transformation.

    Raises:
        HyperparameterError: If a concrete `step_size` is not finite.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale(-0.1)
        >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
        Array([-0.1, -0.1], dtype=float32)
    """
    _validate.check_range("scale", "step_size", step_size)
    tx = stateless(lambda updates, _: _times(updates, step_size))
    return _fusion.describe(tx, "scale", step_size=step_size)


def scale_by_schedule(step_size_fn: Schedule) -> GradientTransformation:
    """Multiplies the updates by `step_size_fn(count)`, then advances `count`.

    Args:
        step_size_fn: Maps the int32 step (0 on the first update) to a scalar.

    Returns:
        A transformation with `ScaleByScheduleState`.

    Raises:
        TypeError: If `step_size_fn` is not callable.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_schedule(lambda c: 1.0 / (c.astype(jnp.float32) + 1))
        >>> u, s = tx.update(jnp.ones(1), tx.init(jnp.ones(1)))
        >>> tx.update(jnp.ones(1), s)[0]
        Array([0.5], dtype=float32)
    """
    if not callable(step_size_fn):
        raise TypeError(
            "gradtx.scale_by_schedule: step_size_fn must be callable, "
            f"got {step_size_fn!r}"
        )

    def init(params):
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        factor = step_size_fn(state.count)
        return _times(updates, factor), ScaleByScheduleState(
            count=_numerics.safe_int32_increment(state.count)
        )

    tx = GradientTransformation(init, update)
    return _fusion.describe(tx, "scale_by_schedule", step_size_fn=step_size_fn)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule | None = None, *, flip_sign: bool = True
) -> GradientTransformation:
    """Multiplies the updates by `-learning_rate` (or `+learning_rate`).

    The only block of a canonical chain that flips the sign. Unlike optax, `None`
    means a learning rate of 1 *with* the sign still flipped, so an alias built with
    `learning_rate=None` descends instead of silently ascending.

    Args:
        learning_rate: A non-negative scalar, a traced array, a schedule, or None (1).
        flip_sign: Multiply by `-learning_rate` (descent) when True.

    Returns:
        A transformation: `scale` for a constant, `scale_by_schedule` for a schedule.

    Raises:
        HyperparameterError: If a concrete `learning_rate` is negative or not finite.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_learning_rate(0.5)
        >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
        Array([-0.5, -0.5], dtype=float32)
    """
    _validate.check_nonnegative(
        "scale_by_learning_rate", "learning_rate", learning_rate
    )
    sign = -1.0 if flip_sign else 1.0
    if learning_rate is None:
        return scale(sign)
    if callable(learning_rate):
        lr_fn = learning_rate
        return scale_by_schedule(lambda count: sign * _numerics.hparam(lr_fn(count)))
    return scale(sign * _numerics.hparam(learning_rate))


def scale_by_sign() -> GradientTransformation:
    """Replaces each update by its sign (signSGD).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_sign()
        >>> tx.update(jnp.array([-3.0, 0.0, 2.0]), tx.init(None))[0]
        Array([-1.,  0.,  1.], dtype=float32)

    References:
        Bernstein et al., signSGD, 2018: https://arxiv.org/abs/1802.04434
    """
    return stateless_with_tree_map(lambda u, _: jnp.sign(u))
