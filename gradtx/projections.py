# SPDX-License-Identifier: Apache-2.0
"""Euclidean projections of pytrees onto convex sets, as in `optax.projections`.

Each function returns the closest point (in the l2 norm over all leaves) of the set
to its input, with the input's tree structure and leaf dtypes. Reductions run in
float32 or wider. Where optax divides by zero (a zero `scale`, a zero direction
`a`, the sphere's centre) gradtx returns a well-defined point instead of NaN.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from gradtx import _numerics, _tree

__all__ = [
    "projection_box",
    "projection_halfspace",
    "projection_hypercube",
    "projection_hyperplane",
    "projection_l1_ball",
    "projection_l1_sphere",
    "projection_l2_ball",
    "projection_l2_sphere",
    "projection_linf_ball",
    "projection_non_negative",
    "projection_simplex",
    "projection_vector",
]


def _broadcast(bound: Any, tree: Any) -> Any:
    """`bound` as a tree like `tree`: a scalar bound is repeated on every leaf."""
    is_leaf = lambda t: jax.tree.structure(t).num_nodes == 1
    if is_leaf(bound) and not is_leaf(tree) and jnp.ndim(bound) == 0:
        return jax.tree.map(lambda _: bound, tree)
    return bound


def _scaled(tree: Any, factor: jax.Array) -> Any:
    return jax.tree.map(
        lambda x: (_numerics.up(x) * _numerics.like(factor, _numerics.up(x))).astype(
            x.dtype
        ),
        tree,
    )


def _vdot(a: Any, b: Any) -> jax.Array:
    parts = [
        jnp.sum(jnp.real(jnp.conj(_numerics.up(x)) * _numerics.up(y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    ]
    return sum(parts[1:], parts[0]) if parts else jnp.zeros((), jnp.float32)


def projection_non_negative(tree: Any) -> Any:
    """Projects onto the non-negative orthant: `max(x, 0)` elementwise.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_non_negative
        >>> projection_non_negative(jnp.array([-1.0, 2.0]))
        Array([0., 2.], dtype=float32)
    """
    return jax.tree.map(jax.nn.relu, tree)


def projection_box(tree: Any, lower: Any, upper: Any) -> Any:
    """Projects onto the box `lower <= x <= upper` (bounds: scalars or trees).

    A scalar bound applies to every leaf (optax fails on a scalar bound with a
    multi-leaf tree, although its docstring allows it).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_box
        >>> projection_box({"a": jnp.array([-2.0, 3.0])}, 0.0, 1.0)
        {'a': Array([0., 1.], dtype=float32)}
    """
    lower, upper = _broadcast(lower, tree), _broadcast(upper, tree)
    clip = lambda x, lo, hi: jnp.clip(x, lo, hi).astype(jnp.result_type(x))
    return jax.tree.map(clip, tree, lower, upper)


def projection_hypercube(tree: Any, scale: Any = 1) -> Any:
    """Projects onto the hypercube `0 <= x <= scale` (`scale`: scalar or tree).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_hypercube
        >>> projection_hypercube(jnp.array([-2.0, 0.5, 3.0]))
        Array([0. , 0.5, 1. ], dtype=float32)
    """
    return projection_box(tree, lower=0, upper=scale)


def _unit_simplex(values: jax.Array) -> jax.Array:
    """Projection of a vector onto the unit simplex (sort-based, Duchi et al. 2008)."""
    n = values.shape[0]
    u = jnp.sort(values)[::-1]
    cumsum = jnp.cumsum(u)
    ind = jnp.arange(1, n + 1, dtype=values.dtype)
    rho = jnp.count_nonzero(1 / ind + (u - cumsum / ind) > 0)
    r = rho.astype(values.dtype)
    return jax.nn.relu(1 / r + (values - cumsum[rho - 1] / r))


def projection_simplex(tree: Any, scale: ArrayLike = 1) -> Any:
    """Projects onto the simplex `{x >= 0, sum(x) = scale}` (all leaves together).

    Uses the O(n log n) sort-based algorithm, in float32 or wider; `scale = 0`
    gives zeros (optax: NaN).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_simplex
        >>> projection_simplex(jnp.array([2.0, 0.0, -1.0]))
        Array([1., 0., 0.], dtype=float32)

    References:
        Duchi et al., 2008: https://stanford.edu/~jduchi/projects/DuchiShSiCh08.pdf
    """
    values, unravel = ravel_pytree(jax.tree.map(_numerics.up, tree))
    s = jnp.asarray(scale).astype(values.dtype)
    safe = jnp.where(s == 0, 1, s)
    out = jnp.where(s == 0, 0, safe * _unit_simplex(values / safe))
    return _tree.cast_like(unravel(out), tree)


def projection_l1_sphere(tree: Any, scale: ArrayLike = 1) -> Any:
    """Projects onto the l1 sphere `{||x||_1 = scale}`: a simplex projection of |x|.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_l1_sphere
        >>> projection_l1_sphere(jnp.array([2.0, -1.0]))
        Array([ 1., -0.], dtype=float32)
    """
    magnitude = projection_simplex(jax.tree.map(jnp.abs, tree), scale)
    return jax.tree.map(lambda x, m: jnp.sign(x) * m, tree, magnitude)


def projection_l1_ball(tree: Any, scale: ArrayLike = 1) -> Any:
    """Projects onto the l1 ball `{||x||_1 <= scale}`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_l1_ball
        >>> projection_l1_ball(jnp.array([2.0, -1.0]))
        Array([ 1., -0.], dtype=float32)
    """
    l1 = sum(
        (jnp.sum(jnp.abs(_numerics.up(x))) for x in jax.tree.leaves(tree)),
        jnp.zeros((), jnp.float32),
    )
    inside = l1 <= jnp.asarray(scale).astype(l1.dtype)
    sphere = projection_l1_sphere(tree, scale)
    return jax.tree.map(lambda x, y: jnp.where(inside, x, y), tree, sphere)


def projection_l2_sphere(tree: Any, scale: ArrayLike = 1) -> Any:
    """Projects onto the l2 sphere `{||x||_2 = scale}`: `scale * x / ||x||`.

    At `x = 0` every point of the sphere is closest; gradtx returns the point with
    all elements equal to `scale / sqrt(n)` (optax: NaN).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_l2_sphere
        >>> projection_l2_sphere(jnp.array([3.0, 4.0]))
        Array([0.6, 0.8], dtype=float32)
    """
    n = _tree.norm(tree)
    s = jnp.asarray(scale).astype(n.dtype)
    size = sum(jnp.size(x) for x in jax.tree.leaves(tree))
    centre = jax.tree.map(lambda x: jnp.ones_like(x), tree)
    source = jax.tree.map(lambda x, c: jnp.where(n == 0, c, x), tree, centre)
    norm = jnp.where(n == 0, jnp.sqrt(jnp.asarray(size, n.dtype)), n)
    return _scaled(source, s / norm)


def projection_l2_ball(tree: Any, scale: ArrayLike = 1) -> Any:
    """Projects onto the l2 ball `{||x||_2 <= scale}`; `scale = 0` gives zeros.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_l2_ball
        >>> projection_l2_ball(jnp.array([3.0, 4.0]))
        Array([0.6, 0.8], dtype=float32)
    """
    n = _tree.norm(tree)
    s = jnp.asarray(scale).astype(n.dtype)
    inside = n <= s
    return _scaled(tree, jnp.where(inside, 1, s / jnp.where(inside, 1, n)))


def projection_linf_ball(tree: Any, scale: ArrayLike = 1) -> Any:
    """Projects onto the l-infinity ball `{|x_i| <= scale}`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_linf_ball
        >>> projection_linf_ball(jnp.array([3.0, -0.5]))
        Array([ 1. , -0.5], dtype=float32)
    """
    lower = jax.tree.map(lambda x: -jnp.asarray(scale), tree)
    upper = jax.tree.map(lambda x: jnp.asarray(scale), tree)
    return projection_box(tree, lower, upper)


def _along(x: Any, a: Any, scalar: jax.Array, base: Any) -> Any:
    """`base + scalar * a` leaf by leaf, in the leaves' compute dtype."""

    def leaf(b, v):
        bc = _numerics.up(b)
        return (bc + _numerics.like(scalar, bc) * _numerics.up(v)).astype(b.dtype)

    return jax.tree.map(leaf, base, a)


def projection_vector(x: Any, a: Any) -> Any:
    """Projects `x` onto the line spanned by `a`: `<x, a> / <a, a> * a`.

    `a = 0` spans only the origin: the result is zeros (optax: NaN).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_vector
        >>> projection_vector(jnp.array([1.0, 2.0]), jnp.array([0.0, 2.0]))
        Array([0., 2.], dtype=float32)
    """
    aa = _vdot(a, a)
    zero = aa == 0
    scalar = jnp.where(zero, 0, _vdot(x, a) / jnp.where(zero, 1, aa))
    return _along(x, a, scalar, _tree.zeros_like(x))


def projection_hyperplane(x: Any, a: Any, b: ArrayLike) -> Any:
    """Projects onto the hyperplane `{y : <a, y> = b}`.

    With `a = 0` the set is everything (b = 0) or empty; gradtx returns `x`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_hyperplane
        >>> projection_hyperplane(jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0]), 0.0)
        Array([1., 0.], dtype=float32)
    """
    aa = _vdot(a, a)
    zero = aa == 0
    gap = jnp.asarray(b).astype(aa.dtype) - _vdot(x, a)
    return _along(x, a, jnp.where(zero, 0, gap / jnp.where(zero, 1, aa)), x)


def projection_halfspace(x: Any, a: Any, b: ArrayLike) -> Any:
    """Projects onto the half-space `{y : <a, y> <= b}`.

    With `a = 0` gradtx returns `x`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.projections import projection_halfspace
        >>> projection_halfspace(jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0]), 0.0)
        Array([1., 0.], dtype=float32)
    """
    aa = _vdot(a, a)
    zero = aa == 0
    gap = jnp.asarray(b).astype(aa.dtype) - _vdot(x, a)
    scalar = jnp.minimum(jnp.where(zero, 0, gap / jnp.where(zero, 1, aa)), 0)
    return _along(x, a, scalar, x)
