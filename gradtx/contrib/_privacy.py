# SPDX-License-Identifier: Apache-2.0
"""Differentially private SGD: per-example clipping plus Gaussian noise."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _validate
from gradtx._base import GradientTransformation, identity
from gradtx._combine import chain
from gradtx._types import ScalarOrSchedule
from gradtx.transforms._accumulation import trace
from gradtx.transforms._scaling import scale_by_learning_rate


class DifferentiallyPrivateAggregateState(NamedTuple):
    """State of `differentially_private_aggregate`: the PRNG key of the noise."""

    rng_key: jax.Array


def _key(key: jax.Array | int | None) -> jax.Array:
    if key is None:
        return jax.random.key(0)
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.key(key)


def differentially_private_aggregate(
    l2_norm_clip: ArrayLike,
    noise_multiplier: ArrayLike,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    """Clips each example's gradient to `l2_norm_clip`, sums, adds noise, averages.

    Expects per-example gradients (batch on axis 0 of every leaf, e.g. from
    `jax.vmap(jax.grad(loss))`) and returns the batch-mean gradient; put it first
    in a chain. Norms, clipping and noise are float32 whatever the grads' dtype.

    Update rule:
        g_i ← g_i min(1, C / ||g_i||);  u = (Σ_i g_i + C s N(0, I)) / B

    Args:
        l2_norm_clip: The per-example clip `C`, >= 0.
        noise_multiplier: `s`, the noise std relative to `C`, >= 0.
        key: A PRNG key or an integer seed; None means seed 0 (optax warns).
        seed: optax's deprecated spelling of an integer `key`.

    Returns:
        A transformation with `DifferentiallyPrivateAggregateState`.

    Raises:
        HyperparameterError: If a concrete value is out of range, or both `key`
            and `seed` are given.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.contrib.differentially_private_aggregate(1.0, 0.0, key=0)
        >>> per_example = jnp.array([[3.0, 4.0], [0.3, 0.4]])
        >>> [round(float(x), 4) for x in tx.update(per_example, tx.init(None))[0]]
        [0.45, 0.6]

    References:
        Abadi et al., 2016: https://arxiv.org/abs/1607.00133
    """
    fn = "differentially_private_aggregate"
    _validate.check_nonnegative(fn, "l2_norm_clip", l2_norm_clip)
    _validate.check_nonnegative(fn, "noise_multiplier", noise_multiplier)
    if seed is not None:
        if key is not None:
            raise _validate.HyperparameterError(
                f"gradtx.{fn}: give key or seed, not both; got key={key!r}, "
                f"seed={seed!r}"
            )
        key = seed
    rng = _key(key)

    def init(params):
        del params
        return DifferentiallyPrivateAggregateState(rng_key=rng)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        leaves, treedef = jax.tree.flatten(updates)
        batch = leaves[0].shape[0]
        if any(x.ndim < 1 or x.shape[0] != batch for x in leaves):
            raise ValueError(
                f"gradtx.{fn}: every leaf needs the same batch size on axis 0"
            )
        clip = _numerics.hparam(l2_norm_clip)
        up = [_numerics.up(x) for x in leaves]
        sq = sum(jnp.sum(_numerics.abs_sq(x).reshape(batch, -1), axis=1) for x in up)
        norms = _numerics.safe_sqrt(sq)
        scale = jnp.where(norms > clip, clip / jnp.where(norms > 0, norms, 1), 1)
        std = clip * _numerics.hparam(noise_multiplier)
        new_key, *keys = jax.random.split(state.rng_key, len(leaves) + 1)

        def leaf(x, g, k):
            cd = x.dtype
            total = jnp.tensordot(scale.astype(cd), x, axes=1)
            noise = jax.random.normal(k, total.shape, jnp.float32).astype(cd)
            return ((total + std.astype(cd) * noise) / batch).astype(g.dtype)

        out = [leaf(x, g, k) for x, g, k in zip(up, leaves, keys, strict=True)]
        return jax.tree.unflatten(treedef, out), DifferentiallyPrivateAggregateState(
            rng_key=new_key
        )

    return GradientTransformation(init, update)


@_validate.names_errors()
def dpsgd(
    learning_rate: ScalarOrSchedule,
    l2_norm_clip: ArrayLike,
    noise_multiplier: ArrayLike,
    seed: int,
    momentum: ArrayLike | None = None,
    nesterov: bool = False,
) -> GradientTransformation:
    """DP-SGD: `chain(differentially_private_aggregate, trace or identity, lr)`.

    See `differentially_private_aggregate` (per-example gradients in) and `trace`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.contrib.dpsgd(0.1, 1.0, noise_multiplier=0.0, seed=0)
        >>> per_example = jnp.array([[3.0, 4.0], [0.3, 0.4]])
        >>> tx.update(per_example, tx.init(jnp.zeros(2)))[0]
        Array([-0.045, -0.06 ], dtype=float32)

    References:
        Abadi et al., 2016: https://arxiv.org/abs/1607.00133
    """
    return chain(
        differentially_private_aggregate(l2_norm_clip, noise_multiplier, key=seed),
        identity() if momentum is None else trace(momentum, nesterov),
        scale_by_learning_rate(learning_rate),
    )
