# SPDX-License-Identifier: Apache-2.0
"""`reduce_on_plateau`: shrink the updates when a monitored value stops improving."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._errors import HyperparameterError, MissingValueError

_FN = "reduce_on_plateau"


class ReduceLROnPlateauState(NamedTuple):
    """State of `reduce_on_plateau` (optax's fields and order).

    Attributes:
        scale: The factor the updates are multiplied by (starts at 1).
        best_value: The best windowed average seen so far (+inf, or -inf for
            `mode="max"`, before the first window).
        plateau_count: Windows in a row without improvement (int32, saturating).
        cooldown_count: Windows left in the cooldown after a reduction (int32).
        count: Values accumulated in the current window (int32).
        avg_value: The running mean of the current window.
    """

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array
    avg_value: jax.Array


def _check_int(name: str, value: Any, minimum: int) -> None:
    """A concrete integer (Python, NumPy or JAX scalar) >= `minimum`; traced passes."""
    if isinstance(value, jax.core.Tracer):
        return
    arr = None if isinstance(value, bool) else np.asarray(value)
    if arr is None or arr.shape != () or arr.dtype.kind not in "iu" or arr < minimum:
        raise HyperparameterError(
            f"gradtx.{_FN}: {name} must be an integer >= {minimum}, got {value!r}"
        )


def _check(factor, patience, rtol, atol, cooldown, accumulation_size, min_scale, mode):
    _validate.check_range(_FN, "factor", factor, 0.0, 1.0, low_open=True)
    _check_int("patience", patience, 1)
    _validate.check_range(_FN, "rtol", rtol, 0.0, 1.0)
    _validate.check_nonnegative(_FN, "atol", atol)
    _check_int("cooldown", cooldown, 0)
    _check_int("accumulation_size", accumulation_size, 1)
    _validate.check_nonnegative(_FN, "min_scale", min_scale)
    if mode not in ("min", "max"):
        raise HyperparameterError(
            f"gradtx.{_FN}: mode must be 'min' or 'max', got {mode!r}"
        )


def _clamp(value: Any) -> Any:
    """Caps a concrete count at the int32 maximum: int32 counters saturate there."""
    if isinstance(value, jax.core.Tracer):
        return value
    return min(int(np.asarray(value)), _numerics.INT32_MAX)


def _threshold(best: jax.Array, rtol: jax.Array, atol: jax.Array) -> jax.Array:
    """The value to beat, in "min" orientation: `best - rtol * |best| - atol`.

    For `best >= 0` this is optax's `(1 - rtol) * best - atol`, rounding included;
    for a negative best optax's form would accept a *worse* value as an improvement.
    """
    relative = jnp.where(best >= 0, (1 - rtol) * best, (1 + rtol) * best)
    return jnp.where(best == jnp.inf, best, relative - atol)


def reduce_on_plateau(
    factor: float = 0.1,
    patience: ArrayLike = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: ArrayLike = 0,
    accumulation_size: ArrayLike = 1,
    min_scale: ArrayLike = 0.0,
    *,
    mode: str = "min",
) -> GradientTransformation:
    """Multiplies the updates by a scale that shrinks when `value` stops improving.

    `update(..., value=loss)` averages `accumulation_size` values into a window; a
    window improves when its mean beats `best - rtol * |best| - atol` (`mode="min"`)
    or `best + rtol * |best| + atol` (`mode="max"`, for accuracy-like metrics).
    After `patience` windows without improvement the scale is multiplied by
    `factor` (never below `min_scale`), then `cooldown` windows are ignored.

    Args:
        factor: Reduction factor in (0, 1]: `new_scale = scale * factor`.
        patience: Integer >= 1: windows without improvement before a reduction.
        rtol: Relative tolerance in [0, 1] for a new best.
        atol: Absolute tolerance >= 0 for a new best.
        cooldown: Integer >= 0: windows to wait after a reduction.
        accumulation_size: Integer >= 1: values averaged per window; use more than
            1 when `value` is a noisy minibatch loss.
        min_scale: Scale >= 0 below which the scale is not reduced.
        mode: `"min"` (a loss) or `"max"` (improvement means the value went up).

    Returns:
        A transformation with `ReduceLROnPlateauState`; `update` needs `value=`.

    Raises:
        HyperparameterError: If a concrete argument is outside its range.
        MissingValueError: If `update` gets no `value`, or a non-scalar one.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.reduce_on_plateau(factor=0.5, patience=1)
        >>> state = tx.init(jnp.zeros(1))
        >>> for loss in [1.0, 1.0, 1.0]:
        ...     u, state = tx.update(jnp.ones(1), state, value=loss)
        >>> u, state.scale
        (Array([0.25], dtype=float32), Array(0.25, dtype=float32))
    """
    _check(factor, patience, rtol, atol, cooldown, accumulation_size, min_scale, mode)
    sign = 1.0 if mode == "min" else -1.0
    patience, cooldown = _clamp(patience), _clamp(cooldown)
    accumulation_size = _clamp(accumulation_size)

    def init(params):
        leaves = [x for x in jax.tree.leaves(params) if hasattr(x, "dtype")]
        dtype = _numerics.leaf_dtype(*leaves) if leaves else jnp.dtype(jnp.float32)
        zero = jnp.zeros([], jnp.int32)
        return ReduceLROnPlateauState(
            scale=jnp.ones([], dtype),
            best_value=jnp.asarray(sign * jnp.inf, dtype),
            plateau_count=zero,
            cooldown_count=zero,
            count=zero,
            avg_value=jnp.zeros([], dtype),
        )

    def window_end(state):
        dtype = state.best_value.dtype
        h = lambda x: _numerics.hparam(x).astype(dtype)
        s = jnp.asarray(sign, dtype)
        improved = s * state.avg_value < _threshold(
            s * state.best_value, h(rtol), h(atol)
        )
        plateau = jnp.where(
            improved, 0, _numerics.safe_int32_increment(state.plateau_count)
        )
        cooling = state.cooldown_count > 0
        reduce = ~cooling & (plateau >= patience)
        shrunk = jnp.where(reduce, state.scale * h(factor), state.scale)
        return ReduceLROnPlateauState(
            scale=jnp.where(cooling, state.scale, jnp.maximum(shrunk, h(min_scale))),
            best_value=jnp.where(improved, state.avg_value, state.best_value),
            plateau_count=jnp.where(cooling | reduce, 0, plateau).astype(jnp.int32),
            cooldown_count=jnp.where(
                cooling, state.cooldown_count - 1, jnp.where(reduce, cooldown, 0)
            ).astype(jnp.int32),
            count=jnp.zeros([], jnp.int32),
            avg_value=jnp.zeros([], dtype),
        )

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        if value is None or jnp.shape(value) != ():
            raise MissingValueError(
                f"gradtx.{_FN}: update needs a scalar value= (the monitored loss or "
                f"metric), got {value!r}"
            )
        dtype = state.avg_value.dtype
        count = _numerics.safe_int32_increment(state.count)
        total = state.count.astype(dtype) * state.avg_value
        avg = (total + jnp.asarray(value).astype(dtype)) / count.astype(dtype)
        state = state._replace(avg_value=avg, count=count)
        state = _tree.select(count >= accumulation_size, window_end(state), state)

        def leaf(g):
            x = _numerics.up(g)
            return (x * _numerics.like(state.scale, x)).astype(g.dtype)

        return _tree.map_leaves(leaf, updates), state

    return GradientTransformation(init, update)
