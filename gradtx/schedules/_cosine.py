# SPDX-License-Identifier: Apache-2.0
"""Cosine decay, with a linear warmup, and SGDR's warm restarts."""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _validate
from gradtx._errors import HyperparameterError
from gradtx._types import Schedule
from gradtx.schedules import _steps
from gradtx.schedules._basic import _polynomial
from gradtx.schedules._join import join_schedules


def cosine_decay_schedule(
    init_value: ArrayLike,
    decay_steps: int,
    alpha: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Decays `init_value` along half a cosine to `alpha * init_value`.

    Gives `init_value * ((1 - alpha) * c**exponent + alpha)` with
    `c = (1 + cos(pi * t / decay_steps)) / 2` for `t <= decay_steps`, then holds
    `alpha * init_value`. Giant `decay_steps` (past int32) are fine inside jit (B17);
    a negative step counts as 0 (optax mirrors it instead).

    Args:
        init_value: Value at step 0.
        decay_steps: Positive length of the decay in steps.
        alpha: Final value as a fraction of `init_value`.
        exponent: Non-negative power applied to the cosine factor `c`.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If `decay_steps <= 0` (as in optax), a concrete value is
            not finite, or `exponent` is negative (the final value would be inf).

    Example:
        >>> import gradtx
        >>> sched = gradtx.cosine_decay_schedule(1.0, decay_steps=10, alpha=0.2)
        >>> [round(float(sched(step)), 4) for step in (0, 5, 20)]
        [1.0, 0.6, 0.2]

    References:
        Loshchilov and Hutter, SGDR, 2017: https://arxiv.org/abs/1608.03983
    """
    return _cosine("cosine_decay_schedule", init_value, decay_steps, alpha, exponent)


def _cosine(
    fn: str,
    init_value: ArrayLike,
    decay_steps: int,
    alpha: ArrayLike,
    exponent: ArrayLike,
) -> Schedule:
    """`cosine_decay_schedule`, with errors naming the public function `fn`."""
    _validate.check_range(fn, "init_value", init_value)
    _validate.check_range(fn, "decay_steps", decay_steps, 0, low_open=True)
    _validate.check_range(fn, "alpha", alpha)
    _validate.check_nonnegative(fn, "exponent", exponent)

    def schedule(count: ArrayLike) -> jax.Array:
        done = _steps.elapsed(count, 0, decay_steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * done / _steps.denom(decay_steps)))
        a = _steps.hp(alpha)
        return _steps.hp(init_value) * ((1 - a) * cosine ** _steps.hp(exponent) + a)

    return schedule


def warmup_cosine_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    decay_steps: int,
    end_value: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Warms up linearly to `peak_value`, then decays along a cosine to `end_value`.

    `linear_schedule(init_value, peak_value, warmup_steps)` until `warmup_steps`,
    then a cosine decay from `peak_value` to `end_value` over the remaining
    `decay_steps - warmup_steps` steps (`decay_steps` counts the warmup).

    Args:
        init_value: Value at step 0.
        peak_value: Value at the end of the warmup.
        warmup_steps: Length of the linear warmup.
        decay_steps: Total length of warmup plus decay; must exceed `warmup_steps`.
        end_value: Value at and after step `decay_steps`.
        exponent: See `cosine_decay_schedule`.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If `decay_steps <= warmup_steps` (as in optax), a
            concrete value is not finite, or `exponent` is negative.

    Example:
        >>> import gradtx
        >>> sched = gradtx.warmup_cosine_decay_schedule(0.0, 1.0, 2, 12, end_value=0.5)
        >>> [float(sched(step)) for step in (1, 2, 7, 12)]
        [0.5, 1.0, 0.75, 0.5]

    References:
        Loshchilov and Hutter, SGDR, 2017: https://arxiv.org/abs/1608.03983
    """
    fn = "warmup_cosine_decay_schedule"
    warmup, total = (_validate.concrete_float(x) for x in (warmup_steps, decay_steps))
    if warmup is not None and total is not None and total <= warmup:
        raise HyperparameterError(
            f"gradtx.{fn}: decay_steps must be > warmup_steps = {warmup_steps!r}, "
            f"got {decay_steps!r}"
        )
    peak, end = (_validate.concrete_float(x) for x in (peak_value, end_value))
    if peak is not None and end is not None:
        alpha = 0.0 if peak == 0 else end / peak
    else:  # traced: the same rule, without a Python branch
        p, e = _numerics.hparam(peak_value), _numerics.hparam(end_value)
        alpha = jnp.where(p == 0, 0.0, e / jnp.where(p == 0, 1.0, p))
    rise = _polynomial(fn, init_value, peak_value, 1, warmup_steps, 0)
    fall = _cosine(fn, peak_value, decay_steps - warmup_steps, alpha, exponent)
    return join_schedules([rise, fall], [warmup_steps])


def sgdr_schedule(cosine_kwargs: Iterable[dict[str, ArrayLike]]) -> Schedule:
    """Runs warmup-cosine cycles back to back: SGD with warm restarts.

    Each dict holds the keyword arguments of one `warmup_cosine_decay_schedule`;
    its `decay_steps` is the cycle's length, after which the next cycle starts.

    Args:
        cosine_kwargs: One or more dicts of `warmup_cosine_decay_schedule` arguments.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If there is no cycle, or a cycle's arguments are bad.

    Example:
        >>> import gradtx
        >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=2, decay_steps=6)
        >>> sched = gradtx.sgdr_schedule([cycle, cycle])
        >>> [round(float(sched(step)), 4) for step in (2, 4, 6, 8)]
        [1.0, 0.5, 0.0, 1.0]

    References:
        Loshchilov and Hutter, SGDR, 2017: https://arxiv.org/abs/1608.03983
    """
    cycles = [dict(kwargs) for kwargs in cosine_kwargs]
    if not cycles:
        raise HyperparameterError(
            "gradtx.sgdr_schedule: cosine_kwargs must hold at least one cycle, got none"
        )
    schedules, boundaries, end = [], [], 0
    for kwargs in cycles:
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        end = end + kwargs["decay_steps"]
        boundaries.append(end)
    return join_schedules(schedules, boundaries[:-1])
