# SPDX-License-Identifier: Apache-2.0
"""Mechanic: learns a scale for any base optimizer's updates by coin betting."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx.contrib import _pf_common as pf


class MechanicState(NamedTuple):
    """State of `mechanize`: the base state, the bettors' `r, m, v, s`, and `x0`."""

    base_optimizer_state: Any
    count: jax.Array
    r: jax.Array
    m: jax.Array
    v: jax.Array
    s: jax.Array
    x0: Any


def _bettors(state: MechanicState, h: jax.Array, s_init: Any, eps: jax.Array):
    """One step of the `num_betas` coin-betting scale learners: new `(r, m, v, s)`."""
    n = state.s.shape[0]
    dtype = state.s.dtype
    betas = jnp.asarray([1 - 0.1**i for i in range(1, n + 1)], dtype)
    clipped_h = jnp.clip(h, -state.m, state.m)
    m = jnp.maximum(betas * state.m, jnp.abs(h) + eps)
    v = betas**2 * state.v + h**2
    r = betas * state.r + clipped_h * state.s
    wealth = pf.scalar(s_init, dtype) / n * m + jnp.maximum(r, 0)
    return r, m, v, wealth / (jnp.sqrt(v) + eps)


def mechanize(
    base_optimizer: GradientTransformation,
    weight_decay: ArrayLike = 1e-2,
    eps: ArrayLike = 1e-8,
    s_init: ArrayLike = 1e-6,
    num_betas: int = 6,
) -> GradientTransformation:
    """Wraps `base_optimizer` so that its accumulated updates are scaled by a learned s.

    Params move as `x = x0 + s * (sum of the base updates)`; `s` is the sum of the
    wealth-over-variance bets of `num_betas` learners with betas `1 - 0.1**i`.
    Weight decay enters the betting gradient only, scaled by `s |g| / |x|`.

    Args:
        base_optimizer: Any transformation whose updates are descent steps (e.g.
            `gradtx.adam(lr)`); an optax transformation works too.
        weight_decay: Weight decay of the betting gradient, >= 0.
        eps: Added to denominators, >= 0.
        s_init: Initial scale of each learner, > 0.
        num_betas: Number of learners (betas), an integer >= 1.

    Returns:
        A transformation with `MechanicState`; its `update` needs `params` and passes
        extra keyword arguments on to the base optimizer.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.mechanize(gradtx.sgd(1.0))
        >>> p = jnp.ones(1)
        >>> u, _ = tx.update(jnp.array([2.0]), tx.init(p), p)
        >>> round(float(u[0]) * 1e6, 3)  # the learned scale starts near s_init
        -2.027

    References:
        Cutkosky et al., 2023: https://arxiv.org/abs/2306.00144
    """
    fn = "mechanize"
    _validate.check_nonnegative(fn, "weight_decay", weight_decay)
    _validate.check_nonnegative(fn, "eps", eps)
    _validate.check_range(fn, "s_init", s_init, 0.0, low_open=True)
    _validate.check_positive_int(fn, "num_betas", num_betas)
    base = with_extra_args_support(base_optimizer)

    def init(params):
        dtype = pf.scalar_dtype(params)
        zeros = jnp.zeros([num_betas], dtype)
        return MechanicState(
            base_optimizer_state=base.init(params),
            count=jnp.zeros([], jnp.int32),
            r=zeros,
            m=zeros,
            v=zeros,
            s=jnp.full([num_betas], pf.scalar(s_init, dtype), dtype),
            x0=params,
        )

    def update(updates, state, params=None, **extra_args):
        _tree.require_params(fn, params)
        _tree.check_structure(fn, state.x0, updates)
        base_updates, base_state = base.update(
            updates, state.base_optimizer_state, params, **extra_args
        )
        dtype = state.s.dtype
        heps, wd = pf.scalar(eps, dtype), pf.scalar(weight_decay, dtype)
        x0 = _tree.select(state.count == 0, params, state.x0)
        s_sum = jnp.sum(state.s)
        g_norm = jnp.sqrt(pf.sum_sq(updates, dtype))
        p_norm = jnp.sqrt(pf.sum_sq(params, dtype))
        decay = wd * s_sum * g_norm / (p_norm + heps)
        # h = <g + decay x, (x0 - x) / (s_sum + eps)>, the betting gradient.
        h = pf.reduce_sum(
            lambda g, x, x0: (
                (g + _numerics.like(decay, g) * x)
                * (x0 - x)
                / _numerics.like(s_sum + heps, g)
            ),
            dtype,
            updates,
            params,
            x0,
        )
        r, m, v, s = _bettors(state, h, s_init, heps)
        total = jnp.sum(s)

        def leaf(g, x, x0_, u):
            cd = _numerics.leaf_dtype(g, x)
            xc, x0c = x.astype(cd), x0_.astype(cd)
            delta = (x0c - xc) / (s_sum + heps).astype(cd) - u.astype(cd)
            return (x0c - total.astype(cd) * delta - xc).astype(g.dtype)

        new = jax.tree.map(leaf, updates, params, x0, base_updates)
        count = _numerics.safe_int32_increment(state.count)
        return new, MechanicState(base_state, count, r, m, v, s, x0)

    return GradientTransformation(init, update)
