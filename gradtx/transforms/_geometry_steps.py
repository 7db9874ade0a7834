# SPDX-License-Identifier: Apache-2.0
"""Transforms that look across steps: add_noise, apply_every, optimistic gradients."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._errors import HyperparameterError
from gradtx._numerics import like, up


class AddNoiseState(NamedTuple):
    """State of `add_noise`: the step count (for annealing) and the PRNG key."""

    count: jax.Array
    rng_key: jax.Array


class ApplyEvery(NamedTuple):
    """State of `apply_every`: the phase in [0, k) and the accumulated gradient."""

    count: jax.Array
    grad_acc: Any


class ScaleByOptimisticGradientState(NamedTuple):
    """State of `scale_by_optimistic_gradient`: first-step flag and last gradient."""

    is_initial_step: jax.Array
    previous_gradient: Any


def _key(key: jax.Array | int) -> jax.Array:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.key(key)


def add_noise(
    eta: ArrayLike,
    gamma: ArrayLike,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    """Adds annealed Gaussian noise `N(0, eta / t**gamma)` to the updates.

    The noise is drawn in float32 (or wider) from the key kept in the state, one
    split per step and one sub-key per leaf (optax's order), and added in float32.

    Args:
        eta: Base variance, >= 0.
        gamma: Annealing exponent of the variance, >= 0.
        key: A PRNG key or an integer seed; None means seed 0 (with a warning).
        seed: Deprecated spelling of an integer `key` (optax's), with a warning.

    Returns:
        A transformation with `AddNoiseState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range, or both
            `key` and `seed` are given.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> tx = gradtx.add_noise(0.0, 0.55, key=jax.random.key(0))
        >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
        Array([1., 1.], dtype=float32)

    References:
        Neelakantan et al., 2015: https://arxiv.org/abs/1511.06807
    """
    _validate.check_nonnegative("add_noise", "eta", eta)
    _validate.check_nonnegative("add_noise", "gamma", gamma)
    if seed is not None:
        if key is not None:
            raise HyperparameterError(
                f"gradtx.add_noise: seed must be None when key is given, got {seed!r}"
            )
        warnings.warn(
            "gradtx.add_noise: seed is deprecated, use key", DeprecationWarning, 2
        )
        key = seed
    if key is None:
        warnings.warn("gradtx.add_noise: no key given, using seed 0", UserWarning, 2)
        key = 0

    def init(params):
        del params
        return AddNoiseState(count=jnp.zeros([], jnp.int32), rng_key=_key(key))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        count = _numerics.safe_int32_increment(state.count)
        heta, hgamma = _numerics.hparam(eta), _numerics.hparam(gamma)
        std = jnp.sqrt(heta / count.astype(heta.dtype) ** hgamma)
        rng_key, sample_key = jax.random.split(state.rng_key)
        leaves, treedef = jax.tree.flatten(updates)
        keys = jax.random.split(sample_key, len(leaves))

        def leaf(u, k):
            x = up(u)
            noise = jax.random.normal(k, x.shape, _numerics.real_dtype(x.dtype))
            return (x + like(std, x) * noise).astype(u.dtype)

        new = [leaf(u, k) for u, k in zip(leaves, keys, strict=True)]
        return treedef.unflatten(new), AddNoiseState(count=count, rng_key=rng_key)

    return GradientTransformation(init, update)


def _check_k(k: Any) -> None:
    if isinstance(k, jax.core.Tracer):
        return
    arr = jnp.asarray(k) if isinstance(k, jax.Array) else k
    if isinstance(arr, jax.Array):
        if arr.shape != () or not jnp.issubdtype(arr.dtype, jnp.integer):
            raise HyperparameterError(
                f"gradtx.apply_every: k must be an integer >= 1, got {k!r}"
            )
        arr = int(arr)
    _validate.check_positive_int("apply_every", "k", arr)


def apply_every(k: ArrayLike = 1) -> GradientTransformation:
    """Accumulates updates and emits their sum every `k` steps (zeros in between).

    Other transforms of a chain still update their state every step; use
    `MultiSteps` when the whole optimizer step should happen once per `k`.

    Args:
        k: Emit every `k` steps, an integer >= 1 (a traced int32 is allowed).

    Returns:
        A transformation with `ApplyEvery`; its `count` is the phase `t mod k`.

    Raises:
        HyperparameterError: If a concrete `k` is not an integer >= 1.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.apply_every(2)
        >>> s = tx.init(jnp.zeros(1))
        >>> u1, s = tx.update(jnp.ones(1), s)
        >>> u2, s = tx.update(jnp.ones(1), s)
        >>> u1, u2
        (Array([0.], dtype=float32), Array([2.], dtype=float32))
    """
    _check_k(k)

    def init(params):
        return ApplyEvery(
            count=jnp.zeros([], jnp.int32), grad_acc=_tree.zeros_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("apply_every", state.grad_acc, updates)
        hk = jnp.asarray(k, jnp.int32)
        phase = state.count % hk
        keep, emit = phase != 0, phase == hk - 1

        def leaf(g, acc):
            cd = _numerics.leaf_dtype(g, acc)
            total = jnp.where(keep, acc.astype(cd), 0) + g.astype(cd)
            stored, total = _numerics.store(total, acc.dtype)
            return jnp.where(emit, total, 0).astype(g.dtype), stored

        out = jax.tree.map(leaf, updates, state.grad_acc)
        u, acc = _tree.unzip(out, updates, 2)
        count = _numerics.safe_int32_increment(state.count) % hk
        return u, ApplyEvery(count=count, grad_acc=acc)

    return GradientTransformation(init, update)


def scale_by_optimistic_gradient(
    alpha: ArrayLike = 1.0, beta: ArrayLike = 1.0
) -> GradientTransformation:
    """Optimistic (extrapolated) gradient: `(alpha + beta) g_t - beta g_{t-1}`.

    On the first step the previous gradient is taken to be `g_1` (optax#1082), so the
    first update is `alpha g_1`.

    Args:
        alpha: Weight of the current gradient, finite.
        beta: Weight of the negative momentum `g_t - g_{t-1}`, finite.

    Returns:
        A transformation with `ScaleByOptimisticGradientState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is not finite.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_optimistic_gradient()
        >>> s = tx.init(jnp.zeros(1))
        >>> _, s = tx.update(jnp.array([1.0]), s)
        >>> tx.update(jnp.array([3.0]), s)[0]
        Array([5.], dtype=float32)

    References:
        Mokhtari et al., 2019: https://arxiv.org/abs/1901.08511
    """
    _validate.check_range("scale_by_optimistic_gradient", "alpha", alpha)
    _validate.check_range("scale_by_optimistic_gradient", "beta", beta)

    def init(params):
        return ScaleByOptimisticGradientState(
            is_initial_step=jnp.asarray(True),
            previous_gradient=_tree.zeros_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        prev_tree = state.previous_gradient
        _tree.check_structure("scale_by_optimistic_gradient", prev_tree, updates)
        ha, hb = _numerics.hparam(alpha), _numerics.hparam(beta)

        def leaf(g, prev):
            cd = _numerics.leaf_dtype(g, prev)
            gc = g.astype(cd)
            pc = jnp.where(state.is_initial_step, gc, prev.astype(cd))
            u = (like(ha, gc) + like(hb, gc)) * gc - like(hb, gc) * pc
            return u.astype(g.dtype), g.astype(prev.dtype)

        u, prev = _tree.unzip(jax.tree.map(leaf, updates, prev_tree), updates, 2)
        return u, ScaleByOptimisticGradientState(jnp.asarray(False), prev)

    return GradientTransformation(init, update)
