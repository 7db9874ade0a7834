# SPDX-License-Identifier: Apache-2.0
"""Adam variants whose denominator lags one step: ACProp and ADOPT (optax.contrib)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._combine import chain
from gradtx._numerics import abs_sq, like, moment, store
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.transforms._adam import ScaleByAdamState
from gradtx.transforms._moments import ScaleByBeliefState
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights


def scale_by_acprop(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-16,
    eps_root: ArrayLike = 1e-16,
) -> GradientTransformation:
    """Rescales updates by ACProp: the gradient over last step's belief (as optax).

    The denominator uses the centred second moment up to the previous step only
    (asynchronous). Like optax (not the paper, whose numerator is `m_t` and whose
    prediction error is `g - m_t`), the numerator is the raw gradient and the
    prediction error is taken against the previous `m`; the first step divides by 1.

    Update rule:
        s_hat = s/(1-b2^(t-1)), or 1 at t = 1;  u = g / (sqrt(s_hat) + eps)
        m = b1 m + (1-b1) g;  s = b2 s + (1-b2) (g - m_old)² + eps_root

    Args:
        b1: First-moment decay in [0, 1).
        b2: Decay of the belief (centred second moment) in [0, 1).
        eps: Added outside the square root, >= 0.
        eps_root: Added to the belief every step, >= 0.

    Returns:
        A transformation with `ScaleByBeliefState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_acprop()
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([2.], dtype=float32)

    References:
        Zhuang et al., 2021: https://arxiv.org/abs/2110.05454
    """
    fn = "scale_by_acprop"
    _validate.check_decay(fn, "b1", b1)
    _validate.check_decay(fn, "b2", b2)
    _validate.check_nonnegative(fn, "eps", eps)
    _validate.check_nonnegative(fn, "eps_root", eps_root)

    def init(params):
        return ScaleByBeliefState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params),
            nu=_tree.squares_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure(fn, state.mu, updates)
        hb1, hb2 = _numerics.hparam(b1), _numerics.hparam(b2)
        heps, heps_root = _numerics.hparam(eps), _numerics.hparam(eps_root)
        initial = state.count == 0
        c2 = _numerics.bias_correction(hb2, state.count)
        c2 = jnp.where(initial, jnp.ones_like(c2), c2)

        def leaf(g, m, s):
            cd = _numerics.leaf_dtype(g, m, s)
            gc, m_old, s_old = g.astype(cd), m.astype(cd), s.astype(cd)
            r = lambda h: like(h, gc)
            s_hat = jnp.where(initial, jnp.ones_like(s_old), s_old / r(c2))
            u = gc / (jnp.sqrt(s_hat) + r(heps))
            m_store, _ = store(moment(gc, m_old, r(hb1)), m.dtype)
            s_new = moment(abs_sq(gc - m_old), s_old, r(hb2)) + r(heps_root)
            s_store, _ = store(s_new, s.dtype)
            return u.astype(g.dtype), m_store, s_store

        out = jax.tree.map(leaf, updates, state.mu, state.nu)
        u, mu, nu = _tree.unzip(out, updates, 3)
        count = _numerics.safe_int32_increment(state.count)
        return u, ScaleByBeliefState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


@_validate.names_errors()
def acprop(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-16,
    eps_root: ArrayLike = 1e-16,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """ACProp: `chain(scale_by_acprop, add_decayed_weights, scale_by_learning_rate)`.

    See `scale_by_acprop` and `add_decayed_weights` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.acprop(0.1)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0]
        Array([-0.3], dtype=float32)

    References:
        Zhuang et al., 2021: https://arxiv.org/abs/2110.05454
    """
    return chain(
        scale_by_acprop(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def _quarter_power(count: jax.Array) -> jax.Array:
    """`count ** 0.25`, ADOPT's default clipping schedule (from the paper)."""
    return count.astype(_numerics.hparam_dtype()) ** 0.25


def scale_by_adopt(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.9999,
    eps: ArrayLike = 1e-6,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _quarter_power,
) -> GradientTransformation:
    """Rescales updates by ADOPT: normalize by the *previous* second moment, then EMA.

    The first step only records `nu = g²` and returns zero updates.

    Update rule:
        x = g / max(sqrt(nu), eps), clipped to ±clip_value_fn(t-1) if use_clipping
        m = b1 m + (1-b1) x  (m = 0 at t = 1);  nu = b2 nu + (1-b2) g²  (g² at t = 1)
        u = m, or b1 m + (1-b1) x with nesterov

    Args:
        b1: Decay of the normalized momentum in [0, 1).
        b2: Second-moment decay in [0, 1).
        eps: Floor of `sqrt(nu)`, >= 0.
        mu_dtype: Storage dtype of `mu`; None keeps the params' dtype.
        nesterov: Return the Nesterov look-ahead of the momentum.
        use_clipping: Clip the normalized gradient (recommended from scratch).
        clip_value_fn: Maps the int32 step (before the increment) to the clip value;
            the default is `count ** 0.25`.

    Returns:
        A transformation with `ScaleByAdamState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_adopt()
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([0.], dtype=float32)

    References:
        Taniguchi et al., 2024: https://arxiv.org/abs/2411.02853
    """
    fn = "scale_by_adopt"
    _validate.check_decay(fn, "b1", b1)
    _validate.check_decay(fn, "b2", b2)
    _validate.check_nonnegative(fn, "eps", eps)
    mu_dtype = _validate.check_dtype(fn, "mu_dtype", mu_dtype)
    if not callable(clip_value_fn):
        raise TypeError(f"gradtx.{fn}: clip_value_fn must be callable")

    def init(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=_tree.squares_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure(fn, state.mu, updates)
        first = state.count == 0
        hb1, hb2 = _numerics.hparam(b1), _numerics.hparam(b2)
        hb1 = jnp.where(first, jnp.ones_like(hb1), hb1)
        hb2 = jnp.where(first, jnp.zeros_like(hb2), hb2)
        heps = _numerics.hparam(eps)
        clip = _numerics.hparam(clip_value_fn(state.count)) if use_clipping else None

        def leaf(g, m, v):
            cd = _numerics.leaf_dtype(g, m, v)
            gc, v_old = g.astype(cd), v.astype(cd)
            r = lambda h: like(h, gc)
            x = gc / jnp.maximum(jnp.sqrt(v_old), r(heps))
            if clip is not None:
                x = jnp.clip(x, -r(clip), r(clip))
            # The first step only records nu (m stays 0, as b1 is 1 then); zeroing x
            # keeps eps=0 and a zero gradient from making 0 * (0/0) = NaN there.
            x = jnp.where(first, jnp.zeros_like(x), x)
            m_store, m_new = store(moment(x, m.astype(cd), r(hb1)), m.dtype)
            v_store, _ = store(moment(abs_sq(gc).astype(cd), v_old, r(hb2)), v.dtype)
            u = moment(x, m_new, r(hb1)) if nesterov else m_new
            return u.astype(g.dtype), m_store, v_store

        out = jax.tree.map(leaf, updates, state.mu, state.nu)
        u, mu, nu = _tree.unzip(out, updates, 3)
        count = _numerics.safe_int32_increment(state.count)
        return u, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


@_validate.names_errors()
def adopt(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.9999,
    eps: ArrayLike = 1e-6,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _quarter_power,
) -> GradientTransformation:
    """ADOPT: `chain(scale_by_adopt(...), scale_by_learning_rate(lr))`.

    See `scale_by_adopt` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adopt(0.1)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0]
        Array([-0.], dtype=float32)

    References:
        Taniguchi et al., 2024: https://arxiv.org/abs/2411.02853
    """
    return chain(
        scale_by_adopt(
            b1,
            b2,
            eps,
            mu_dtype,
            nesterov=nesterov,
            use_clipping=use_clipping,
            clip_value_fn=clip_value_fn,
        ),
        scale_by_learning_rate(learning_rate),
    )
