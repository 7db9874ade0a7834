# SPDX-License-Identifier: Apache-2.0
"""D-Adaptation AdamW and Prodigy: Adam whose step size estimates the distance to x*.

Both are one transformation each, not a chain: the learning rate enters the distance
estimate itself (`dlr = d * lr * bias_correction` weighs the running numerator), so it
cannot be applied by a separate `scale_by_learning_rate`, exactly as in optax.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._numerics import store
from gradtx._types import ScalarOrSchedule
from gradtx.contrib import _pf_common as pf


class DAdaptAdamWState(NamedTuple):
    """State of `dadapt_adamw`: Adam's moments, weighted sum `s`, `d`, numerator."""

    exp_avg: Any
    exp_avg_sq: Any
    grad_sum: Any
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array


class ProdigyState(NamedTuple):
    """State of `prodigy`: `dadapt_adamw`'s plus the initial params `params0`."""

    exp_avg: Any
    exp_avg_sq: Any
    grad_sum: Any
    params0: Any
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array


def _check(fn: str, learning_rate, betas, eps, estim_lr0, weight_decay) -> None:
    _validate.check_nonnegative(fn, "learning_rate", learning_rate)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise _validate.HyperparameterError(
            f"gradtx.{fn}: betas must be a pair (b1, b2), got {betas!r}"
        )
    _validate.check_decay(fn, "betas[0]", betas[0])
    _validate.check_decay(fn, "betas[1]", betas[1])
    _validate.check_nonnegative(fn, "eps", eps)
    _validate.check_range(fn, "estim_lr0", estim_lr0, 0.0, low_open=True)
    _validate.check_nonnegative(fn, "weight_decay", weight_decay)


def _first(params: Any, dtype: Any, estim_lr0: Any) -> tuple[Any, ...]:
    """Zero moments, `d = estim_lr0` and a zero numerator."""
    return (
        pf.zeros_moments(params),
        pf.zeros_moments(params),
        pf.zeros_moments(params),
        pf.scalar(estim_lr0, dtype),
        jnp.zeros([], dtype),
    )


def _step_sizes(state, learning_rate, weight_decay, betas, dtype):
    """`(b1, b2, dlr, lr * wd)` for this step, as scalars of `dtype`."""
    b1, b2 = pf.scalar(betas[0], dtype), pf.scalar(betas[1], dtype)
    count = _numerics.safe_int32_increment(state.count)
    t = count.astype(dtype)
    bc = jnp.sqrt(pf.one_minus_pow(b2, t)) / pf.one_minus_pow(b1, t)
    dlr = state.estim_lr * pf.scheduled(learning_rate, state.count, dtype) * bc
    return b1, b2, dlr, pf.scheduled(weight_decay, state.count, dtype), count


def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999),
    eps: ArrayLike = 1e-8,
    estim_lr0: ArrayLike = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
) -> GradientTransformation:
    """D-Adaptation AdamW: Adam whose step `d` grows to the distance to the solution.

    Returns the final (descent) updates; `learning_rate` is a multiplier of `d`.

    Update rule (sb2 = sqrt(b2), dlr = d lr sqrt(1-b2^t)/(1-b1^t), old v in the sum):
        num = sb2 num + (1-sb2) dlr <g, s / (sqrt(v) + eps)>
        m = b1 m + (1-b1) dlr g;  v = b2 v + (1-b2) g²;  s = sb2 s + (1-sb2) dlr g
        d = max(d, num / ((1-sb2) |s|_1));  u = -wd dlr x - m / (sqrt(v) + eps)

    Args:
        learning_rate: Non-negative multiplier of the estimated step, or a schedule.
        betas: `(b1, b2)`, each in [0, 1).
        eps: Added outside the square root, >= 0.
        estim_lr0: Initial estimate of `d`, > 0.
        weight_decay: Decoupled weight decay (times `dlr`), >= 0, or a schedule.

    Returns:
        A transformation with `DAdaptAdamWState`; its `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.dadapt_adamw()
        >>> p = jnp.ones(1)
        >>> u, _ = tx.update(jnp.array([2.0]), tx.init(p), p)
        >>> jnp.round(u, 6)  # the first step is about estim_lr0
        Array([-1.e-06], dtype=float32)

    References:
        Defazio & Mishchenko, 2023: https://arxiv.org/abs/2301.07733
    """
    fn = "dadapt_adamw"
    _check(fn, learning_rate, betas, eps, estim_lr0, weight_decay)

    def init(params):
        dtype = pf.scalar_dtype(params)
        return DAdaptAdamWState(
            *_first(params, dtype, estim_lr0), jnp.zeros([], jnp.int32)
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params(fn, params)
        _tree.check_structure(fn, state.exp_avg, updates)
        dtype = state.estim_lr.dtype
        b1, b2, dlr, wd, count = _step_sizes(
            state, learning_rate, weight_decay, betas, dtype
        )
        # 1 - sqrt(b2) without cancellation (5e-4 for b2 = 0.999).
        one_minus_sb2 = pf.one_minus_pow(b2, jnp.asarray(0.5, dtype))
        sb2, heps = 1 - one_minus_sb2, pf.scalar(eps, dtype)
        acc = pf.reduce_sum(
            lambda g, s, v: g * s / (jnp.sqrt(v) + _numerics.like(heps, v)),
            dtype,
            updates,
            state.grad_sum,
            state.exp_avg_sq,
        )

        def leaf(g, p, m, v, s):
            cd = _numerics.leaf_dtype(g, m, v, s)
            gc = g.astype(cd)
            r = lambda h: h.astype(cd)
            m_store, m_new = store(
                r(b1) * m.astype(cd) + (1 - r(b1)) * r(dlr) * gc, m.dtype
            )
            v_store, v_new = store(
                r(b2) * v.astype(cd) + (1 - r(b2)) * gc * gc, v.dtype
            )
            s_store, _ = store(
                r(sb2) * s.astype(cd) + r(one_minus_sb2) * r(dlr) * gc, s.dtype
            )
            u = -r(wd * dlr) * p.astype(cd) - m_new / (jnp.sqrt(v_new) + r(heps))
            return u.astype(g.dtype), m_store, v_store, s_store

        out = jax.tree.map(
            leaf, updates, params, state.exp_avg, state.exp_avg_sq, state.grad_sum
        )
        u, m, v, s = _tree.unzip(out, updates, 4)
        num = sb2 * state.numerator_weighted + one_minus_sb2 * dlr * acc
        # A zero |s|_1 (all gradients zero so far) has no estimate: keep d, where
        # optax computes 0/0 and its d stays NaN for the rest of the run.
        d_hat = pf.safe_div(num, one_minus_sb2 * pf.l1(s, dtype))
        d = jnp.maximum(state.estim_lr, d_hat)
        return u, DAdaptAdamWState(m, v, s, d, num, count)

    return GradientTransformation(init, update)


def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999),
    beta3: ArrayLike | None = None,
    eps: ArrayLike = 1e-8,
    estim_lr0: ArrayLike = 1e-6,
    estim_lr_coef: ArrayLike = 1.0,
    weight_decay: ScalarOrSchedule = 0.0,
    safeguard_warmup: bool = False,
) -> GradientTransformation:
    """Prodigy: D-Adaptation with the distance measured from the initial params.

    Update rule (d the old estimate, dlr = d lr sqrt(1-b2^t)/(1-b1^t)):
        m = b1 m + (1-b1) d g;  v = b2 v + (1-b2) d² g²
        s = b3 s + (d or dlr with safeguard_warmup off) d g / d0
        num = b3 num + (d/d0) dlr <g, x0 - x>;  d = max(d, coef num / |s|_1)
        u = -wd dlr x - dlr m / (sqrt(v) + d eps)

    Args:
        learning_rate: Non-negative multiplier of the estimated step, or a schedule.
        betas: `(b1, b2)`, each in [0, 1).
        beta3: Decay of `s` and `num` in [0, 1); None means `sqrt(b2)`.
        eps: Added outside the square root (times `d`), >= 0.
        estim_lr0: Initial estimate `d0`, > 0.
        estim_lr_coef: Multiplier of the new estimate, >= 0.
        weight_decay: Decoupled weight decay (times `dlr`), >= 0, or a schedule.
        safeguard_warmup: Weigh `s` by `d` instead of `dlr` (for warm-up schedules).

    Returns:
        A transformation with `ProdigyState`; its `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.prodigy()
        >>> p = jnp.ones(1)
        >>> u, _ = tx.update(jnp.array([2.0]), tx.init(p), p)
        >>> jnp.round(u, 6)  # the first step is about estim_lr0
        Array([-1.e-06], dtype=float32)

    References:
        Mishchenko & Defazio, 2023: https://arxiv.org/abs/2306.06101
    """
    fn = "prodigy"
    _check(fn, learning_rate, betas, eps, estim_lr0, weight_decay)
    if beta3 is not None:
        _validate.check_decay(fn, "beta3", beta3)
    _validate.check_nonnegative(fn, "estim_lr_coef", estim_lr_coef)

    def init(params):
        dtype = pf.scalar_dtype(params)
        m, v, s, d, num = _first(params, dtype, estim_lr0)
        x0 = pf.initial_point(params)
        return ProdigyState(m, v, s, x0, d, num, jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params(fn, params)
        _tree.check_structure(fn, state.exp_avg, updates)
        dtype = state.estim_lr.dtype
        b1, b2, dlr, wd, count = _step_sizes(
            state, learning_rate, weight_decay, betas, dtype
        )
        b3 = jnp.sqrt(b2) if beta3 is None else pf.scalar(beta3, dtype)
        d, d0 = state.estim_lr, pf.scalar(estim_lr0, dtype)
        heps, coef = pf.scalar(eps, dtype), pf.scalar(estim_lr_coef, dtype)
        params0 = pf.known_point(state.params0, params)
        acc = pf.reduce_sum(
            lambda g, x0, x: g * (x0 - x), dtype, updates, params0, params
        )
        s_weight = (d if safeguard_warmup else dlr) / d0

        def leaf(g, p, m, v, s):
            cd = _numerics.leaf_dtype(g, m, v, s)
            dg = d.astype(cd) * g.astype(cd)
            r = lambda h: h.astype(cd)
            m_store, m_new = store(r(b1) * m.astype(cd) + (1 - r(b1)) * dg, m.dtype)
            v_store, v_new = store(
                r(b2) * v.astype(cd) + (1 - r(b2)) * dg * dg, v.dtype
            )
            s_store, _ = store(r(b3) * s.astype(cd) + r(s_weight) * dg, s.dtype)
            den = jnp.sqrt(v_new) + r(d * heps)
            u = -r(wd * dlr) * p.astype(cd) - r(dlr) * m_new / den
            return u.astype(g.dtype), m_store, v_store, s_store

        out = jax.tree.map(
            leaf, updates, params, state.exp_avg, state.exp_avg_sq, state.grad_sum
        )
        u, m, v, s = _tree.unzip(out, updates, 4)
        num = b3 * state.numerator_weighted + (d / d0) * dlr * acc
        # As in dadapt_adamw: no estimate (keep d) while every gradient was zero.
        d_new = jnp.maximum(d, coef * pf.safe_div(num, pf.l1(s, dtype)))
        return u, ProdigyState(m, v, s, params0, d_new, num, count)

    return GradientTransformation(init, update)
