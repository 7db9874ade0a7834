# SPDX-License-Identifier: Apache-2.0
"""PyTorch's `CyclicLR` as a pure `step -> value` function.

The value at step `t` is the learning rate `CyclicLR` gives after `t` calls of
`scheduler.step()`, so step 0 gives `base_value`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _validate
from gradtx._errors import HyperparameterError
from gradtx._types import Schedule
from gradtx.schedules import _steps

_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def cyclic_schedule(
    base_value: ArrayLike,
    max_value: ArrayLike,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: ArrayLike = 1.0,
) -> Schedule:
    """Cycles between `base_value` and `max_value` (torch's `CyclicLR`).

    Each cycle rises linearly for `step_size_up` steps and falls for
    `step_size_down`. The amplitude `max_value - base_value` is scaled by 1
    (`"triangular"`), halved every cycle (`"triangular2"`), or multiplied by
    `gamma**t` (`"exp_range"`).

    Args:
        base_value: Value at the start of each cycle.
        max_value: Peak of the first cycle.
        step_size_up: Positive number of steps in the rising half.
        step_size_down: Non-negative steps in the falling half; None means
            `step_size_up`.
        mode: `"triangular"`, `"triangular2"` or `"exp_range"`.
        gamma: Factor in `[0, 1]` of the `"exp_range"` decay (above 1 it would
            overflow to inf, and to NaN at a cycle's start).

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If `mode` is unknown, a step size or `gamma` is out of
            range, or a concrete value is not finite.

    Example:
        >>> import gradtx
        >>> sched = gradtx.cyclic_schedule(0.0, 1.0, step_size_up=2, mode="triangular2")
        >>> [float(sched(step)) for step in range(7)]
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.25, 0.5]

    References:
        Smith, Cyclical Learning Rates, 2017: https://arxiv.org/abs/1506.01186
    """
    fn = "cyclic_schedule"
    if mode not in _CYCLIC_MODES:
        raise HyperparameterError(
            f"gradtx.{fn}: mode must be one of {', '.join(map(repr, _CYCLIC_MODES))}, "
            f"got {mode!r}"
        )
    _validate.check_range(fn, "base_value", base_value)
    _validate.check_range(fn, "max_value", max_value)
    _validate.check_range(fn, "step_size_up", step_size_up, 0, low_open=True)
    down = step_size_up if step_size_down is None else step_size_down
    _validate.check_nonnegative(fn, "step_size_down", down)
    _validate.check_range(fn, "gamma", gamma, 0.0, 1.0)

    def schedule(count: ArrayLike) -> jax.Array:
        count = jnp.maximum(jnp.asarray(count), 0)
        cycle, pos = _cycle_position(count, step_size_up, down)
        up, total = _steps.denom(step_size_up), _steps.denom(step_size_up + down)
        fall_size = _fall_size(down)
        factor = jnp.where(pos <= up, pos / up, (total - pos) / fall_size)
        if mode == "triangular":
            amplitude = factor
        elif mode == "triangular2":
            amplitude = factor / 2.0 ** (cycle - 1)
        else:
            dtype = _numerics.hparam_dtype()
            amplitude = factor * _steps.hp(gamma) ** count.astype(dtype)
        base = _steps.hp(base_value)
        return base + (_steps.hp(max_value) - base) * amplitude

    return schedule


def _fall_size(down: ArrayLike) -> ArrayLike:
    """The divisor of the falling half; 1 when it is empty (then it is never used)."""
    size = _validate.concrete_float(down)
    if size is not None:
        return size if size > 0 else 1.0
    down = _numerics.hparam(down)
    return jnp.where(down > 0, down, 1.0)


def _cycle_position(
    count: jax.Array, up: ArrayLike, down: ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """The 1-based cycle of a non-negative `count` and its step within the cycle.

    With integer step sizes both come from exact integer division, so the position
    does not lose precision for large counts as torch's float `t / total` would.
    """
    dtype = _numerics.hparam_dtype()
    up_int, down_int = _steps.static_int(up), _steps.static_int(down)
    integer = jnp.issubdtype(count.dtype, jnp.integer)
    if integer and up_int is not None and down_int is not None:
        total = up_int + down_int
        if total > int(jnp.iinfo(count.dtype).max):
            return jnp.ones(count.shape, dtype), count.astype(dtype)
        done = count // total
        return (done + 1).astype(dtype), (count - done * total).astype(dtype)
    total = _numerics.hparam(up) + _numerics.hparam(down)
    steps = count.astype(dtype)
    done = jnp.floor(steps / total)
    return done + 1, jnp.clip(steps - done * total, 0, total)
