# SPDX-License-Identifier: Apache-2.0
"""Stochastic rounding: `apply_updates_stochastic` for low-precision params."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _numerics


def stochastic_round(x: jax.Array, dtype: Any, key: jax.Array) -> jax.Array:
    """Rounds `x` to `dtype`, up or down with probabilities that make it unbiased.

    `x` lies between two neighbours `lo <= x <= hi` of `dtype`; the result is `hi`
    with probability `(x - lo) / (hi - lo)` and `lo` otherwise, so its expectation is
    `x`. Values `dtype` represents exactly, and non-finite values, are returned as
    round-to-nearest gives them.
    """
    dtype = jnp.dtype(dtype)
    x = _numerics.up(x)
    nearest = x.astype(dtype)
    near = nearest.astype(x.dtype)
    # The neighbour on the other side of x (nextafter in the target dtype).
    away = jnp.where(near > x, -jnp.inf, jnp.inf).astype(dtype)
    other = jnp.nextafter(nearest, away).astype(x.dtype)
    lo, hi = jnp.minimum(near, other), jnp.maximum(near, other)
    # Both differences are exact in float32: x, lo and hi share a binade or two.
    p_hi = (x - lo) / (hi - lo)
    u = jax.random.uniform(key, jnp.shape(x), x.dtype)
    rounded = jnp.where(u < p_hi, hi, lo).astype(dtype)
    exact = (near == x) | ~jnp.isfinite(x) | ~jnp.isfinite(hi - lo)
    return jnp.where(exact, nearest, rounded)


def _is_low_precision(dtype: Any) -> bool:
    dtype = jnp.dtype(dtype)
    return jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4


def apply_updates_stochastic(params: Any, updates: Any, key: jax.Array) -> Any:
    """`apply_updates` that rounds bfloat16 / float16 params stochastically.

    For each low-precision leaf the sum `p + u` is computed in float32 and rounded
    to the param's dtype up or down at random, with the probability that makes the
    result exact in expectation: an update far below one ulp still moves the param
    on average, where round-to-nearest drops it every time. float32 and wider
    leaves are added as `apply_updates` adds them. Use a fresh key every step.

    Args:
        params: The current params.
        updates: Updates with the structure of `params`; `None` leaves are skipped.
        key: A PRNG key (`jax.random.key` or `PRNGKey`), split once per leaf.

    Returns:
        The new params, leaf for leaf in the dtypes of `params`.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> p = {"w": jnp.ones(10_000, jnp.bfloat16)}
        >>> u = {"w": jnp.full(10_000, 2.0**-10, jnp.float32)}  # 1/8 of an ulp
        >>> new = gradtx.apply_updates_stochastic(p, u, jax.random.key(0))
        >>> bool(abs(new["w"].astype(jnp.float32).mean() - (1 + 2.0**-10)) < 1e-4)
        True
    """
    leaves, treedef = jax.tree.flatten(params, is_leaf=lambda x: x is None)
    ups = treedef.flatten_up_to(updates)
    keys = jax.random.split(key, max(len(leaves), 1))
    out = []
    for p, u, k in zip(leaves, ups, keys, strict=False):
        if u is None or p is None:
            out.append(p)
            continue
        p, u = jnp.asarray(p), jnp.asarray(u)
        with jax.numpy_dtype_promotion("standard"):
            dtype = jnp.promote_types(p.dtype, u.dtype)
        if _is_low_precision(p.dtype):  # a bf16 + bf16 sum would round first
            dtype = _numerics.compute_dtype(dtype)
        total = p.astype(dtype) + u.astype(dtype)
        if _is_low_precision(p.dtype):
            out.append(stochastic_round(total, p.dtype, k))
        else:
            out.append(total.astype(p.dtype))
    return jax.tree.unflatten(treedef, out)
