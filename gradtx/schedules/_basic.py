# SPDX-License-Identifier: Apache-2.0
"""Constant, polynomial and linear schedules, and the linear warmup."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._types import Schedule
from gradtx.schedules import _steps


def constant_schedule(value: ArrayLike) -> Schedule:
    """Returns `value` at every step.

    Unlike optax, which hands back `value` itself, the result is an array of at least
    float32 with the shape of the step, like every other gradtx schedule.

    Args:
        value: The value to hold; a traced array is allowed.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If a concrete `value` is not finite.

    Example:
        >>> import gradtx
        >>> gradtx.constant_schedule(0.5)(1000)
        Array(0.5, dtype=float32)
    """
    _validate.check_range("constant_schedule", "value", value)
    return lambda count: _steps.full(value, count)


def polynomial_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    power: ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Moves from `init_value` to `end_value` along a polynomial of degree `power`.

    Holds `init_value` for `transition_begin` steps, then gives
    `(init_value - end_value) * (1 - t / transition_steps)**power + end_value` with
    `t` the steps since `transition_begin`, then holds `end_value`. As in optax, a
    non-positive `transition_steps` gives the constant `init_value`, and a negative
    `transition_begin` counts as 0.

    Args:
        init_value: Value before and at the start of the transition.
        end_value: Value at and after the end of the transition.
        power: Non-negative exponent of the polynomial (1 is linear).
        transition_steps: Length of the transition in steps.
        transition_begin: Steps to hold `init_value` before the transition starts.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If a concrete value is not finite, or `power` is
            negative (the end value would be infinite).

    Example:
        >>> import gradtx
        >>> sched = gradtx.polynomial_schedule(1.0, 0.0, power=2, transition_steps=10)
        >>> sched(5)
        Array(0.25, dtype=float32)
    """
    return _polynomial(
        "polynomial_schedule",
        init_value,
        end_value,
        power,
        transition_steps,
        transition_begin,
    )


def _polynomial(
    fn: str,
    init_value: ArrayLike,
    end_value: ArrayLike,
    power: ArrayLike,
    transition_steps: int,
    transition_begin: int,
) -> Schedule:
    """`polynomial_schedule`, with errors naming the public function `fn`."""
    for name, value in [
        ("init_value", init_value),
        ("end_value", end_value),
        ("transition_steps", transition_steps),
        ("transition_begin", transition_begin),
    ]:
        _validate.check_range(fn, name, value)
    _validate.check_nonnegative(fn, "power", power)
    steps = _validate.concrete_float(transition_steps)
    if steps is not None and steps <= 0:
        return constant_schedule(init_value)
    start = _steps.start(transition_begin)

    def schedule(count: ArrayLike) -> jax.Array:
        done = _steps.elapsed(count, start, transition_steps)
        # Under jit XLA divides by multiplying with the reciprocal, so `done / steps`
        # can exceed 1 by an ulp at the end; optax then raises a negative number to
        # a fractional power and returns NaN. Flooring at 0 keeps the end value.
        frac = jnp.maximum(1 - done / _steps.denom(transition_steps), 0)
        init, end = _steps.hp(init_value), _steps.hp(end_value)
        return (init - end) * frac ** _steps.hp(power) + end

    return schedule


def linear_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Moves linearly from `init_value` to `end_value` over `transition_steps`.

    The same as `polynomial_schedule` with `power=1`, edge cases included.

    Args:
        init_value: Value before and at the start of the transition.
        end_value: Value at and after the end of the transition.
        transition_steps: Length of the transition in steps; non-positive gives the
            constant `init_value`.
        transition_begin: Steps to hold `init_value` before the transition starts.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If a concrete value is not finite.

    Example:
        >>> import gradtx
        >>> sched = gradtx.linear_schedule(1.0, 0.0, transition_steps=4)
        >>> sched(1), sched(100)
        (Array(0.75, dtype=float32), Array(0., dtype=float32))
    """
    return _polynomial(
        "linear_schedule", init_value, end_value, 1, transition_steps, transition_begin
    )


def warmup_constant_schedule(
    init_value: ArrayLike, peak_value: ArrayLike, warmup_steps: int
) -> Schedule:
    """Warms up linearly from `init_value` to `peak_value`, then holds `peak_value`.

    As in optax, a non-positive `warmup_steps` gives the constant `init_value`.

    Args:
        init_value: Value at step 0.
        peak_value: Value from step `warmup_steps` on.
        warmup_steps: Length of the linear warmup.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If a concrete value is not finite.

    Example:
        >>> import gradtx
        >>> sched = gradtx.warmup_constant_schedule(0.0, 1.0, warmup_steps=4)
        >>> sched(2), sched(10)
        (Array(0.5, dtype=float32), Array(1., dtype=float32))
    """
    return _polynomial(
        "warmup_constant_schedule", init_value, peak_value, 1, warmup_steps, 0
    )
