# SPDX-License-Identifier: Apache-2.0
"""Exponential decay, with and without a linear warmup."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._types import Schedule
from gradtx.schedules import _steps
from gradtx.schedules._basic import _polynomial, constant_schedule
from gradtx.schedules._join import join_schedules


def exponential_decay(
    init_value: ArrayLike,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: ArrayLike | None = None,
) -> Schedule:
    """Multiplies `init_value` by `decay_rate` every `transition_steps` steps.

    Gives `init_value * decay_rate**(t / transition_steps)`, with `t` the steps since
    `transition_begin` and the exponent floored if `staircase`. `end_value` bounds the
    result (below for `decay_rate < 1`, above otherwise). As in optax, a non-positive
    `transition_steps` or a zero `decay_rate` gives the constant `init_value`.

    Args:
        init_value: Value before and at the start of the decay.
        transition_steps: Steps over which the value is multiplied by `decay_rate`.
        decay_rate: Non-negative factor; above 1 the value grows (without bound,
            so to inf in float32, unless `end_value` caps it).
        transition_begin: Steps to hold `init_value`; negative counts as 0.
        staircase: Decay in discrete jumps every `transition_steps` steps.
        end_value: Optional bound on the value, or None.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If a concrete value is not finite, or `decay_rate` is
            negative (optax gives NaN, or a sign that flips with `staircase`).

    Example:
        >>> import gradtx
        >>> sched = gradtx.exponential_decay(1.0, transition_steps=10, decay_rate=0.5)
        >>> sched(20)
        Array(0.25, dtype=float32)
    """
    return _exponential(
        "exponential_decay",
        init_value,
        transition_steps,
        decay_rate,
        transition_begin,
        staircase,
        end_value,
    )


def _exponential(
    fn: str,
    init_value: ArrayLike,
    transition_steps: int,
    decay_rate: ArrayLike,
    transition_begin: int,
    staircase: bool,
    end_value: ArrayLike | None,
) -> Schedule:
    """`exponential_decay`, with errors naming the public function `fn`."""
    for name, value in [
        ("init_value", init_value),
        ("transition_steps", transition_steps),
        ("transition_begin", transition_begin),
        ("end_value", end_value),
    ]:
        _validate.check_range(fn, name, value)
    _validate.check_nonnegative(fn, "decay_rate", decay_rate)
    steps = _validate.concrete_float(transition_steps)
    rate = _validate.concrete_float(decay_rate)
    if (steps is not None and steps <= 0) or rate == 0:
        return constant_schedule(init_value)
    start = _steps.start(transition_begin)

    def schedule(count: ArrayLike) -> jax.Array:
        done = _steps.elapsed(count, start)
        if staircase:  # exact: optax's float floor drops a step late under jit
            power = _steps.periods(count, start, transition_steps)
        else:
            power = done / _steps.denom(transition_steps)
        init = _steps.hp(init_value)
        value = jnp.where(done <= 0, init, init * _steps.hp(decay_rate) ** power)
        if end_value is None:
            return value
        end = _steps.hp(end_value)
        if rate is not None:
            return jnp.maximum(value, end) if rate < 1 else jnp.minimum(value, end)
        lower = _steps.hp(decay_rate) < 1
        return jnp.where(lower, jnp.maximum(value, end), jnp.minimum(value, end))

    return schedule


def warmup_exponential_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: ArrayLike,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: ArrayLike | None = None,
) -> Schedule:
    """Warms up linearly to `peak_value`, then decays exponentially from it.

    `linear_schedule(init_value, peak_value, warmup_steps)` until `warmup_steps`,
    then `exponential_decay` started at `peak_value` and counted from `warmup_steps`.

    Args:
        init_value: Value at step 0.
        peak_value: Value at the end of the warmup, where the decay starts.
        warmup_steps: Length of the linear warmup.
        transition_steps: See `exponential_decay`.
        decay_rate: See `exponential_decay`.
        transition_begin: Steps after the warmup to hold `peak_value`.
        staircase: See `exponential_decay`.
        end_value: See `exponential_decay`.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: As `linear_schedule` and `exponential_decay`.

    Example:
        >>> import gradtx
        >>> sched = gradtx.warmup_exponential_decay_schedule(
        ...     0.0, 1.0, warmup_steps=2, transition_steps=1, decay_rate=0.5
        ... )
        >>> [float(sched(step)) for step in (1, 2, 4)]
        [0.5, 1.0, 0.25]
    """
    fn = "warmup_exponential_decay_schedule"
    warmup = _polynomial(fn, init_value, peak_value, 1, warmup_steps, 0)
    decay = _exponential(
        fn,
        peak_value,
        transition_steps,
        decay_rate,
        transition_begin,
        staircase,
        end_value,
    )
    return join_schedules([warmup, decay], [warmup_steps])
