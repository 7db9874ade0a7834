# SPDX-License-Identifier: Apache-2.0
"""MoMo and MoMo-Adam: model-based momentum steps that need the loss (`value=`).

Each is one transformation, as in optax: the step size is computed from the loss, the
momentum, and the params together, so there is no block to chain it from.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._errors import MissingValueError
from gradtx._numerics import store
from gradtx._types import ScalarOrSchedule
from gradtx.contrib import _pf_common as pf


class MomoState(NamedTuple):
    """State of `momo`: momentum, averaged loss `barf`, `gamma`, lower bound `lb`."""

    exp_avg: Any
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array


class MomoAdamState(NamedTuple):
    """State of `momo_adam`: `momo`'s plus Adam's second moment `exp_avg_sq`."""

    exp_avg: Any
    exp_avg_sq: Any
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array


def _check(fn: str, learning_rate, lower_bound, weight_decay) -> None:
    _validate.check_nonnegative(fn, "learning_rate", learning_rate)
    _validate.check_range(fn, "lower_bound", lower_bound)
    _validate.check_nonnegative(fn, "weight_decay", weight_decay)


def _inputs(fn: str, state: Any, params: Any, value: Any, updates: Any):
    _tree.require_params(fn, params)
    _tree.check_structure(fn, state.exp_avg, updates)
    if value is None or jnp.shape(value) != ():
        raise MissingValueError(
            f"gradtx.{fn}: update needs the scalar loss as value=, got {value!r}"
        )
    return state.barf.dtype, jnp.asarray(value).astype(state.barf.dtype)


def _tau(alpha, wd, barf, gamma, iprod, norm_sq, lb, lower_bound, bc1, adapt):
    """MoMo's step size and next lower bound (all scalars; bc1 = 1 for `momo`)."""
    one_wd = 1 + alpha * wd
    lower = lower_bound.astype(barf.dtype)
    this_lb = lb
    if adapt:
        cap = one_wd * (barf - gamma) + iprod
        reset = jnp.maximum(cap / (2 * bc1 * one_wd), lower)
        this_lb = jnp.where(cap < one_wd * bc1 * lb, reset, lb)
    gap = jnp.maximum(one_wd * (barf - bc1 * this_lb - gamma) + iprod, 0)
    # optax's threshold is float's eps (float32's without x64); here the state's.
    tiny = norm_sq <= jnp.finfo(barf.dtype).eps
    t1 = jnp.where(tiny, jnp.zeros_like(gap), gap / jnp.where(tiny, 1, norm_sq))
    tau = jnp.minimum(alpha / bc1, t1)
    new_lb = lb
    if adapt:
        new_lb = jnp.maximum(((barf + iprod - gamma) - tau * norm_sq / 2) / bc1, lower)
    return tau, new_lb


def _step(updates: Any, direction: Any, params: Any, lr_wd: Any, tau: Any) -> Any:
    """`-lr wd / (1 + lr wd) x - tau direction`, in the gradients' dtypes."""
    shrink = lr_wd / (1 + lr_wd)

    def leaf(g, d, x):
        return (
            -shrink.astype(d.dtype) * x.astype(d.dtype) - tau.astype(d.dtype) * d
        ).astype(g.dtype)

    return jax.tree.map(leaf, updates, direction, params)


def momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta: ArrayLike = 0.9,
    lower_bound: ArrayLike = 0.0,
    weight_decay: ArrayLike = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    """MoMo: SGD with momentum whose step is capped by a Polyak-type model step.

    `update(grads, state, params, value=loss)` needs the params and the scalar loss.

    Update rule (the first step uses beta = 0; lr evaluated at the old count):
        d = beta d + (1-beta) g;  f = beta f + (1-beta) loss
        gamma = beta gamma + (1-beta) <g, x>
        tau = min(lr, max((1+lr wd)(f - lb - gamma) + <d, x>, 0) / |d|²)
        u = -lr wd / (1 + lr wd) x - tau d

    Args:
        learning_rate: Largest step, >= 0, or a schedule.
        beta: Momentum in [0, 1).
        lower_bound: Lower bound of the loss (0 for most losses); finite.
        weight_decay: Weight decay, >= 0.
        adapt_lower_bound: Estimate the lower bound online (ResetStar).

    Returns:
        A transformation with `MomoState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.
        MissingParamsError: If `update` is called without `params`.
        MissingValueError: If `update` is called without a scalar `value`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.momo(learning_rate=1.0)
        >>> p = jnp.array([2.0])
        >>> tx.update(p, tx.init(p), p, value=jnp.sum(p**2) / 2)[0]
        Array([-1.], dtype=float32)

    References:
        Schaipp et al., 2023: https://arxiv.org/abs/2305.07583
    """
    fn = "momo"
    _check(fn, learning_rate, lower_bound, weight_decay)
    _validate.check_decay(fn, "beta", beta)

    def init(params):
        dtype = pf.scalar_dtype(params)
        zero = jnp.zeros([], dtype)
        lb = pf.scalar(lower_bound, dtype)
        return MomoState(
            pf.zeros_moments(params), zero, zero, lb, jnp.zeros([], jnp.int32)
        )

    def update(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        dtype, f = _inputs(fn, state, params, value, updates)
        bt = jnp.where(state.count == 0, jnp.zeros([], dtype), pf.scalar(beta, dtype))
        barf = bt * state.barf + (1 - bt) * f
        gamma = bt * state.gamma + (1 - bt) * pf.vdot(updates, params, dtype)

        def leaf(g, d):
            cd = _numerics.leaf_dtype(g, d)
            return store(
                bt.astype(cd) * d.astype(cd) + (1 - bt.astype(cd)) * g.astype(cd),
                d.dtype,
            )

        out = jax.tree.map(leaf, updates, state.exp_avg)
        d_store, d_new = _tree.unzip(out, updates, 2)
        alpha = pf.scheduled(learning_rate, state.count, dtype)
        wd = pf.scalar(weight_decay, dtype)
        tau, lb = _tau(
            alpha,
            wd,
            barf,
            gamma,
            pf.vdot(d_new, params, dtype),
            pf.sum_sq(d_new, dtype),
            state.lb,
            pf.scalar(lower_bound, dtype),
            jnp.ones([], dtype),
            adapt_lower_bound,
        )
        u = _step(updates, d_new, params, alpha * wd, tau)
        count = _numerics.safe_int32_increment(state.count)
        return u, MomoState(d_store, barf, gamma, lb, count)

    return GradientTransformation(init, update)


def momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    lower_bound: ArrayLike = 0.0,
    weight_decay: ArrayLike = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    """MoMo-Adam: MoMo's step size on Adam's preconditioned momentum.

    `update(grads, state, params, value=loss)` needs the params and the scalar loss.

    Update rule (t the new count, bc1 = 1-b1^t, bc2 = 1-b2^t):
        d = b1 d + (1-b1) g;  v = b2 v + (1-b2) g²;  D = eps + sqrt(v/bc2)
        f = b1 f + (1-b1) loss;  gamma = b1 gamma + (1-b1) <g, x>
        tau = min(lr/bc1, max((1+lr wd)(f - bc1 lb - gamma) + <d, x>, 0) / <d, d/D>)
        u = -lr wd / (1 + lr wd) x - tau d / D

    Args:
        learning_rate: Largest step, >= 0, or a schedule.
        b1: Momentum (and loss average) decay in [0, 1).
        b2: Second-moment decay in [0, 1).
        eps: Added to the preconditioner, >= 0.
        lower_bound: Lower bound of the loss; finite.
        weight_decay: Weight decay, >= 0.
        adapt_lower_bound: Estimate the lower bound online (ResetStar).

    Returns:
        A transformation with `MomoAdamState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.
        MissingParamsError: If `update` is called without `params`.
        MissingValueError: If `update` is called without a scalar `value`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.momo_adam(learning_rate=0.1)
        >>> p = jnp.array([2.0])
        >>> u, _ = tx.update(p, tx.init(p), p, value=jnp.sum(p**2) / 2)
        >>> round(float(u[0]), 6)  # capped at the learning rate
        -0.1

    References:
        Schaipp et al., 2023: https://arxiv.org/abs/2305.07583
    """
    fn = "momo_adam"
    _check(fn, learning_rate, lower_bound, weight_decay)
    _validate.check_decay(fn, "b1", b1)
    _validate.check_decay(fn, "b2", b2)
    _validate.check_nonnegative(fn, "eps", eps)

    def init(params):
        dtype = pf.scalar_dtype(params)
        zero = jnp.zeros([], dtype)
        return MomoAdamState(
            pf.zeros_moments(params),
            _tree.squares_like(params),
            zero,
            zero,
            pf.scalar(lower_bound, dtype),
            jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        dtype, f = _inputs(fn, state, params, value, updates)
        hb1, hb2, heps = (pf.scalar(h, dtype) for h in (b1, b2, eps))
        count = _numerics.safe_int32_increment(state.count)
        bc1 = pf.one_minus_pow(hb1, count.astype(dtype))
        bc2 = pf.one_minus_pow(hb2, count.astype(dtype))
        barf = hb1 * state.barf + (1 - hb1) * f
        gamma = hb1 * state.gamma + (1 - hb1) * pf.vdot(updates, params, dtype)

        def leaf(g, d, v):
            cd = _numerics.leaf_dtype(g, d, v)
            gc = g.astype(cd)
            r = lambda h: h.astype(cd)
            d_store, d_new = store(r(hb1) * d.astype(cd) + (1 - r(hb1)) * gc, d.dtype)
            v_store, v_new = store(
                r(hb2) * v.astype(cd) + (1 - r(hb2)) * gc * gc, v.dtype
            )
            return d_store, v_store, d_new, d_new / (r(heps) + jnp.sqrt(v_new / r(bc2)))

        out = jax.tree.map(leaf, updates, state.exp_avg, state.exp_avg_sq)
        d_store, v_store, d_new, d_pre = _tree.unzip(out, updates, 4)
        alpha = pf.scheduled(learning_rate, state.count, dtype)
        wd = pf.scalar(weight_decay, dtype)
        tau, lb = _tau(
            alpha,
            wd,
            barf,
            gamma,
            pf.vdot(d_new, params, dtype),
            pf.vdot(d_new, d_pre, dtype),
            state.lb,
            pf.scalar(lower_bound, dtype),
            bc1,
            adapt_lower_bound,
        )
        u = _step(updates, d_pre, params, alpha * wd, tau)
        return u, MomoAdamState(d_store, v_store, barf, gamma, lb, count)

    return GradientTransformation(init, update)
