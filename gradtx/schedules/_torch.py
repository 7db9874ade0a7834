# SPDX-License-Identifier: Apache-2.0
"""PyTorch's learning-rate schedulers as pure `step -> value` functions.

The value at step `t` is the learning rate a `torch.optim.lr_scheduler` gives after
`t` calls of `scheduler.step()`, so step 0 gives the initial value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _validate
from gradtx._errors import HyperparameterError
from gradtx._types import Schedule
from gradtx.schedules import _steps

# Cycle starts are precomputed up to here, past any int64 step.
_STEP_LIMIT = 2**63


def step_schedule(
    init_value: ArrayLike, step_size: int, gamma: ArrayLike = 0.1
) -> Schedule:
    """Multiplies `init_value` by `gamma` every `step_size` steps (torch's `StepLR`).

    Gives `init_value * gamma**(t // step_size)`. A `gamma` above 1 grows without
    bound and reaches inf in float32 eventually.

    Args:
        init_value: Value for the first `step_size` steps.
        step_size: Positive integer period of the decay.
        gamma: Non-negative factor applied once per period.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If `step_size` is not a positive integer, `gamma` is
            negative, or a concrete value is not finite.

    Example:
        >>> import gradtx
        >>> sched = gradtx.step_schedule(1.0, step_size=10, gamma=0.5)
        >>> [float(sched(step)) for step in (9, 10, 25)]
        [1.0, 0.5, 0.25]
    """
    fn = "step_schedule"
    _validate.check_range(fn, "init_value", init_value)
    _validate.check_positive_int(fn, "step_size", step_size)
    _validate.check_nonnegative(fn, "gamma", gamma)

    def schedule(count: ArrayLike) -> jax.Array:
        count = jnp.maximum(jnp.asarray(count), 0)
        dtype = _numerics.hparam_dtype()
        if jnp.issubdtype(count.dtype, jnp.integer):
            if step_size > int(jnp.iinfo(count.dtype).max):
                drops = jnp.zeros(count.shape, dtype)
            else:
                drops = (count // step_size).astype(dtype)
        else:
            drops = jnp.floor(count.astype(dtype) / step_size)
        return _steps.hp(init_value) * _steps.hp(gamma) ** drops

    return schedule


def multistep_schedule(
    init_value: ArrayLike, milestones: Sequence[int], gamma: ArrayLike = 0.1
) -> Schedule:
    """Multiplies `init_value` by `gamma` at each milestone (torch's `MultiStepLR`).

    Gives `init_value * gamma**n` with `n` the number of milestones `<= t`; a
    repeated milestone counts once per repeat, as in torch.

    Args:
        init_value: Value before the first milestone.
        milestones: Non-decreasing non-negative integer steps.
        gamma: Non-negative factor applied at each milestone.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If a milestone is not a non-negative integer or is
            smaller than the one before it, `gamma` is negative, or a concrete value
            is not finite.

    Example:
        >>> import gradtx
        >>> sched = gradtx.multistep_schedule(1.0, milestones=[3, 8], gamma=0.5)
        >>> [float(sched(step)) for step in (2, 3, 8)]
        [1.0, 0.5, 0.25]
    """
    fn = "multistep_schedule"
    _validate.check_range(fn, "init_value", init_value)
    _validate.check_nonnegative(fn, "gamma", gamma)
    milestones = list(milestones)
    for i, milestone in enumerate(milestones):
        _validate.check_positive_int(fn, f"milestones[{i}]", milestone, minimum=0)
    if any(b < a for a, b in itertools.pairwise(milestones)):
        raise HyperparameterError(
            f"gradtx.{fn}: milestones must be non-decreasing, got {milestones!r}"
        )

    def schedule(count: ArrayLike) -> jax.Array:
        count = jnp.asarray(count)
        dtype = _numerics.hparam_dtype()
        drops = jnp.zeros(count.shape, dtype)
        if milestones:
            drops = _count_le(_reachable(milestones, count), count).astype(dtype)
        return _steps.hp(init_value) * _steps.hp(gamma) ** drops

    return schedule


def cosine_restarts_schedule(
    init_value: ArrayLike,
    first_period: int,
    period_mult: int = 1,
    min_value: ArrayLike = 0.0,
) -> Schedule:
    """Cosine annealing with warm restarts (torch's `CosineAnnealingWarmRestarts`).

    Gives `min_value + (init_value - min_value) * (1 + cos(pi * t_cur / t_i)) / 2`,
    where the `i`-th cycle lasts `t_i = first_period * period_mult**i` steps and
    `t_cur` counts the steps since the cycle began. Cycles are found exactly, as
    torch's `step()` counts them, even where torch's `log`-based `step(epoch)` form
    rounds to the wrong cycle (e.g. step 111 of `first_period=1, period_mult=10`).

    Args:
        init_value: Value at the start of each cycle (torch's base learning rate).
        first_period: Positive integer length of the first cycle (`T_0`).
        period_mult: Integer `>= 1` growth factor of the cycle length (`T_mult`).
        min_value: Value approached at the end of each cycle (`eta_min`).

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If a period argument is not a positive integer, or a
            concrete value is not finite.

    Example:
        >>> import gradtx
        >>> sched = gradtx.cosine_restarts_schedule(1.0, first_period=2, period_mult=2)
        >>> [round(float(sched(step)), 4) for step in (0, 1, 2, 4, 6)]
        [1.0, 0.5, 1.0, 0.5, 1.0]

    References:
        Loshchilov and Hutter, SGDR, 2017: https://arxiv.org/abs/1608.03983
    """
    fn = "cosine_restarts_schedule"
    _validate.check_range(fn, "init_value", init_value)
    _validate.check_positive_int(fn, "first_period", first_period)
    _validate.check_positive_int(fn, "period_mult", period_mult)
    _validate.check_range(fn, "min_value", min_value)
    starts, lengths = [0], [first_period]
    while period_mult > 1 and starts[-1] + lengths[-1] <= _STEP_LIMIT:
        starts.append(starts[-1] + lengths[-1])
        lengths.append(lengths[-1] * period_mult)

    def schedule(count: ArrayLike) -> jax.Array:
        count = jnp.maximum(jnp.asarray(count), 0)
        dtype = _numerics.hparam_dtype()
        if period_mult == 1:
            since = _remainder(count, first_period).astype(dtype)
            period = jnp.full(count.shape, first_period, dtype)
        else:
            begins = _reachable(starts, count)
            cycle = _count_le(begins, count) - 1
            since = (count - jnp.take(begins, cycle)).astype(dtype)
            period = jnp.take(jnp.asarray([float(n) for n in lengths], dtype), cycle)
        low = _steps.hp(min_value)
        cosine = 1 + jnp.cos(jnp.pi * since / period)
        return low + (_steps.hp(init_value) - low) * cosine / 2

    return schedule


def _remainder(count: jax.Array, period: int) -> jax.Array:
    """`count % period`, for a period that may lie past the integer range."""
    integer = jnp.issubdtype(count.dtype, jnp.integer)
    if integer and period > int(jnp.iinfo(count.dtype).max):
        return count
    return count % period


def _reachable(steps: list[int], count: jax.Array) -> jax.Array:
    """The sorted `steps` a `count` can reach, as an array of the count's dtype."""
    if jnp.issubdtype(count.dtype, jnp.integer):
        top = int(jnp.iinfo(count.dtype).max)
        return jnp.asarray([s for s in steps if s <= top], count.dtype)
    return jnp.asarray([float(s) for s in steps], count.dtype)


def _count_le(sorted_steps: jax.Array, count: jax.Array) -> jax.Array:
    """How many of `sorted_steps` are `<= count`."""
    if sorted_steps.shape[0] == 0:
        return jnp.zeros(count.shape, jnp.int32)
    return jnp.searchsorted(sorted_steps, count, side="right")


def swa_schedule(
    init_value: ArrayLike,
    swa_lr: ArrayLike,
    anneal_steps: int = 10,
    anneal_strategy: str = "cos",
) -> Schedule:
    """Anneals from `init_value` to `swa_lr`, then holds it (torch's `SWALR`).

    Gives `swa_lr * alpha + init_value * (1 - alpha)` with `alpha = f(min(1, t /
    anneal_steps))`, `f(x) = (1 - cos(pi x)) / 2` ("cos") or `x` ("linear"): the
    learning rate torch's `SWALR` gives after `t` calls of `step()` when the optimizer
    had `init_value`. `anneal_steps=0` gives `swa_lr` from step 0, as torch does.

    Args:
        init_value: The learning rate when the annealing starts.
        swa_lr: The learning rate to anneal to and then hold.
        anneal_steps: Length of the annealing, an integer >= 0.
        anneal_strategy: "cos" or "linear".

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If a value is not finite, `anneal_steps` is not an
            integer >= 0, or `anneal_strategy` is not "cos" or "linear".

    Example:
        >>> import gradtx
        >>> sched = gradtx.swa_schedule(1.0, 0.5, 2, anneal_strategy="linear")
        >>> [float(sched(t)) for t in (0, 1, 2, 9)]
        [1.0, 0.75, 0.5, 0.5]
    """
    fn = "swa_schedule"
    _validate.check_range(fn, "init_value", init_value)
    _validate.check_range(fn, "swa_lr", swa_lr)
    _validate.check_positive_int(fn, "anneal_steps", anneal_steps, minimum=0)
    if anneal_strategy not in ("cos", "linear"):
        raise HyperparameterError(
            f"gradtx.{fn}: anneal_strategy must be 'cos' or 'linear', "
            f"got {anneal_strategy!r}"
        )

    def schedule(count: ArrayLike) -> jax.Array:
        dtype = _numerics.hparam_dtype()
        t = jnp.asarray(count).astype(dtype) / max(anneal_steps, 1)
        t = jnp.clip(t, 0, 1) if anneal_steps else jnp.ones_like(t)
        alpha = (1 - jnp.cos(math.pi * t)) / 2 if anneal_strategy == "cos" else t
        lr0, lr1 = _numerics.hparam(init_value), _numerics.hparam(swa_lr)
        return lr1.astype(dtype) * alpha + lr0.astype(dtype) * (1 - alpha)

    return schedule
