# SPDX-License-Identifier: Apache-2.0
"""Adam-family preconditioners: scale_by_adam, scale_by_amsgrad, scale_by_adamax."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _fusion, _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._numerics import abs_sq, like, moment, store


class ScaleByAdamState(NamedTuple):
    """State of `scale_by_adam` and `scale_by_adamax`."""

    count: jax.Array
    mu: Any
    nu: Any


class ScaleByAmsgradState(NamedTuple):
    """State of `scale_by_amsgrad`: Adam's plus the running max of `nu`."""

    count: jax.Array
    mu: Any
    nu: Any
    nu_max: Any


def _check_adam_args(fn: str, b1, b2, eps, eps_root=0.0) -> None:
    _validate.check_decay(fn, "b1", b1)
    _validate.check_decay(fn, "b2", b2)
    _validate.check_nonnegative(fn, "eps", eps)
    _validate.check_nonnegative(fn, "eps_root", eps_root)


def scale_by_adam(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any | None = None,
) -> GradientTransformation:
    """Rescales updates by Adam's bias-corrected first and second moments.

    Moment math runs in float32 (or wider) and is stored in `mu_dtype` / `nu_dtype`,
    so bf16 or f16 params never turn `b2=0.999` into 1 or `eps` into 0.

    Update rule:
        m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;  m̂ = m/(1-b1^t);  v̂ = v/(1-b2^t)
        u = m̂ / (sqrt(v̂ + eps_root) + eps)
        nesterov: m̂ = b1 m / (1-b1^{t+1}) + (1-b1) g / (1-b1^t)

    Args:
        b1: First-moment decay in [0, 1).
        b2: Second-moment decay in [0, 1).
        eps: Added to the denominator outside the square root, >= 0.
        eps_root: Added inside the square root, >= 0 (needed to differentiate through).
        mu_dtype: Storage dtype of `mu`; None keeps the params' dtype.
        nesterov: Use the Nesterov (NAdam) form of the first moment.
        nu_dtype: Storage dtype of `nu`; None keeps the params' dtype (not in optax).

    Returns:
        A transformation with `ScaleByAdamState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_adam()
        >>> tx.update(jnp.array([2.0, -4.0]), tx.init(jnp.zeros(2)))[0]
        Array([ 1., -1.], dtype=float32)

    References:
        Kingma & Ba, 2014: https://arxiv.org/abs/1412.6980;
        Dozat, 2016 (NAdam): https://openreview.net/pdf?id=OM0jvwB8jIp57ZJjtNEZ
    """
    _check_adam_args("scale_by_adam", b1, b2, eps, eps_root)
    mu_dtype = _validate.check_dtype("scale_by_adam", "mu_dtype", mu_dtype)
    nu_dtype = _validate.check_dtype("scale_by_adam", "nu_dtype", nu_dtype)

    def init(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=_tree.squares_like(params, dtype=nu_dtype),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("scale_by_adam", state.mu, updates)
        hb1, hb2 = _numerics.hparam(b1), _numerics.hparam(b2)
        heps, heps_root = _numerics.hparam(eps), _numerics.hparam(eps_root)
        count = _numerics.safe_int32_increment(state.count)
        c1, c2 = (
            _numerics.bias_correction(hb1, count),
            _numerics.bias_correction(hb2, count),
        )
        c1_next = _numerics.bias_correction(hb1, _numerics.safe_int32_increment(count))

        def leaf(g, m, v):
            cd = _numerics.leaf_dtype(g, m, v)
            gc = g.astype(cd)
            r = lambda h: like(h, gc)
            m_store, m_new = store(moment(gc, m.astype(cd), r(hb1)), m.dtype)
            v_new = moment(abs_sq(gc).astype(cd), v.astype(cd), r(hb2))
            v_store, v_new = store(v_new, v.dtype)
            if nesterov:
                m_hat = r(hb1) * m_new / r(c1_next) + (1 - r(hb1)) * gc / r(c1)
            else:
                m_hat = m_new / r(c1)
            u = m_hat / (jnp.sqrt(v_new / r(c2) + r(heps_root)) + r(heps))
            return u.astype(g.dtype), m_store, v_store

        out = jax.tree.map(leaf, updates, state.mu, state.nu)
        u, mu, nu = _tree.unzip(out, updates, 3)
        return u, ScaleByAdamState(count=count, mu=mu, nu=nu)

    tx = GradientTransformation(init, update)
    return _fusion.describe(
        tx, "scale_by_adam", b1=b1, b2=b2, eps=eps, eps_root=eps_root, nesterov=nesterov
    )


def scale_by_amsgrad(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    """Adam with the denominator built from the running maximum of the (corrected) `nu`.

    Update rule:
        as `scale_by_adam`, then v_max = max(v_max, v̂)
        u = m̂ / (sqrt(v_max + eps_root) + eps)

    Args:
        b1: First-moment decay in [0, 1).
        b2: Second-moment decay in [0, 1).
        eps: Added outside the square root, >= 0.
        eps_root: Added inside the square root, >= 0.
        mu_dtype: Storage dtype of `mu`; None keeps the params' dtype.
        bias_correction_mu: Bias-correct the first moment.
        bias_correction_nu: Bias-correct the second moment before taking the max.

    Returns:
        A transformation with `ScaleByAmsgradState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_amsgrad()
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([1.], dtype=float32)

    References:
        Reddi et al., 2018: https://openreview.net/forum?id=ryQu7f-RZ
    """
    _check_adam_args("scale_by_amsgrad", b1, b2, eps, eps_root)
    mu_dtype = _validate.check_dtype("scale_by_amsgrad", "mu_dtype", mu_dtype)

    def init(params):
        return ScaleByAmsgradState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=_tree.squares_like(params),
            nu_max=_tree.squares_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("scale_by_amsgrad", state.mu, updates)
        hb1, hb2 = _numerics.hparam(b1), _numerics.hparam(b2)
        heps, heps_root = _numerics.hparam(eps), _numerics.hparam(eps_root)
        count = _numerics.safe_int32_increment(state.count)
        one = jnp.ones((), hb1.dtype)
        c1 = _numerics.bias_correction(hb1, count) if bias_correction_mu else one
        c2 = _numerics.bias_correction(hb2, count) if bias_correction_nu else one

        def leaf(g, m, v, vmax):
            cd = _numerics.leaf_dtype(g, m, v, vmax)
            gc = g.astype(cd)
            r = lambda h: like(h, gc)
            m_store, m_new = store(moment(gc, m.astype(cd), r(hb1)), m.dtype)
            v_new = moment(abs_sq(gc).astype(cd), v.astype(cd), r(hb2))
            v_store, v_new = store(v_new, v.dtype)
            vmax_new = jnp.maximum(vmax.astype(cd), v_new / r(c2))
            vmax_store, vmax_new = store(vmax_new, vmax.dtype)
            u = (m_new / r(c1)) / (jnp.sqrt(vmax_new + r(heps_root)) + r(heps))
            return (
                u.astype(g.dtype),
                m_store,
                v_store,
                vmax_store,
            )

        out = jax.tree.map(leaf, updates, state.mu, state.nu, state.nu_max)
        u, mu, nu, nu_max = _tree.unzip(out, updates, 4)
        return u, ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return GradientTransformation(init, update)


def scale_by_adamax(
    b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8
) -> GradientTransformation:
    """Adam with the infinity norm: divides by a decaying max of `|g|`.

    Update rule:
        m = b1 m + (1-b1) g;  v = max(b2 v, |g| + eps);  u = m / (1-b1^t) / v

    Args:
        b1: First-moment decay in [0, 1).
        b2: Decay of the infinity norm in [0, 1).
        eps: Added to `|g|`, >= 0; kept in float32 so zero grads give finite updates.

    Returns:
        A transformation with `ScaleByAdamState` (`nu` holds the infinity norm).

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_adamax(eps=0.0)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([1.], dtype=float32)

    References:
        Kingma & Ba, 2014, section 7: https://arxiv.org/abs/1412.6980
    """
    _check_adam_args("scale_by_adamax", b1, b2, eps)

    def init(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params),
            nu=_tree.zeros_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("scale_by_adamax", state.mu, updates)
        hb1, hb2, heps = (
            _numerics.hparam(b1),
            _numerics.hparam(b2),
            _numerics.hparam(eps),
        )
        count = _numerics.safe_int32_increment(state.count)
        c1 = _numerics.bias_correction(hb1, count)

        def leaf(g, m, v):
            cd = _numerics.leaf_dtype(g, m, v)
            gc = g.astype(cd)
            r = lambda h: like(h, gc)
            m_store, m_new = store(moment(gc, m.astype(cd), r(hb1)), m.dtype)
            v_new = jnp.maximum(jnp.abs(gc).astype(cd) + r(heps), r(hb2) * v.astype(cd))
            v_store, v_new = store(v_new, v.dtype)
            # v >= eps always holds in float32; the floor matters only when a float16
            # store has rounded `|g| + eps` down to 0 (0/0 would be NaN).
            u = m_new / r(c1) / jnp.maximum(v_new, r(heps))
            return u.astype(g.dtype), m_store, v_store

        out = jax.tree.map(leaf, updates, state.mu, state.nu)
        u, mu, nu = _tree.unzip(out, updates, 3)
        return u, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)
