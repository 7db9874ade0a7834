# SPDX-License-Identifier: Apache-2.0
"""Unit-wise and per-example clipping: adaptive_grad_clip and the DP-SGD clips."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, stateless
from gradtx._errors import TreeMismatchError
from gradtx._numerics import up

Axis = int | tuple[int, ...] | None
_DEFAULT_AXES = {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}


def unitwise_norm(x: ArrayLike, axis: Axis = None) -> jax.Array:
    """The l2 norm of each unit of `x`, broadcast back to `x`'s shape.

    Without `axis` the reduced axes follow layer conventions: the whole array for
    scalars and vectors (after squeezing), axis 0 for rank 2 and 3 (IO and multi-head
    kernels), axes (0, 1, 2) for rank 4 (HWIO) and (0, 1, 2, 3) for rank 5.

    Args:
        x: The array.
        axis: Axes to reduce; None picks them from the rank as above.

    Returns:
        The norms, shaped like `x`, in float32 or wider (optax: in `x`'s dtype, where
        float16 squares overflow above 256).

    Raises:
        ValueError: If `axis` is None and `x` has rank above 5.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.unitwise_norm(jnp.array([[3.0, 0.0], [4.0, 1.0]]))
        Array([[5., 1.],
               [5., 1.]], dtype=float32)
    """
    x = up(jnp.asarray(x))
    sq = _numerics.abs_sq(x)
    if axis is not None:
        total = jnp.sum(sq, axis=axis, keepdims=True)
    elif jnp.squeeze(x).ndim <= 1:
        total = jnp.sum(sq, keepdims=True)
    elif x.ndim in _DEFAULT_AXES:
        total = jnp.sum(sq, axis=_DEFAULT_AXES[x.ndim], keepdims=True)
    else:
        raise ValueError(
            f"gradtx.unitwise_norm: expected rank 1 to 5, got shape {x.shape}; "
            "pass axis= for other shapes"
        )
    return jnp.broadcast_to(_numerics.safe_sqrt(total), x.shape)


def unitwise_clip(
    g_norm: ArrayLike,
    max_norm: ArrayLike,
    grad: ArrayLike,
    div_eps: ArrayLike = 1e-6,
) -> jax.Array:
    """Rescales `grad` to norm `max_norm` where `g_norm >= max_norm`, unit by unit.

    Args:
        g_norm: Unit-wise norms of `grad` (see `unitwise_norm`), shaped like `grad`.
        max_norm: Unit-wise limits, shaped like `grad`.
        grad: The gradient.
        div_eps: Floor of `g_norm` in the division, so 0/0 never happens.

    Returns:
        The clipped gradient, in `grad`'s dtype.

    Raises:
        ValueError: If the three shapes differ.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> g = jnp.array([3.0, 4.0])
        >>> gradtx.unitwise_clip(jnp.full(2, 5.0), jnp.full(2, 1.0), g)
        Array([0.6, 0.8], dtype=float32)
    """
    grad = jnp.asarray(grad)
    shapes = {jnp.shape(g_norm), jnp.shape(max_norm), grad.shape}
    if len(shapes) != 1:
        raise ValueError(f"gradtx.unitwise_clip: shape mismatch {sorted(shapes)}")
    x = up(grad)
    n = jnp.asarray(g_norm).astype(x.dtype)
    m = jnp.asarray(max_norm).astype(x.dtype)
    floor = _numerics.like(_numerics.hparam(div_eps), x)
    # The factor, not the clipped values, is selected: the norms may be laid out
    # differently from `grad` (ZeRO-1 shards `grad`), and x * 1 is exactly x.
    factor = jnp.where(n < m, jnp.ones_like(n), m / jnp.maximum(n, floor))
    return (x * factor).astype(grad.dtype)


def adaptive_grad_clip(
    clipping: ArrayLike, eps: ArrayLike = 1e-3, axis: Axis = None
) -> GradientTransformation:
    """Clips each unit's update norm to `clipping * max(||p_unit||, eps)` (AGC).

    Norms are computed in float32, so float16 grads cannot overflow them, and zero
    params or zero grads give finite updates.

    Args:
        clipping: Largest allowed ratio of update norm to param norm, >= 0.
        eps: Floor of the param norm (zero-initialized params still move), >= 0.
        axis: Axes of a unit, see `unitwise_norm`.

    Returns:
        A stateless transformation whose `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adaptive_grad_clip(0.1)
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(None), jnp.array([0.0, 10.0]))[0]
        Array([0.6, 0.8], dtype=float32)

    References:
        Brock et al., 2021: https://arxiv.org/abs/2102.06171
    """
    _validate.check_nonnegative("adaptive_grad_clip", "clipping", clipping)
    _validate.check_nonnegative("adaptive_grad_clip", "eps", eps)

    def leaf(u, p):
        x = up(u)
        r = lambda h: _numerics.like(_numerics.hparam(h), x)
        g_norm = unitwise_norm(x, axis)
        max_norm = r(clipping) * jnp.maximum(unitwise_norm(p, axis), r(eps))
        return unitwise_clip(g_norm, max_norm, x).astype(u.dtype)

    def apply(updates, params):
        _tree.require_params("adaptive_grad_clip", params)
        return _tree.map_leaves(leaf, updates, params)

    return stateless(apply)


def _check_batch(fn: str, grads: Any) -> int:
    sizes = {jnp.shape(g)[0] if jnp.ndim(g) else None for g in jax.tree.leaves(grads)}
    if None in sizes or len(sizes) != 1:
        raise TreeMismatchError(
            f"gradtx.{fn}: every leaf of grads needs the same leading batch axis, "
            f"got shapes {jax.tree.map(jnp.shape, grads)}"
        )
    return sizes.pop()


def _check_clip_limit(fn: str, name: str, value: ArrayLike) -> None:
    """A per-example limit is >= 0; +inf is allowed (no clipping, as in optax)."""
    if _validate.concrete_float(value) != float("inf"):
        _validate.check_nonnegative(fn, name, value)


def _clip_and_sum(grads: Any, limit: jax.Array) -> tuple[Any, jax.Array]:
    """Scales each example to norm <= `limit`, sums over the batch; counts clips."""
    sq = sum(
        jnp.sum(_numerics.abs_sq(up(g)).reshape(g.shape[0], -1), axis=1)
        for g in jax.tree.leaves(grads)
    )
    norms = _numerics.safe_sqrt(sq)
    limit = limit.astype(norms.dtype)
    within = norms <= limit
    factors = jnp.where(within, 1, limit / jnp.where(within, 1, norms))
    clipped = jnp.sum(factors < 1, dtype=jnp.int32)

    def leaf(g):
        x = up(g)
        return jnp.tensordot(factors.astype(x.dtype), x, axes=1).astype(g.dtype)

    return jax.tree.map(leaf, grads), clipped


def per_example_global_norm_clip(
    grads: Any, l2_norm_clip: ArrayLike
) -> tuple[Any, jax.Array]:
    """Clips each example's gradient to global l2 norm `l2_norm_clip`, then sums.

    Args:
        grads: A pytree whose leaves share a leading batch axis.
        l2_norm_clip: Largest allowed per-example global norm, >= 0; `inf` sums
            the grads unclipped.

    Returns:
        `(sum of clipped grads, int32 count of clipped examples)`; the sums keep the
        grads' dtypes (optax promotes low-precision grads to float32).

    Raises:
        HyperparameterError: If a concrete `l2_norm_clip` is negative or NaN.
        TreeMismatchError: If the leaves do not share a leading batch axis.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> g = [jnp.array([[0.0, 0.0], [3.0, 4.0]])]
        >>> gradtx.per_example_global_norm_clip(g, 1.0)
        ([Array([0.6, 0.8], dtype=float32)], Array(1, dtype=int32))

    References:
        Abadi et al., 2016: https://arxiv.org/abs/1607.00133
    """
    fn = "per_example_global_norm_clip"
    _check_clip_limit(fn, "l2_norm_clip", l2_norm_clip)
    _check_batch(fn, grads)
    return _clip_and_sum(grads, _numerics.hparam(l2_norm_clip))


def per_example_layer_norm_clip(
    grads: Any, global_l2_norm_clip: ArrayLike, uniform: bool = True
) -> tuple[Any, Any]:
    """Clips each example's gradient leaf by leaf, then sums over the batch.

    With K leaves, each leaf's limit is `C / sqrt(K)` (`uniform`), or
    `C * sqrt(D_i / D)` with `D_i` the leaf's size per example and `D` the total.

    Args:
        grads: A pytree whose leaves share a leading batch axis.
        global_l2_norm_clip: The overall limit `C`, >= 0; `inf` never clips.
        uniform: Split `C` equally between leaves, or by their sizes.

    Returns:
        `(tree of clipped sums, tree of int32 clip counts)`, both shaped like grads.

    Raises:
        HyperparameterError: If a concrete `global_l2_norm_clip` is out of range.
        TreeMismatchError: If the leaves do not share a leading batch axis.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> g = [jnp.array([[0.0, 0.0], [3.0, 4.0]])]
        >>> gradtx.per_example_layer_norm_clip(g, 1.0)
        ([Array([0.6, 0.8], dtype=float32)], [Array(1, dtype=int32)])

    References:
        McMahan et al., 2017: https://arxiv.org/abs/1710.06963
    """
    fn = "per_example_layer_norm_clip"
    _check_clip_limit(fn, "global_l2_norm_clip", global_l2_norm_clip)
    _check_batch(fn, grads)
    leaves, treedef = jax.tree.flatten(grads)
    c = _numerics.hparam(global_l2_norm_clip)
    total = sum(g[0].size for g in leaves)
    out = []
    for g in leaves:
        share = 1.0 / len(leaves) if uniform else g[0].size / total
        out.append(_clip_and_sum(g, c * share**0.5))
    sums, counts = zip(*out, strict=True) if out else ((), ())
    return treedef.unflatten(sums), treedef.unflatten(counts)
