# SPDX-License-Identifier: Apache-2.0
"""Safe counters and the dtype rules of DESIGN.md §4.

Every piece of optimizer math runs in a *compute dtype* that is at least float32
(`compute_dtype`), and every hyperparameter is turned into an array of at least float32
(`hparam`), whatever the dtype of the params. A bf16 model therefore never rounds
`b2=0.999` to `1.0`, and eps never underflows to zero in float16.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx._errors import HyperparameterError

INT32_MAX = np.iinfo(np.int32).max


def safe_int32_increment(count: ArrayLike) -> jax.Array:
    """Adds one to an int32 counter, saturating at `2**31 - 1` instead of wrapping.

    As in optax (where it is `safe_increment`), a counter of another integer or
    floating dtype is accepted and saturates at its own dtype's maximum.

    Args:
        count: A counter, normally a scalar int32 array.

    Returns:
        `count + 1` in `count`'s dtype, or `count` once it has reached its maximum.

    Raises:
        HyperparameterError: If `count` is neither integer nor floating (e.g. bool).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.safe_int32_increment(jnp.asarray(2**31 - 1, jnp.int32))
        Array(2147483647, dtype=int32)
    """
    count = jnp.asarray(count)
    if count.dtype != jnp.int32:
        return safe_increment(count)
    return jnp.where(count < INT32_MAX, count + jnp.int32(1), jnp.int32(INT32_MAX))


def hparam_dtype() -> Any:
    """The dtype hyperparameters are held in: float32, or float64 under x64."""
    return jnp.zeros((), float).dtype


def hparam(value: ArrayLike) -> jax.Array:
    """Converts a hyperparameter to an array of at least float32 (not params' dtype)."""
    value = jnp.asarray(value)
    if jnp.issubdtype(value.dtype, jnp.floating) and value.dtype.itemsize >= 8:
        return value
    return value.astype(hparam_dtype()) if not jnp.iscomplexobj(value) else value


def compute_dtype(dtype: Any) -> Any:
    """The dtype optimizer math runs in for a leaf of `dtype`: at least float32."""
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return dtype
    if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize >= 4:
        return dtype
    return jnp.dtype(jnp.float32)


def real_dtype(dtype: Any) -> Any:
    """The real counterpart of a (possibly complex) floating dtype."""
    return jnp.finfo(dtype).dtype


def up(x: jax.Array) -> jax.Array:
    """Casts a leaf to its compute dtype."""
    return x.astype(compute_dtype(x.dtype))


def like(h: jax.Array, x: jax.Array) -> jax.Array:
    """Casts a scalar hyperparameter to the real dtype that `x` is computed in."""
    return h.astype(real_dtype(x.dtype))


def abs_sq(x: jax.Array) -> jax.Array:
    """`|x|**2`, real-valued for complex `x`."""
    if jnp.iscomplexobj(x):
        return jnp.real(x) ** 2 + jnp.imag(x) ** 2
    return x * x


@jax.custom_jvp
def safe_sqrt(x: jax.Array) -> jax.Array:
    """`sqrt(max(x, 0))` whose derivative at 0 is 0 rather than inf.

    The forward pass is a plain square root on purpose: a `where(x > 0, ...)` on the
    raw input makes XLA copy the whole (cheap, scalar) sum that produced `x` into
    every consumer fusion, which slowed a 148-leaf clipped chain by 10% and tripled
    its compile time (benchmarks/step.py --small --layers 12).
    """
    return jnp.sqrt(jnp.maximum(x, 0))


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    y = safe_sqrt(x)
    positive = x > 0
    return y, jnp.where(positive, t / (2 * jnp.where(positive, y, 1)), 0)


def bias_correction(decay: jax.Array, count: jax.Array) -> jax.Array:
    """`1 - decay**count`, computed in the hyperparameter dtype from an int32 count."""
    decay = hparam(decay)
    return 1 - decay ** count.astype(decay.dtype)


def leaf_dtype(*xs: jax.Array) -> Any:
    """The common compute dtype of several leaves (at least float32)."""
    return jnp.result_type(*[compute_dtype(x.dtype) for x in xs])


def moment(value: jax.Array, old: jax.Array, decay: jax.Array) -> jax.Array:
    """Exponential moving average `decay * old + (1 - decay) * value`."""
    return (1 - decay) * value + decay * old


def store(x: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """Rounds a freshly computed state leaf to its storage `dtype` once.

    Returns `(stored, value)`: the leaf to keep in the state and the same rounded value
    back in `x`'s compute dtype, which the update must use. Computing the update from
    the unrounded value instead makes XLA keep the old low-precision state alive next to
    the new one (a full copy per leaf per step): bf16 moments ran 2.1x slower than f32.
    """
    stored = x.astype(dtype)
    return stored, stored.astype(x.dtype)


def safe_increment(count: ArrayLike) -> jax.Array:
    """Adds one to a counter of any integer or float dtype, saturating at its maximum.

    Args:
        count: A counter (array or number) of an integer or floating dtype.

    Returns:
        `count + 1` in `count`'s dtype, or `count` once it has reached that dtype's
        largest value (an int8 counter stops at 127 instead of wrapping to -128).

    Raises:
        HyperparameterError: If `count` is neither integer nor floating (e.g. bool).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.safe_increment(jnp.asarray(127, jnp.int8))
        Array(127, dtype=int8)
    """
    count = jnp.asarray(count)
    dtype = count.dtype
    if jnp.issubdtype(dtype, jnp.integer) and dtype != jnp.bool_:
        top = jnp.iinfo(dtype).max
    elif jnp.issubdtype(dtype, jnp.floating):
        top = jnp.finfo(dtype).max
    else:
        raise HyperparameterError(
            "gradtx.safe_increment: count must have an integer or floating dtype, "
            f"got {count!r} of dtype {dtype}"
        )
    top = jnp.asarray(top, dtype)
    return jnp.where(count < top, count + jnp.ones((), dtype), top)


def _floor_grad_safe(value: jax.Array, floor: ArrayLike, recompute: Any) -> jax.Array:
    """`max(value, floor)` whose gradient is exactly 0 where `value <= floor`.

    A plain `maximum` of a norm still backpropagates through the norm, and the norm's
    derivative at 0 is NaN. `recompute(ones_where_small)` evaluates the norm again on
    an input replaced by ones wherever the floor wins, so that branch has finite
    derivatives that the final `where` then discards.
    """
    floor = jnp.asarray(floor).astype(value.dtype)
    small = value <= floor
    return jnp.where(small, floor, recompute(small))


def safe_norm(
    x: ArrayLike,
    min_norm: ArrayLike,
    ord: int | float | str | None = None,
    axis: tuple[int, ...] | int | None = None,
    keepdims: bool = False,
) -> jax.Array:
    """`max(jnp.linalg.norm(x, ord, axis), min_norm)` with a zero, not NaN, gradient.

    Where the norm is at or below `min_norm` the result is `min_norm` and the
    gradient with respect to `x` is 0 (a plain `maximum` gives NaN at `x = 0`).

    Args:
        x: An array.
        min_norm: The floor of the returned norm.
        ord: The norm's order, as in `jnp.linalg.norm`.
        axis: The axis (or pair of matrix axes) to reduce, as in `jnp.linalg.norm`;
            None reduces the whole vector or matrix.
        keepdims: Keep the reduced axes with size one.

    Returns:
        The floored norm, in the dtype of `jnp.linalg.norm(x)`.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> jax.grad(lambda x: gradtx.safe_norm(x, 1e-3))(jnp.zeros(2))
        Array([0., 0.], dtype=float32)
    """
    x = jnp.asarray(x)
    value = jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True)

    def recompute(small: jax.Array) -> jax.Array:
        safe_x = jnp.where(small, jnp.ones_like(x), x)
        return jnp.linalg.norm(safe_x, ord=ord, axis=axis, keepdims=True)

    out = _floor_grad_safe(value, min_norm, recompute)
    if keepdims:
        return out
    return jnp.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def safe_root_mean_squares(x: ArrayLike, min_rms: ArrayLike) -> jax.Array:
    """`max(sqrt(mean(|x|**2)), min_rms)` with a zero, not NaN, gradient.

    Args:
        x: An array, real or complex; the mean runs over all of its entries.
        min_rms: The floor of the returned root mean square.

    Returns:
        A real scalar.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.safe_root_mean_squares(jnp.array([3.0, 4.0]), 1.0)
        Array(3.535534, dtype=float32)
    """
    x = jnp.asarray(x)

    def rms(y: jax.Array) -> jax.Array:
        return jnp.sqrt(jnp.mean(abs_sq(y)))

    return _floor_grad_safe(
        rms(x), min_rms, lambda small: rms(jnp.where(small, jnp.ones_like(x), x))
    )
