# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the optax.contrib ports: scalar dtypes and global reductions.

The parameter-free methods (D-Adaptation, Prodigy, DoG, DoWG, Mechanic, MoMo) keep a
few scalars in their state (distance estimates, weighted numerators). optax stores them
in the params' lowest dtype, which is bfloat16 for a bf16 model (a distance estimate
with 3 significant digits); gradtx keeps them in the lowest *compute* dtype of the
params: float32 for f32/bf16/f16 params, float64 only when every param is float64.
Reductions over the whole tree (dot products, norms, l1 norms) run in that dtype too,
so nothing is promoted to float64 under `jax_enable_x64` (RELIABILITY.md B18).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _numerics, _tree


def scalar_dtype(params: Any) -> Any:
    """The lowest compute dtype of the leaves of `params` (float32 for no leaves)."""
    dtypes = [_numerics.compute_dtype(x.dtype) for x in jax.tree.leaves(params)]
    if not dtypes:
        return jnp.dtype(jnp.float32)
    return min(dtypes, key=lambda d: jnp.dtype(d).itemsize)


def zeros_moments(params: Any) -> Any:
    """Zero moments shaped like `params`: the param's dtype, float32 for float16.

    The storage rule of squared-gradient state (`_tree.squares_like`): float16 cannot
    hold the products these methods store (`1e-6 * g` or its square underflows to 0),
    which would turn the next denominator into `eps` alone.
    """
    return _tree.squares_like(params)


def initial_point(params: Any, dtype: Any = None) -> Any:
    """The params as an optimizer's stored starting point `x0`.

    A `jax.ShapeDtypeStruct` leaf has no values yet (an `init` from shapes, to build
    the state directly on a mesh): its `x0` is a NaN placeholder laid out like the
    param, which `known_point` replaces by the params of the first update.
    """

    def leaf(p):
        own = dtype or p.dtype
        if isinstance(p, jax.ShapeDtypeStruct):
            return _tree.filled(p, jnp.nan, own)
        return p if dtype is None else p.astype(own)

    return jax.tree.map(leaf, params)


def known_point(x0: Any, params: Any) -> Any:
    """`x0` with `initial_point`'s placeholders taken from the current params.

    After an `init` on values this changes nothing (a NaN param stays NaN); after
    an `init` on shapes, the first update's params become the starting point.
    """
    return jax.tree.map(
        lambda a, p: jnp.where(jnp.isnan(a), p.astype(a.dtype), a), x0, params
    )


def abstract(params: Any) -> bool:
    """Whether any leaf is a `jax.ShapeDtypeStruct` (an `init` from shapes)."""
    return any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(params))


def known_scalar(value: jax.Array, compute: Callable[[], jax.Array]) -> jax.Array:
    """A scalar that `init` could not compute from shapes (NaN), computed now.

    `lax.cond` runs `compute` (a reduction over the params) only while the value
    is still the placeholder, so later steps pay nothing for it.
    """
    return jax.lax.cond(jnp.isnan(value), compute, lambda: value)


def reduce_sum(fn: Callable[..., jax.Array], dtype: Any, *trees: Any) -> jax.Array:
    """`sum(fn(*leaves))` over the leaves (in compute dtype), summed in `dtype`."""
    total = jnp.zeros((), dtype)
    for leaves in zip(*(jax.tree.leaves(t) for t in trees), strict=True):
        part = jnp.sum(fn(*(_numerics.up(x) for x in leaves)))
        total = total + part.astype(dtype)
    return total


def vdot(a: Any, b: Any, dtype: Any) -> jax.Array:
    """`<a, b>` over every leaf, accumulated in `dtype`."""
    return reduce_sum(lambda x, y: x * y.astype(x.dtype), dtype, a, b)


def sum_sq(tree: Any, dtype: Any) -> jax.Array:
    """`||tree||²`, accumulated in `dtype`."""
    return reduce_sum(lambda x: x * x, dtype, tree)


def sum_sq_diff(a: Any, b: Any, dtype: Any) -> jax.Array:
    """`||a - b||²`, accumulated in `dtype`."""
    return reduce_sum(lambda x, y: jnp.square(x - y.astype(x.dtype)), dtype, a, b)


def l1(tree: Any, dtype: Any) -> jax.Array:
    """`sum |tree|`, accumulated in `dtype`."""
    return reduce_sum(jnp.abs, dtype, tree)


def scalar(value: Any, dtype: Any) -> jax.Array:
    """A hyperparameter (concrete or traced) as a scalar of `dtype`."""
    return _numerics.hparam(value).astype(dtype)


def scheduled(value: Any, count: jax.Array, dtype: Any) -> jax.Array:
    """`value(count)` for a schedule, else `value`, as a scalar of `dtype`."""
    return scalar(value(count) if callable(value) else value, dtype)


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """`num / den`, and 0 where `den == 0` (no NaN, no NaN gradient)."""
    nonzero = den != 0
    return jnp.where(nonzero, num / jnp.where(nonzero, den, 1), 0)


def one_minus_pow(decay: jax.Array, t: jax.Array) -> jax.Array:
    """`1 - decay**t` without float32 cancellation: `-expm1(t log(decay))`.

    `1 - 0.999**2` loses 3e-5 (relative) to cancellation in float32; the D-Adaptation
    methods feed this factor straight into their state, so it must be accurate.
    Requires `t > 0` (`decay = 0` gives 1).
    """
    return -jnp.expm1(t * jnp.log(decay))
