# SPDX-License-Identifier: Apache-2.0
"""Piecewise constant and interpolated schedules, and the one-cycle policies."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _validate
from gradtx._errors import HyperparameterError
from gradtx._types import Schedule
from gradtx.schedules import _steps


def piecewise_constant_schedule(
    init_value: ArrayLike, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    """Multiplies `init_value` by each scale from its boundary step on.

    At step `t` the value is `init_value` times every `scale` whose `step <= t`.
    Boundaries past the int32 range are never reached (optax overflows inside jit).

    Args:
        init_value: Value before the first boundary.
        boundaries_and_scales: `{step: scale}` with non-negative scales, or None.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If a scale is negative (as in optax) or a concrete
            value is not finite.

    Example:
        >>> import gradtx
        >>> sched = gradtx.piecewise_constant_schedule(1.0, {10: 0.5, 20: 0.5})
        >>> [float(sched(step)) for step in (9, 10, 25)]
        [1.0, 0.5, 0.25]
    """
    fn = "piecewise_constant_schedule"
    _validate.check_range(fn, "init_value", init_value)
    items = _sorted_items(fn, boundaries_and_scales)

    def schedule(count: ArrayLike) -> jax.Array:
        value = _steps.full(init_value, count)
        for boundary, scale in items:
            scaled = value * _steps.hp(scale)
            value = jnp.where(_steps.reached(count, boundary), scaled, value)
        return value

    return schedule


def _linear(start: jax.Array, end: jax.Array, pct: jax.Array) -> jax.Array:
    return (end - start) * pct + start


def _cosine(start: jax.Array, end: jax.Array, pct: jax.Array) -> jax.Array:
    return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)


_INTERPOLATIONS: dict[str, Callable[[jax.Array, jax.Array, jax.Array], jax.Array]] = {
    "linear": _linear,
    "cosine": _cosine,
}


def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: ArrayLike,
    boundaries_and_scales: dict[int, float] | None = None,
) -> Schedule:
    """Interpolates between the running products of the scales at their boundaries.

    The value at boundary `b_i` is `init_value * s_1 * ... * s_i`; between two
    boundaries it is interpolated linearly or along half a cosine, and from step 0
    to the first boundary it moves from `init_value` to the first product.

    Args:
        interpolate_type: `"linear"` or `"cosine"`.
        init_value: Value at step 0.
        boundaries_and_scales: `{step: scale}` with non-negative scales, or None.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If `interpolate_type` is unknown, a scale is negative
            (both as in optax), or a concrete value is not finite.

    Example:
        >>> import gradtx
        >>> sched = gradtx.piecewise_interpolate_schedule("linear", 1.0, {4: 0.5})
        >>> [float(sched(step)) for step in (0, 2, 4, 9)]
        [1.0, 0.75, 0.5, 0.5]
    """
    fn = "piecewise_interpolate_schedule"
    if interpolate_type not in _INTERPOLATIONS:
        raise HyperparameterError(
            f"gradtx.{fn}: interpolate_type must be 'linear' or 'cosine', "
            f"got {interpolate_type!r}"
        )
    interpolate = _INTERPOLATIONS[interpolate_type]
    _validate.check_range(fn, "init_value", init_value)
    items = _sorted_items(fn, boundaries_and_scales)
    bounds = [0] + [boundary for boundary, _ in items]

    def schedule(count: ArrayLike) -> jax.Array:
        count = jnp.asarray(count)
        values = [_numerics.hparam(init_value)]
        for _, scale in items:
            values.append(values[-1] * _steps.hp(scale))
        out = jnp.zeros(count.shape, _numerics.hparam_dtype())
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            size = _interval(lo, hi)
            pct = _steps.elapsed(count, lo, size) / _steps.denom(size)
            inside = _steps.reached(count, lo) & ~_steps.reached(count, hi)
            out = jnp.where(inside, interpolate(values[i], values[i + 1], pct), out)
        return jnp.where(_steps.reached(count, bounds[-1]), values[-1], out)

    return schedule


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: ArrayLike,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One-cycle policy with three linear phases.

    Rises from `peak_value / div_factor` to `peak_value` over the first `pct_start`
    of `transition_steps`, falls back by `pct_final`, then falls to
    `peak_value / (div_factor * final_div_factor)` at `transition_steps`.

    Args:
        transition_steps: Positive length of the whole cycle in steps.
        peak_value: Value at step `int(pct_start * transition_steps)`.
        pct_start: Fraction of the cycle spent rising, in `[0, 1)`.
        pct_final: Fraction of the cycle at which the value is back to the start.
        div_factor: Positive; the value at step 0 is `peak_value / div_factor`.
        final_div_factor: Positive; the final value is the start value divided by it.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If `transition_steps <= 0` (as in optax), a factor is
            not positive, or the three phase boundaries are not distinct increasing
            steps (optax silently merges or reorders them).

    Example:
        >>> import gradtx
        >>> sched = gradtx.linear_onecycle_schedule(10, 1.0, 0.2, 0.6, 4.0, 2.0)
        >>> [float(sched(step)) for step in (0, 2, 6, 8, 10)]
        [0.25, 1.0, 0.25, 0.1875, 0.125]

    References:
        Smith and Topin, Super-Convergence, 2017: https://arxiv.org/abs/1708.07120
    """
    fn = "linear_onecycle_schedule"
    _check_onecycle(fn, transition_steps, peak_value, div_factor, final_div_factor)
    _validate.check_range(fn, "pct_start", pct_start, 0.0, 1.0, high_open=True)
    _validate.check_range(fn, "pct_final", pct_final, 0.0, 1.0, high_open=True)
    steps = [int(pct_start * transition_steps), int(pct_final * transition_steps)]
    _check_phases(fn, [*steps, transition_steps])
    init = _steps.hp(peak_value) / _steps.hp(div_factor)
    scales = [div_factor, 1.0 / div_factor, 1.0 / final_div_factor]
    return piecewise_interpolate_schedule(
        "linear", init, dict(zip([*steps, transition_steps], scales, strict=True))
    )


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: ArrayLike,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One-cycle policy: a cosine rise to `peak_value`, then a cosine fall.

    Rises from `peak_value / div_factor` to `peak_value` over the first `pct_start`
    of `transition_steps`, then falls to `peak_value / (div_factor *
    final_div_factor)` at `transition_steps`.

    Args:
        transition_steps: Positive length of the whole cycle in steps.
        peak_value: Value at step `int(pct_start * transition_steps)`.
        pct_start: Fraction of the cycle spent rising, in `[0, 1)`.
        div_factor: Positive; the value at step 0 is `peak_value / div_factor`.
        final_div_factor: Positive; the final value is the start value divided by it.

    Returns:
        A schedule returning a float32 (float64 under x64) scalar.

    Raises:
        HyperparameterError: If `transition_steps <= 0` (as in optax), a factor is
            not positive, or `pct_start` is outside `[0, 1)`.

    Example:
        >>> import gradtx
        >>> sched = gradtx.cosine_onecycle_schedule(10, 1.0, 0.2, 4.0, 2.0)
        >>> [float(sched(step)) for step in (0, 1, 2, 6, 10)]
        [0.25, 0.625, 1.0, 0.5625, 0.125]

    References:
        Smith and Topin, Super-Convergence, 2017: https://arxiv.org/abs/1708.07120
    """
    fn = "cosine_onecycle_schedule"
    _check_onecycle(fn, transition_steps, peak_value, div_factor, final_div_factor)
    _validate.check_range(fn, "pct_start", pct_start, 0.0, 1.0, high_open=True)
    steps = [int(pct_start * transition_steps), int(transition_steps)]
    _check_phases(fn, steps)
    init = _steps.hp(peak_value) / _steps.hp(div_factor)
    scales = [div_factor, 1.0 / (div_factor * final_div_factor)]
    return piecewise_interpolate_schedule(
        "cosine", init, dict(zip(steps, scales, strict=True))
    )


def _sorted_items(
    fn: str, boundaries_and_scales: dict[int, float] | None
) -> list[tuple[int, float]]:
    """`boundaries_and_scales` sorted by step, with finite non-negative scales."""
    items = sorted((boundaries_and_scales or {}).items())
    for boundary, scale in items:
        _validate.check_range(fn, "boundaries_and_scales key", boundary)
        _validate.check_nonnegative(fn, f"boundaries_and_scales[{boundary!r}]", scale)
    return items


def _interval(lo: float, hi: float) -> float:
    """Length of `[lo, hi)` as optax divides by it: at least 1."""
    return max(hi - lo, 1)


def _check_onecycle(
    fn: str,
    transition_steps: int,
    peak_value: ArrayLike,
    div_factor: float,
    final_div_factor: float,
) -> None:
    _validate.check_range(fn, "transition_steps", transition_steps, 0, low_open=True)
    _validate.check_range(fn, "peak_value", peak_value)
    _validate.check_range(fn, "div_factor", div_factor, 0, low_open=True)
    _validate.check_range(fn, "final_div_factor", final_div_factor, 0, low_open=True)


def _check_phases(fn: str, steps: list[int]) -> None:
    """Checks that the phase boundaries are distinct increasing steps."""
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise HyperparameterError(
            f"gradtx.{fn}: the phases must start at distinct increasing steps, got "
            f"{steps!r}; raise transition_steps or spread out the pct_* fractions"
        )
