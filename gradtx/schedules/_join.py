# SPDX-License-Identifier: Apache-2.0
"""Joining schedules one after another."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _validate
from gradtx._errors import HyperparameterError
from gradtx._types import Schedule
from gradtx.schedules import _steps


def join_schedules(
    schedules: Sequence[Schedule], boundaries: Sequence[int]
) -> Schedule:
    """Runs `schedules[i]` from `boundaries[i - 1]` on, each restarting at step 0.

    `schedules[0]` runs until `boundaries[0]`; from step `boundaries[i - 1]` on,
    `schedules[i]` gets `step - boundaries[i - 1]`. Unlike optax, the lengths must
    agree (optax silently drops the extra ones), and a boundary past the int32 range
    is simply never reached instead of overflowing inside jit.

    Args:
        schedules: One or more schedules `step -> value`.
        boundaries: `len(schedules) - 1` non-decreasing steps at which to switch.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If `schedules` is empty, the lengths disagree, or a
            boundary is not finite or smaller than the one before it.
        TypeError: If a schedule is not callable.

    Example:
        >>> import gradtx
        >>> sched = gradtx.join_schedules(
        ...     [gradtx.constant_schedule(1.0), gradtx.linear_schedule(1.0, 0.0, 10)],
        ...     boundaries=[5],
        ... )
        >>> sched(4), sched(10)
        (Array(1., dtype=float32), Array(0.5, dtype=float32))
    """
    fn = "join_schedules"
    schedules, boundaries = list(schedules), list(boundaries)
    if not schedules:
        raise HyperparameterError(
            f"gradtx.{fn}: schedules must hold at least one schedule, got []"
        )
    if len(boundaries) != len(schedules) - 1:
        raise HyperparameterError(
            f"gradtx.{fn}: boundaries must have len(schedules) - 1 = "
            f"{len(schedules) - 1} entries, got {len(boundaries)}: {boundaries!r}"
        )
    for i, sched in enumerate(schedules):
        if not callable(sched):
            raise TypeError(
                f"gradtx.{fn}: schedules[{i}] must be callable, got {sched!r}"
            )
    _check_non_decreasing(fn, "boundaries", boundaries)

    def schedule(step: ArrayLike) -> jax.Array:
        step = jnp.asarray(step)
        value = _numerics.hparam(schedules[0](step))
        for boundary, sched in zip(boundaries, schedules[1:], strict=True):
            later = _numerics.hparam(sched(_steps.shift(step, boundary)))
            value = jnp.where(_steps.reached(step, boundary), later, value)
        return value

    return schedule


def _check_non_decreasing(fn: str, name: str, values: Sequence[object]) -> None:
    """Checks that concrete `values` are finite and sorted (repeats allowed)."""
    previous = None
    for i, value in enumerate(values):
        _validate.check_range(fn, f"{name}[{i}]", value)
        x = _validate.concrete_float(value)
        if x is None:
            continue
        if previous is not None and x < previous:
            raise HyperparameterError(
                f"gradtx.{fn}: {name} must be non-decreasing, got {list(values)!r}"
            )
        previous = x
