# SPDX-License-Identifier: Apache-2.0
"""Step arithmetic shared by the schedules: exact for integer steps, never overflowing.

optax subtracts Python-int boundaries from the int32 step inside jit, which overflows
once a boundary passes `2**31 - 1` (optax bug B17), and some schedules convert the
step to float32 before subtracting, which rounds past `2**24`. These helpers clip the
step in its own integer dtype first, so the difference they convert is exact, and
treat a boundary beyond the dtype's range as never reached.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx import _numerics, _validate


def static_int(value: Any) -> int | None:
    """Returns `value` as a Python int when it is a concrete integer, else None."""
    if isinstance(value, (bool, jax.core.Tracer)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    array = isinstance(value, (np.ndarray, jax.Array)) and value.shape == ()
    if array and jnp.issubdtype(value.dtype, jnp.integer):
        return int(value)
    return None


def hp(value: Any) -> Any:
    """Keeps a Python number weakly typed; makes anything else an `hparam` array."""
    if isinstance(value, (int, float)) and not isinstance(value, (bool, np.generic)):
        return value
    return _numerics.hparam(value)


def denom(value: Any) -> Any:
    """A step count used as a divisor: a Python float when static, else an array."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return float(value)
    return _numerics.hparam(value)


def full(value: ArrayLike, count: ArrayLike) -> jax.Array:
    """`value` as an `hparam` array with the shape of `count`."""
    return jnp.broadcast_to(_numerics.hparam(value), jnp.shape(count))


def _int_count(count: jax.Array) -> bool:
    return bool(jnp.issubdtype(count.dtype, jnp.integer))


def elapsed(count: ArrayLike, begin: Any = 0, length: Any = None) -> jax.Array:
    """`count - begin` clipped to `[0, length]` (no upper clip for None), as a float.

    Integer counts with static non-negative integer bounds are clipped and
    subtracted in the count's dtype, so the result is exact and never overflows.
    """
    count = jnp.asarray(count)
    dtype = _numerics.hparam_dtype()
    start, size = static_int(begin), static_int(length)
    static = length is None or size is not None
    if _int_count(count) and start is not None and start >= 0 and static:
        top = int(jnp.iinfo(count.dtype).max)
        if start >= top:
            return jnp.zeros(count.shape, dtype)
        end = top if size is None else min(start + max(size, 0), top)
        return (jnp.clip(count, start, end) - start).astype(dtype)
    out = jnp.maximum(count.astype(dtype) - _numerics.hparam(begin), 0)
    if length is not None:
        out = jnp.minimum(out, _numerics.hparam(length))
    return out


def periods(count: ArrayLike, begin: Any, length: Any) -> jax.Array:
    """`floor((count - begin) / length)`, 0 before `begin`, as a float.

    Integer counts with static integer bounds use integer division: under jit XLA
    turns a float division into a multiplication by the reciprocal, which can floor
    `k * length / length` to `k - 1` (e.g. for `length=41`).
    """
    count = jnp.asarray(count)
    dtype = _numerics.hparam_dtype()
    start, size = static_int(begin), static_int(length)
    if _int_count(count) and start is not None and start >= 0 and size is not None:
        top = int(jnp.iinfo(count.dtype).max)
        if start >= top or size > top:
            return jnp.zeros(count.shape, dtype)
        return ((jnp.maximum(count, start) - start) // size).astype(dtype)
    return jnp.floor(elapsed(count, begin) / denom(length))


def reached(count: ArrayLike, boundary: Any) -> jax.Array:
    """`count >= boundary` as a bool array, safe for boundaries beyond the int range."""
    count = jnp.asarray(count)
    bound = static_int(boundary)
    if _int_count(count) and bound is not None:
        info = jnp.iinfo(count.dtype)
        if bound > int(info.max):
            return jnp.zeros(count.shape, bool)
        if bound <= int(info.min):
            return jnp.ones(count.shape, bool)
        return count >= bound
    dtype = _numerics.hparam_dtype()
    return count.astype(dtype) >= _numerics.hparam(boundary)


def shift(count: ArrayLike, boundary: Any) -> jax.Array:
    """`count - boundary` in the count's dtype, for a schedule starting at `boundary`.

    Before the boundary the result is clipped to 0 (the caller discards it), so an
    inner schedule never sees a negative or wrapped-around step.
    """
    count = jnp.asarray(count)
    bound = static_int(boundary)
    if _int_count(count) and bound is not None:
        info = jnp.iinfo(count.dtype)
        low, top = int(info.min), int(info.max)
        if bound > top:
            return jnp.zeros_like(count)
        if bound < low:
            return jnp.full_like(count, top)
        return jnp.clip(count, bound, top + min(bound, 0)) - bound
    if isinstance(boundary, (int, float)) and not isinstance(boundary, bool):
        return jnp.maximum(count - boundary, 0)
    return jnp.maximum(count - jnp.asarray(boundary).astype(count.dtype), 0)


def start(transition_begin: ArrayLike) -> ArrayLike:
    """The step a transition starts at: `transition_begin`, negative counting as 0."""
    begin = _validate.concrete_float(transition_begin)
    if begin is None:
        return jnp.maximum(transition_begin, 0)
    return 0 if begin < 0 else transition_begin
