# SPDX-License-Identifier: Apache-2.0
"""Second-moment preconditioners: `scale_by_rms`, `scale_by_stddev`, `scale_by_rss`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._numerics import abs_sq, like, moment, store


class ScaleByRmsState(NamedTuple):
    """State of `scale_by_rms` without bias correction."""

    nu: Any


class ScaleByRmsWithCountState(NamedTuple):
    """State of `scale_by_rms(bias_correction=True)`."""

    count: jax.Array
    nu: Any


class ScaleByRStdDevState(NamedTuple):
    """State of `scale_by_stddev` without bias correction."""

    mu: Any
    nu: Any


class ScaleByRStdDevWithCountState(NamedTuple):
    """State of `scale_by_stddev(bias_correction=True)`."""

    count: jax.Array
    mu: Any
    nu: Any


class ScaleByRssState(NamedTuple):
    """State of `scale_by_rss`: the running sum of squared gradients."""

    sum_of_squares: Any


def _inverse_root(n: jax.Array, eps: jax.Array, eps_in_sqrt: bool) -> jax.Array:
    """`1/sqrt(n + eps)` or `1/(sqrt(n) + eps)`, in `n`'s (float32 or wider) dtype."""
    if eps_in_sqrt:
        return jax.lax.rsqrt(n + eps)
    return 1 / (jnp.sqrt(n) + eps)


def _check_rms_args(fn: str, decay, eps, initial_scale) -> None:
    _validate.check_decay(fn, "decay", decay)
    _validate.check_nonnegative(fn, "eps", eps)
    _validate.check_nonnegative(fn, "initial_scale", initial_scale)


def scale_by_rms(
    decay: ArrayLike = 0.9,
    eps: ArrayLike = 1e-8,
    initial_scale: ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    """Divides the updates by the root of a moving average of their squares (RMSProp).

    Update rule:
        v = decay v + (1-decay) g²;  v̂ = v/(1-decay^t) if bias_correction
        u = g / sqrt(v̂ + eps)   or   g / (sqrt(v̂) + eps) when not eps_in_sqrt

    Args:
        decay: Decay of the moving average, in [0, 1).
        eps: Numerical floor, >= 0; added inside the root when `eps_in_sqrt`.
        initial_scale: Initial value of `v`, >= 0.
        eps_in_sqrt: Where `eps` is added (see the rule).
        bias_correction: Divide `v` by `1 - decay**t`.

    Returns:
        A transformation with `ScaleByRmsState` (or `ScaleByRmsWithCountState`).

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_rms(decay=0.0, eps=0.0)
        >>> tx.update(jnp.array([-2.0]), tx.init(jnp.zeros(1)))[0]
        Array([-1.], dtype=float32)

    References:
        Hinton, Lecture 6.5 of Neural Networks for Machine Learning, 2012.
    """
    _check_rms_args("scale_by_rms", decay, eps, initial_scale)

    def init(params):
        nu = _tree.squares_like(params, initial_scale)
        if bias_correction:
            return ScaleByRmsWithCountState(count=jnp.zeros([], jnp.int32), nu=nu)
        return ScaleByRmsState(nu=nu)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("scale_by_rms", state.nu, updates)
        hd, heps = _numerics.hparam(decay), _numerics.hparam(eps)
        if bias_correction:
            count = _numerics.safe_int32_increment(state.count)
            c = _numerics.bias_correction(hd, count)
        else:
            c = jnp.ones((), hd.dtype)

        def leaf(g, v):
            cd = _numerics.leaf_dtype(g, v)
            gc = g.astype(cd)
            v_new = moment(abs_sq(gc).astype(cd), v.astype(cd), like(hd, gc))
            v_store, v_new = store(v_new, v.dtype)
            u = gc * _inverse_root(v_new / like(c, gc), like(heps, gc), eps_in_sqrt)
            return u.astype(g.dtype), v_store

        u, nu = _tree.unzip(jax.tree.map(leaf, updates, state.nu), updates, 2)
        if bias_correction:
            return u, ScaleByRmsWithCountState(count=count, nu=nu)
        return u, ScaleByRmsState(nu=nu)

    return GradientTransformation(init, update)


def scale_by_stddev(
    decay: ArrayLike = 0.9,
    eps: ArrayLike = 1e-8,
    initial_scale: ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    """Divides the updates by a moving estimate of their std (centered RMSProp).

    The variance `v̂ - m̂²` is floored at 0, so rounding never takes a square root of a
    negative number (optax can return NaN there).

    Update rule:
        m = decay m + (1-decay) g;  v = decay v + (1-decay) g²
        u = g / sqrt(max(v̂ - m̂², 0) + eps)   (or `/ (sqrt(.) + eps)`)

    Args:
        decay: Decay of the moving averages, in [0, 1).
        eps: Numerical floor, >= 0.
        initial_scale: Initial value of `v`, >= 0.
        eps_in_sqrt: Where `eps` is added.
        bias_correction: Divide `m` and `v` by `1 - decay**t`.

    Returns:
        A transformation with `ScaleByRStdDevState` (or the `WithCount` variant).

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_stddev(decay=0.5, eps=0.0)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([2.], dtype=float32)

    References:
        Graves, 2013: https://arxiv.org/abs/1308.0850
    """
    _check_rms_args("scale_by_stddev", decay, eps, initial_scale)

    def init(params):
        mu = _tree.zeros_like(params)
        nu = _tree.squares_like(params, initial_scale)
        if bias_correction:
            return ScaleByRStdDevWithCountState(
                count=jnp.zeros([], jnp.int32), mu=mu, nu=nu
            )
        return ScaleByRStdDevState(mu=mu, nu=nu)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("scale_by_stddev", state.nu, updates)
        hd, heps = _numerics.hparam(decay), _numerics.hparam(eps)
        if bias_correction:
            count = _numerics.safe_int32_increment(state.count)
            c = _numerics.bias_correction(hd, count)
        else:
            c = jnp.ones((), hd.dtype)

        def leaf(g, m, v):
            cd = _numerics.leaf_dtype(g, m, v)
            gc = g.astype(cd)
            r = lambda h: like(h, gc)
            m_store, m_new = store(moment(gc, m.astype(cd), r(hd)), m.dtype)
            v_store, v_new = store(
                moment(abs_sq(gc).astype(cd), v.astype(cd), r(hd)), v.dtype
            )
            var = v_new / r(c) - abs_sq(m_new / r(c)).astype(cd)
            var = jnp.maximum(jnp.real(var), 0).astype(cd)
            u = gc * _inverse_root(var, r(heps), eps_in_sqrt)
            return u.astype(g.dtype), m_store, v_store

        out = jax.tree.map(leaf, updates, state.mu, state.nu)
        u, mu, nu = _tree.unzip(out, updates, 3)
        if bias_correction:
            return u, ScaleByRStdDevWithCountState(count=count, mu=mu, nu=nu)
        return u, ScaleByRStdDevState(mu=mu, nu=nu)

    return GradientTransformation(init, update)


def scale_by_rss(
    initial_accumulator_value: ArrayLike = 0.1, eps: ArrayLike = 1e-7
) -> GradientTransformation:
    """Divides the updates by the root of the sum of all past squared updates (AdaGrad).

    Update rule:
        s = s + g²;  u = g / sqrt(s + eps) where s > 0, else 0

    Args:
        initial_accumulator_value: Initial value of `s`, >= 0.
        eps: Added inside the root, >= 0.

    Returns:
        A transformation with `ScaleByRssState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
        >>> tx.update(jnp.array([-3.0]), tx.init(jnp.zeros(1)))[0]
        Array([-1.], dtype=float32)

    References:
        Duchi et al., 2011: https://jmlr.org/papers/v12/duchi11a.html
    """
    _validate.check_nonnegative(
        "scale_by_rss", "initial_accumulator_value", initial_accumulator_value
    )
    _validate.check_nonnegative("scale_by_rss", "eps", eps)

    def init(params):
        return ScaleByRssState(
            sum_of_squares=_tree.squares_like(params, initial_accumulator_value)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("scale_by_rss", state.sum_of_squares, updates)
        heps = _numerics.hparam(eps)

        def leaf(g, s):
            cd = _numerics.leaf_dtype(g, s)
            gc = g.astype(cd)
            s_store, s_new = store(abs_sq(gc).astype(cd) + s.astype(cd), s.dtype)
            positive = jnp.real(s_new) > 0
            inv = jnp.where(positive, jax.lax.rsqrt(s_new + like(heps, gc)), 0)
            return (gc * inv).astype(g.dtype), s_store

        u, s = _tree.unzip(
            jax.tree.map(leaf, updates, state.sum_of_squares), updates, 2
        )
        return u, ScaleByRssState(sum_of_squares=s)

    return GradientTransformation(init, update)
