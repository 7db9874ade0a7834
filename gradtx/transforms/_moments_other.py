# SPDX-License-Identifier: Apache-2.0
"""Preconditioners with extra state: Adan, NovoGrad (layer-wise) and Rprop (sign)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._numerics import abs_sq, like, moment, store
from gradtx._types import ScalarOrSchedule


class ScaleByAdanState(NamedTuple):
    """State of `scale_by_adan`; `t` is the int32 step count (optax's name)."""

    m: Any
    v: Any
    n: Any
    g: Any
    t: jax.Array


class ScaleByNovogradState(NamedTuple):
    """State of `scale_by_novograd`: `nu` holds one scalar per leaf."""

    count: jax.Array
    mu: Any
    nu: Any


class ScaleByRpropState(NamedTuple):
    """State of `scale_by_rprop`: per-element step sizes and the last update."""

    step_sizes: Any
    prev_updates: Any


def scale_by_adan(
    b1: ArrayLike = 0.98,
    b2: ArrayLike = 0.92,
    b3: ArrayLike = 0.99,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
) -> GradientTransformation:
    """Rescales updates by Adan: Nesterov-style moments of g and of its change.

    The coefficient of the gradient difference is `1 - b2`, as in optax (the paper
    and its reference code use `b2`); see docs/api/optimizers_adaptive.md.

    Update rule:
        d = g - g_prev (0 on the first step);  m = b1 m + (1-b1) g
        v = b2 v + (1-b2) d;  n = b3 n + (1-b3) (g + (1-b2) d)²
        u = (m̂ + (1-b2) v̂) / (sqrt(n̂ + eps_root) + eps), hats bias-corrected

    Args:
        b1: Decay of the gradient average in [0, 1).
        b2: Decay of the gradient-difference average in [0, 1).
        b3: Decay of the squared term in [0, 1).
        eps: Added outside the square root, >= 0.
        eps_root: Added inside the square root, >= 0.

    Returns:
        A transformation with `ScaleByAdanState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_adan(eps=0.0)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([1.], dtype=float32)

    References:
        Xie et al., 2022: https://arxiv.org/abs/2208.06677
    """
    fn = "scale_by_adan"
    for name, value in (("b1", b1), ("b2", b2), ("b3", b3)):
        _validate.check_decay(fn, name, value)
    _validate.check_nonnegative(fn, "eps", eps)
    _validate.check_nonnegative(fn, "eps_root", eps_root)

    def init(params):
        return ScaleByAdanState(
            m=_tree.zeros_like(params),
            v=_tree.zeros_like(params),
            n=_tree.squares_like(params),
            g=_tree.zeros_like(params),
            t=jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure(fn, state.m, updates)
        hb1, hb2, hb3 = (_numerics.hparam(b) for b in (b1, b2, b3))
        heps, heps_root = _numerics.hparam(eps), _numerics.hparam(eps_root)
        first = state.t == 0
        t = _numerics.safe_int32_increment(state.t)
        c1, c2, c3 = (_numerics.bias_correction(b, t) for b in (hb1, hb2, hb3))

        def leaf(g, m, v, n, g_prev):
            cd = _numerics.leaf_dtype(g, m, v, n, g_prev)
            gc = g.astype(cd)
            r = lambda h: like(h, gc)
            d = jnp.where(first, jnp.zeros_like(gc), gc - g_prev.astype(cd))
            m_store, m_new = store(moment(gc, m.astype(cd), r(hb1)), m.dtype)
            v_store, v_new = store(moment(d, v.astype(cd), r(hb2)), v.dtype)
            sq = abs_sq(gc + (1 - r(hb2)) * d).astype(cd)
            n_store, n_new = store(moment(sq, n.astype(cd), r(hb3)), n.dtype)
            num = m_new / r(c1) + (1 - r(hb2)) * v_new / r(c2)
            u = num / (jnp.sqrt(n_new / r(c3) + r(heps_root)) + r(heps))
            return u.astype(g.dtype), m_store, v_store, n_store, g

        out = jax.tree.map(leaf, updates, state.m, state.v, state.n, state.g)
        u, m, v, n, g = _tree.unzip(out, updates, 5)
        return u, ScaleByAdanState(m=m, v=v, n=n, g=g, t=t)

    return GradientTransformation(init, update)


def scale_by_novograd(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.25,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mu_dtype: Any | None = None,
) -> GradientTransformation:
    """Rescales updates by NovoGrad: one second moment per leaf (layer-wise norm).

    Update rule:
        v = ||g||² on step 1, then b2 v + (1-b2) ||g||²   (one scalar per leaf)
        m = g / (sqrt(v + eps_root) + eps) + wd p on step 1, then b1 m + (same);  u = m

    Args:
        b1: Decay of the first moment in [0, 1) (no `1-b1` factor, as in the paper).
        b2: Decay of the per-leaf second moment in [0, 1).
        eps: Added outside the square root, >= 0; float32 for f16 grads.
        eps_root: Added inside the square root, >= 0.
        weight_decay: Non-negative coefficient of `params` in `m`, or a schedule of
            the step count (optax takes a scalar only); non-zero needs `params`.
        mu_dtype: Storage dtype of `mu`; None keeps the params' dtype.

    Returns:
        A transformation with `ScaleByNovogradState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_novograd(eps=0.0)
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))[0]
        Array([0.6, 0.8], dtype=float32)

    References:
        Ginsburg et al., 2019: https://arxiv.org/abs/1905.11286
    """
    fn = "scale_by_novograd"
    _validate.check_decay(fn, "b1", b1)
    _validate.check_decay(fn, "b2", b2)
    _validate.check_nonnegative(fn, "eps", eps)
    _validate.check_nonnegative(fn, "eps_root", eps_root)
    _validate.check_nonnegative(fn, "weight_decay", weight_decay)
    mu_dtype = _validate.check_dtype(fn, "mu_dtype", mu_dtype)
    no_decay = _validate.concrete_float(weight_decay) == 0.0

    def init(params):
        def nu_leaf(p):
            return jnp.zeros((), jnp.float32 if p.dtype == jnp.float16 else p.dtype)

        return ScaleByNovogradState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=jax.tree.map(nu_leaf, params),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.check_structure(fn, state.mu, updates)
        if no_decay and params is None:
            params = updates  # multiplied by a weight decay of 0 below
        _tree.require_params(fn, params)
        hb1, hb2 = _numerics.hparam(b1), _numerics.hparam(b2)
        heps, heps_root = _numerics.hparam(eps), _numerics.hparam(eps_root)
        wd = weight_decay(state.count) if callable(weight_decay) else weight_decay
        hwd = _numerics.hparam(wd)
        count = _numerics.safe_int32_increment(state.count)
        first = count == 1

        def leaf(g, m, v, p):
            cd = _numerics.leaf_dtype(g, m, v)
            gc = g.astype(cd)
            r = lambda h: like(h, gc)
            sq = jnp.sum(abs_sq(gc))
            v_new = jnp.where(first, sq, moment(sq, v.astype(cd), r(hb2)))
            v_store, v_new = store(v_new, v.dtype)
            step = gc / (jnp.sqrt(v_new + r(heps_root)) + r(heps))
            step = step + r(hwd) * p.astype(cd)
            m_new = jnp.where(first, step, r(hb1) * m.astype(cd) + step)
            m_store, m_new = store(m_new, m.dtype)
            return m_new.astype(g.dtype), m_store, v_store

        out = jax.tree.map(leaf, updates, state.mu, state.nu, params)
        u, mu, nu = _tree.unzip(out, updates, 3)
        return u, ScaleByNovogradState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


def scale_by_rprop(
    learning_rate: ArrayLike,
    eta_minus: ArrayLike = 0.5,
    eta_plus: ArrayLike = 1.2,
    min_step_size: ArrayLike = 1e-6,
    max_step_size: ArrayLike = 50.0,
) -> GradientTransformation:
    """Rescales updates by Rprop (iRprop-): per-element step sizes from gradient signs.

    Returns the step of this gradient, not the previous one (optax PR #1725: optax
    returns last step's update, zero on the first). Not negated: `rprop` flips it.

    Update rule:
        s = g · u_prev;  Δ = clip(Δ η+, min, max) if s > 0, clip(Δ η-, ...) if s < 0
        u = 0 where s < 0, else Δ sign(g);  u_prev = u

    Args:
        learning_rate: The initial step size Δ, >= 0; a schedule gives `fn(0)`.
        eta_minus: Step factor after a sign change, in [0, 1].
        eta_plus: Step factor while the sign holds, >= 1.
        min_step_size: Smallest step size, >= 0.
        max_step_size: Largest step size, >= `min_step_size`.

    Returns:
        A transformation with `ScaleByRpropState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_rprop(0.1)
        >>> tx.update(jnp.array([3.0, -2.0]), tx.init(jnp.zeros(2)))[0]
        Array([ 0.1, -0.1], dtype=float32)

    References:
        Riedmiller & Braun, 1993: https://doi.org/10.1109/ICNN.1993.298623;
        Igel & Hüsken, 2003: https://doi.org/10.1016/S0925-2312(01)00700-7
    """
    fn = "scale_by_rprop"
    _validate.check_nonnegative(fn, "learning_rate", learning_rate)
    _validate.check_range(fn, "eta_minus", eta_minus, 0.0, 1.0)
    _validate.check_range(fn, "eta_plus", eta_plus, 1.0)
    _validate.check_nonnegative(fn, "min_step_size", min_step_size)
    low = _validate.concrete_float(min_step_size)
    _validate.check_range(fn, "max_step_size", max_step_size, low or 0.0)

    def init(params):
        lr = learning_rate
        if callable(lr):
            lr = lr(jnp.zeros([], jnp.int32))
        return ScaleByRpropState(
            step_sizes=_tree.full_like(params, _numerics.hparam(lr)),
            prev_updates=_tree.zeros_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure(fn, state.step_sizes, updates)
        h = [_numerics.hparam(x) for x in (eta_minus, eta_plus)]
        lo, hi = _numerics.hparam(min_step_size), _numerics.hparam(max_step_size)

        def leaf(g, step, prev):
            cd = _numerics.leaf_dtype(g, step, prev)
            gc = g.astype(cd)
            r = lambda x: like(x, gc)
            s = gc * prev.astype(cd)
            factor = jnp.where(s > 0, r(h[1]), r(h[0]))
            grown = jnp.clip(step.astype(cd) * factor, r(lo), r(hi))
            step_store, step_new = store(
                jnp.where(s == 0, step.astype(cd), grown), step.dtype
            )
            u = jnp.where(s < 0, jnp.zeros_like(gc), step_new * jnp.sign(gc))
            prev_store, u = store(u, prev.dtype)
            return u.astype(g.dtype), step_store, prev_store

        out = jax.tree.map(leaf, updates, state.step_sizes, state.prev_updates)
        u, steps, prev = _tree.unzip(out, updates, 3)
        return u, ScaleByRpropState(step_sizes=steps, prev_updates=prev)

    return GradientTransformation(init, update)
