# SPDX-License-Identifier: Apache-2.0
"""optax's public moment helpers: EMAs of gradient powers over whole pytrees.

The math is done in at least float32 (DESIGN.md §4) and each new moment leaf comes
back in the dtype of the old one, so a bf16 moment stays bf16 and `b2=0.999` never
rounds to 1. `None` leaves in `updates` (masked-out parameters) stay `None`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics
from gradtx._tree import is_none as _is_none
from gradtx._types import Updates


def _ema_tree(
    fn: Callable[[jax.Array, jax.Array], jax.Array], updates: Updates, moments: Any
) -> Any:
    """Maps `fn(g, t)` over leaves in compute dtype, casting back to `t`'s dtype."""

    def leaf(g: Any, t: Any) -> Any:
        if g is None:
            return None
        g, t = jnp.asarray(g), jnp.asarray(t)
        dtype = _numerics.leaf_dtype(g, t)
        return fn(g.astype(dtype), t.astype(dtype)).astype(t.dtype)

    return jax.tree.map(leaf, updates, moments, is_leaf=_is_none)


def _as(h: ArrayLike, x: jax.Array) -> jax.Array:
    """A hyperparameter in `x`'s (compute) dtype, complex included."""
    return _numerics.hparam(h).astype(x.dtype)


def update_moment(updates: Updates, moments: Any, decay: ArrayLike, order: Any) -> Any:
    """Returns `(1 - decay) * g**order + decay * t` for each leaf pair `(g, t)`.

    Args:
        updates: The gradients `g`; `None` leaves stay `None`.
        moments: The previous moments `t`, matching `updates`.
        decay: The EMA decay, in [0, 1].
        order: The power of `g` (1 for the mean, 2 for the uncentred variance).

    Returns:
        The new moments, each leaf in its old moment's dtype.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.update_moment(jnp.array([2.0]), jnp.array([1.0]), 0.5, 2)
        Array([2.5], dtype=float32)
    """

    def fn(g: jax.Array, t: jax.Array) -> jax.Array:
        d = _as(decay, g)
        return (1 - d) * g**order + d * t

    return _ema_tree(fn, updates, moments)


def update_infinity_moment(
    updates: Updates, moments: Any, decay: ArrayLike, eps: ArrayLike
) -> Any:
    """Returns `max(|g| + eps, decay * t)` for each leaf pair (Adamax's `u`).

    Args:
        updates: The gradients `g`; `None` leaves stay `None`.
        moments: The previous infinity moments `t`, matching `updates`.
        decay: The decay of the running maximum.
        eps: Added to `|g|`.

    Returns:
        The new moments, each leaf in its old moment's dtype.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.update_infinity_moment(jnp.array([-2.0]), jnp.array([3.0]), 0.5, 0.0)
        Array([2.], dtype=float32)
    """

    def fn(g: jax.Array, t: jax.Array) -> jax.Array:
        a = jnp.abs(g)
        return jnp.maximum(a + _as(eps, a), _as(decay, t) * t)

    return _ema_tree(fn, updates, moments)


def update_moment_per_elem_norm(
    updates: Updates, moments: Any, decay: ArrayLike, order: Any
) -> Any:
    """Returns `(1 - decay) * |g|**order + decay * t`: `update_moment` of `|g|`.

    For real `g` this is `g**order` exactly as in `update_moment`; for complex `g` it
    is the real `|g|**order`, so the moment of a complex parameter is real.

    Args:
        updates: The gradients `g`; `None` leaves stay `None`.
        moments: The previous moments `t`, matching `updates`.
        decay: The EMA decay, in [0, 1].
        order: The power of `|g|`.

    Returns:
        The new moments, each leaf in its old moment's dtype.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> g = jnp.array([3.0 + 4.0j])
        >>> gradtx.update_moment_per_elem_norm(g, jnp.zeros(1), 0.5, 2)
        Array([12.5], dtype=float32)
    """

    def norm_power(g: jax.Array) -> jax.Array:
        if not jnp.iscomplexobj(g):
            return g**order
        half = order / 2
        return _numerics.abs_sq(g) ** (int(half) if float(half).is_integer() else half)

    def leaf(g: Any, t: Any) -> Any:
        if g is None:
            return None
        g, t = jnp.asarray(g), jnp.asarray(t)
        dtype = _numerics.leaf_dtype(jnp.real(g), t)
        p = norm_power(g.astype(_numerics.compute_dtype(g.dtype))).astype(dtype)
        d = _as(decay, p)
        return ((1 - d) * p + d * t.astype(dtype)).astype(t.dtype)

    return jax.tree.map(leaf, updates, moments, is_leaf=_is_none)


def bias_correction(moment: Any, decay: ArrayLike, count: ArrayLike) -> Any:
    """Divides each moment leaf by `1 - decay**count` (Adam's bias correction).

    `decay**count` is computed in at least float32 (in bf16 it rounds to 1 and the
    division blows up); the division itself runs in each leaf's dtype.

    Args:
        moment: A pytree of moments.
        decay: The EMA decay the moments were built with.
        count: The number of EMA steps taken so far (at least 1).

    Returns:
        The corrected moments, each leaf in its own dtype.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.bias_correction(jnp.array([0.75]), 0.5, 2)
        Array([1.], dtype=float32)
    """
    factor = _numerics.bias_correction(decay, jnp.asarray(count))
    return jax.tree.map(lambda t: t / factor.astype(t.dtype), moment)
