# SPDX-License-Identifier: Apache-2.0
"""Memory-light second moments: Adafactor's factored RMS, SM3, and param-block RMS."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._numerics import abs_sq, like, store


class FactoredState(NamedTuple):
    """State of `scale_by_factored_rms` (optax's layout: `(1,)` placeholders)."""

    count: jax.Array
    v_row: Any
    v_col: Any
    v: Any


class ScaleBySM3State(NamedTuple):
    """State of `scale_by_sm3`: per-dimension accumulators (`mu`) and momentum."""

    mu: Any
    nu: Any


def _decay_rate_pow(i: ArrayLike, exponent: ArrayLike = 0.8) -> jax.Array:
    """Adafactor's second-moment decay `1 - (i + 1)**-exponent` at local step `i`."""
    exponent = _numerics.hparam(exponent)
    t = jnp.asarray(i).astype(exponent.dtype) + 1
    return 1 - t ** (-exponent)


def _state_dtype(p: Any) -> Any:
    """Squared-gradient statistics leave float16's range: keep them in float32."""
    return jnp.float32 if p.dtype == jnp.float16 else p.dtype


def _factored_dims(shape, factored: bool, min_dim: int) -> tuple[int, int] | None:
    """The second-largest and the largest axis, if both are >= `min_dim`."""
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim:
        return None
    return int(order[-2]), int(order[-1])


def _local_step(count: jax.Array, step_offset: Any) -> jax.Array:
    """`count - step_offset`, clamped at 0 (optax PR #1791: negative gives NaN)."""
    if isinstance(step_offset, (int, np.integer)) and not isinstance(step_offset, bool):
        return jnp.maximum(count - jnp.int32(step_offset), 0)
    offset = _numerics.hparam(step_offset)
    return jnp.maximum(count.astype(offset.dtype) - offset, 0)


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: ArrayLike = 0.8,
    step_offset: ArrayLike = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: ArrayLike = 1e-30,
    decay_rate_fn: Callable[[ArrayLike, ArrayLike], ArrayLike] = _decay_rate_pow,
) -> GradientTransformation:
    """Rescales updates by Adafactor's (factored) estimate of the gradient RMS.

    A leaf whose two largest axes are both >= `min_dim_size_to_factor` keeps only row
    and column averages of g² (sublinear memory); others keep a full average.

    Update rule:
        b_t = decay_rate_fn(max(t - step_offset, 0), decay_rate), t = count before step
        factored: R = b R + (1-b) mean_cols(g² + ε), C = b C + (1-b) mean_rows(g² + ε)
        u = g / sqrt(R C / mean(R));  else V = b V + (1-b)(g² + ε), u = g / sqrt(V)

    Args:
        factored: Factor the statistics of leaves with two large enough axes.
        decay_rate: Exponent of the default decay schedule `1 - (t+1)^-decay_rate`.
        step_offset: Step at which the decay schedule restarts (fine-tuning), >= 0.
        min_dim_size_to_factor: Smallest axis size that is factored, an int >= 0.
        epsilon: Added to g² before averaging, >= 0.
        decay_rate_fn: Maps `(step, decay_rate)` to the decay of this step.

    Returns:
        A transformation with `FactoredState`; `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_factored_rms(epsilon=0.0)
        >>> p = jnp.zeros(2)
        >>> tx.update(jnp.array([3.0, -2.0]), tx.init(p), p)[0]
        Array([ 1., -1.], dtype=float32)

    References:
        Shazeer & Stern, 2018: https://arxiv.org/abs/1804.04235
    """
    fn = "scale_by_factored_rms"
    _validate.check_nonnegative(fn, "decay_rate", decay_rate)
    _validate.check_nonnegative(fn, "step_offset", step_offset)
    _validate.check_positive_int(
        fn, "min_dim_size_to_factor", min_dim_size_to_factor, minimum=0
    )
    _validate.check_nonnegative(fn, "epsilon", epsilon)
    if not callable(decay_rate_fn):
        raise TypeError(f"gradtx.{fn}: decay_rate_fn must be callable")
    dims = functools.partial(
        _factored_dims, factored=factored, min_dim=min_dim_size_to_factor
    )

    def init(params):
        def leaf(p):
            small = jnp.zeros((1,), p.dtype)
            d = dims(p.shape)
            sd = _state_dtype(p)
            if d is None:
                return small, small, _tree.filled(p, 0, sd)
            row = _tree.filled_reduced(p, d[1], 0, sd)
            col = _tree.filled_reduced(p, d[0], 0, sd)
            return row, col, small

        v_row, v_col, v = _tree.unzip(jax.tree.map(leaf, params), params, 3)
        return FactoredState(jnp.zeros([], jnp.int32), v_row, v_col, v)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.check_structure(fn, state.v, updates)
        _tree.require_params(fn, params)
        step = _local_step(state.count, step_offset)
        decay = _numerics.hparam(decay_rate_fn(step, decay_rate))
        heps = _numerics.hparam(epsilon)

        def leaf(g, vr, vc, v):
            cd = _numerics.leaf_dtype(g, vr, vc, v)
            gc = g.astype(cd)
            b, g2 = like(decay, gc), abs_sq(gc) + like(heps, gc)
            d = dims(g.shape)
            if d is None:
                v_store, v_new = store(b * v.astype(cd) + (1 - b) * g2, v.dtype)
                u = gc * jax.lax.rsqrt(v_new)
                return u.astype(g.dtype), vr, vc, v_store
            d1, d0 = d
            vr, vc = _tree.match_reduced(vr, g, d0), _tree.match_reduced(vc, g, d1)
            row = b * vr.astype(cd) + (1 - b) * jnp.mean(g2, axis=d0)
            col = b * vc.astype(cd) + (1 - b) * jnp.mean(g2, axis=d1)
            vr_store, row = store(row, vr.dtype)
            vc_store, col = store(col, vc.dtype)
            mean = jnp.mean(row, axis=d1 - 1 if d1 > d0 else d1, keepdims=True)
            u = (
                gc
                * jnp.expand_dims(jax.lax.rsqrt(row / mean), d0)
                * jnp.expand_dims(jax.lax.rsqrt(col), d1)
            )
            return u.astype(g.dtype), vr_store, vc_store, v

        out = jax.tree.map(leaf, updates, state.v_row, state.v_col, state.v)
        u, v_row, v_col, v = _tree.unzip(out, updates, 4)
        count = _numerics.safe_int32_increment(state.count)
        return u, FactoredState(count, v_row, v_col, v)

    return GradientTransformation(init, update)


def _sm3_accumulator(g2, mu, b2):
    """`c g² + b2 min_i(mu_i)`; c = 1 - b2, or 1 when b2 = 1 (sum, as in the paper)."""
    nd = g2.ndim
    if nd < 2:
        prior = mu[0].astype(g2.dtype)
    else:
        shaped = [
            jnp.reshape(m.astype(g2.dtype), [1] * i + [-1] + [1] * (nd - i - 1))
            for i, m in enumerate(mu)
        ]
        prior = functools.reduce(jnp.minimum, shaped)
    c = jnp.where(b2 == 1, jnp.ones_like(b2), 1 - b2)
    return c * g2 + b2 * prior


def scale_by_sm3(
    b1: ArrayLike = 0.9, b2: ArrayLike = 1.0, eps: ArrayLike = 1e-8
) -> GradientTransformation:
    """Rescales updates by SM3: one accumulator per row, column, ... of each leaf.

    Leaves with fewer than two axes (scalars too, which optax rejects) keep one
    accumulator per element, so the rule is Adagrad's there.

    Update rule:
        a = (1-b2) g² + b2 min_i(mu_i) (b2 = 1: a = g² + min_i(mu_i))
        mu_i = max of `a` over every axis but i;  v = a^-1/2 g where a > 0, else 0
        nu = b1 nu + (1-b1) v;  u = nu

    Args:
        b1: Momentum decay in [0, 1).
        b2: Accumulator decay in [0, 1]; 1 sums like Adagrad.
        eps: Added to the accumulator inside the square root, >= 0.

    Returns:
        A transformation with `ScaleBySM3State`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_sm3(b1=0.0, eps=0.0)
        >>> tx.update(jnp.array([3.0, -2.0]), tx.init(jnp.zeros(2)))[0]
        Array([ 1., -1.], dtype=float32)

    References:
        Anil et al., 2019: https://arxiv.org/abs/1901.11150
    """
    fn = "scale_by_sm3"
    _validate.check_decay(fn, "b1", b1)
    _validate.check_decay(fn, "b2", b2, closed=True)
    _validate.check_nonnegative(fn, "eps", eps)

    def init(params):
        def leaf(p):
            sd = _state_dtype(p)
            if p.ndim < 2:
                return [jnp.zeros(p.shape, sd)]
            return [jnp.zeros((n,), sd) for n in p.shape]

        return ScaleBySM3State(
            mu=jax.tree.map(leaf, params), nu=_tree.zeros_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure(fn, state.nu, updates)
        hb1, hb2, heps = (_numerics.hparam(x) for x in (b1, b2, eps))

        def leaf(g, mu, nu):
            cd = _numerics.leaf_dtype(g, nu, *mu)
            gc = g.astype(cd)
            r = lambda h: like(h, gc)
            acc = _sm3_accumulator(abs_sq(gc), mu, r(hb2))
            if g.ndim < 2:
                new_mu = [acc]
            else:
                axes = range(g.ndim)
                new_mu = [
                    jnp.max(acc, axis=tuple(j for j in axes if j != i)) for i in axes
                ]
            mu_store = [
                store(m, old.dtype)[0] for m, old in zip(new_mu, mu, strict=True)
            ]
            inv = jnp.where(acc > 0, jax.lax.rsqrt(acc + r(heps)), 0)
            nu_store, nu_new = store(
                (1 - r(hb1)) * gc * inv + r(hb1) * nu.astype(cd), nu.dtype
            )
            return nu_new.astype(g.dtype), mu_store, nu_store

        out = jax.tree.map(leaf, updates, state.mu, state.nu)
        u, mu, nu = _tree.unzip(out, updates, 3)
        return u, ScaleBySM3State(mu=mu, nu=nu)

    return GradientTransformation(init, update)
