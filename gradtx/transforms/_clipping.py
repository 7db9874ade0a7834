# SPDX-License-Identifier: Apache-2.0
"""Clipping: elementwise, by global norm, by per-leaf RMS."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _fusion, _numerics, _tree, _validate
from gradtx._base import GradientTransformation, stateless, stateless_with_tree_map


def _shrink_factor(size: jax.Array, limit: jax.Array) -> jax.Array:
    """`min(1, limit / size)` with no 0/0: 1 whenever `size <= limit`."""
    within = size <= limit
    return jnp.where(within, 1.0, limit / jnp.where(within, 1.0, size)).astype(
        size.dtype
    )


def clip(max_delta: ArrayLike) -> GradientTransformation:
    """Clips every update element to `[-max_delta, max_delta]`.

    Args:
        max_delta: The bound, >= 0.

    Returns:
        A stateless transformation.

    Raises:
        HyperparameterError: If a concrete `max_delta` is negative or not finite.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.clip(1.0)
        >>> tx.update(jnp.array([-3.0, 0.5]), tx.init(None))[0]
        Array([-1. ,  0.5], dtype=float32)
    """
    _validate.check_nonnegative("clip", "max_delta", max_delta)

    def leaf(u):
        x = _numerics.up(u)
        m = _numerics.like(_numerics.hparam(max_delta), x)
        return jnp.clip(x, -m, m).astype(u.dtype)

    return stateless_with_tree_map(lambda u, _: leaf(u))


def clip_by_global_norm(max_norm: ArrayLike) -> GradientTransformation:
    """Rescales all updates together so that their global l2 norm is at most `max_norm`.

    The norm is accumulated in float32, so f16/bf16 sums of squares cannot overflow,
    and `max_norm = 0` with zero updates gives zeros, not NaN (optax returns NaN).

    Args:
        max_norm: The largest allowed global norm, >= 0; may be traced.

    Returns:
        A stateless transformation.

    Raises:
        HyperparameterError: If a concrete `max_norm` is negative or not finite.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.clip_by_global_norm(1.0)
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(None))[0]
        Array([0.6, 0.8], dtype=float32)

    References:
        Pascanu et al., 2013: https://arxiv.org/abs/1211.5063
    """
    _validate.check_nonnegative("clip_by_global_norm", "max_norm", max_norm)

    def clip_tree(updates):
        g_norm = _tree.norm(updates)
        factor = _shrink_factor(g_norm, _numerics.hparam(max_norm).astype(g_norm.dtype))

        def leaf(u):
            x = _numerics.up(u)
            return (x * _numerics.like(factor, x)).astype(u.dtype)

        return jax.tree.map(leaf, updates)

    tx = stateless(lambda u, _: clip_tree(u))
    return _fusion.describe(tx, "clip_by_global_norm", max_norm=max_norm)


def clip_by_block_rms(threshold: ArrayLike) -> GradientTransformation:
    """Rescales each leaf so that its root-mean-square is at most `threshold`.

    Args:
        threshold: The largest allowed RMS of a leaf, >= 0.

    Returns:
        A stateless transformation.

    Raises:
        HyperparameterError: If a concrete `threshold` is negative or not finite.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.clip_by_block_rms(1.0)
        >>> tx.update(jnp.array([2.0, -2.0]), tx.init(None))[0]
        Array([ 1., -1.], dtype=float32)
    """
    _validate.check_nonnegative("clip_by_block_rms", "threshold", threshold)

    def leaf(u):
        x = _numerics.up(u)
        rms = _numerics.safe_sqrt(jnp.mean(_numerics.abs_sq(x)))
        factor = _shrink_factor(rms, _numerics.like(_numerics.hparam(threshold), x))
        return (x * factor.astype(x.dtype)).astype(u.dtype)

    return stateless_with_tree_map(lambda u, _: leaf(u))
