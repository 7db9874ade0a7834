# SPDX-License-Identifier: Apache-2.0
"""COCOB (coin betting) and MADGRAD (dual averaging) from optax.contrib."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._combine import chain
from gradtx._numerics import like, store
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.contrib import _pf_common as pf
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights


class COCOBState(NamedTuple):
    """State of `scale_by_cocob`: the initial params and the per-coordinate wealth."""

    init_particles: Any
    cumulative_gradients: Any
    scale: Any
    subgradients: Any
    reward: Any


class MadgradState(NamedTuple):
    """State of `scale_by_madgrad`: weighted sums of squared and plain gradients."""

    count: jax.Array
    grad_sum_sq: Any
    s: Any
    x0: Any


def scale_by_cocob(
    alpha: ArrayLike = 100.0, eps: ArrayLike = 1e-8
) -> GradientTransformation:
    """Replaces the updates by COCOB-Backprop's bet: no learning rate to tune.

    Per coordinate: L = max(L, |g|); G = G + |g|; R = max(R - g (x - x0), 0);
    C = C - g. The returned update moves the params to the bet
    `x0 + C / (L max(G + L, alpha L)) (L + R)`. `L` starts at `eps`.

    Args:
        alpha: Bounds the bet early on (`max(G + L, alpha L)`), >= 0.
        eps: Initial value of the gradient-range estimate `L`, >= 0.

    Returns:
        A transformation with `COCOBState`; its `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_cocob()
        >>> p = jnp.zeros(1)
        >>> tx.update(jnp.array([2.0]), tx.init(p), p)[0]
        Array([-0.01], dtype=float32)

    References:
        Orabona & Tommasi, 2017: https://arxiv.org/abs/1705.07795
    """
    fn = "scale_by_cocob"
    _validate.check_nonnegative(fn, "alpha", alpha)
    _validate.check_nonnegative(fn, "eps", eps)

    def init(params):
        # Accumulators use float32 for float16 params: eps=1e-8 is 0 in float16.
        return COCOBState(
            init_particles=pf.initial_point(params),
            cumulative_gradients=pf.zeros_moments(params),
            scale=_tree.squares_like(params, eps),
            subgradients=pf.zeros_moments(params),
            reward=pf.zeros_moments(params),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params(fn, params)
        _tree.check_structure(fn, state.scale, updates)
        halpha = _numerics.hparam(alpha)
        particles = pf.known_point(state.init_particles, params)

        def leaf(g, p, p0, c, scale, sub, rew):
            cd = _numerics.leaf_dtype(g, p, scale)
            gc, pc, p0c = g.astype(cd), p.astype(cd), p0.astype(cd)
            s_store, s_new = store(
                jnp.maximum(scale.astype(cd), jnp.abs(gc)), scale.dtype
            )
            g_store, g_new = store(sub.astype(cd) + jnp.abs(gc), sub.dtype)
            r_new = jnp.maximum(rew.astype(cd) - gc * (pc - p0c), 0)
            r_store, r_new = store(r_new, rew.dtype)
            c_store, c_new = store(c.astype(cd) - gc, c.dtype)
            bet = c_new / (s_new * jnp.maximum(g_new + s_new, like(halpha, gc) * s_new))
            u = p0c + bet * (s_new + r_new) - pc
            return u.astype(g.dtype), c_store, s_store, g_store, r_store

        out = jax.tree.map(
            leaf,
            updates,
            params,
            particles,
            state.cumulative_gradients,
            state.scale,
            state.subgradients,
            state.reward,
        )
        u, c, scale, sub, rew = _tree.unzip(out, updates, 5)
        return u, COCOBState(particles, c, scale, sub, rew)

    return GradientTransformation(init, update)


@_validate.names_errors()
def cocob(
    learning_rate: ScalarOrSchedule = 1.0,
    alpha: ArrayLike = 100.0,
    eps: ArrayLike = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """COCOB-Backprop: `chain(add_decayed_weights, scale_by_lr(+lr), scale_by_cocob)`.

    The learning rate only rescales the gradients fed to the bet (1 is the method);
    see `scale_by_cocob` and `add_decayed_weights` for the other arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.cocob()
        >>> p = jnp.zeros(1)
        >>> tx.update(jnp.array([2.0]), tx.init(p), p)[0]
        Array([-0.01], dtype=float32)

    References:
        Orabona & Tommasi, 2017: https://arxiv.org/abs/1705.07795
    """
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, flip_sign=False),
        scale_by_cocob(alpha, eps),
    )


def scale_by_madgrad(
    learning_rate: ScalarOrSchedule,
    momentum: float = 0.9,
    eps: float = 1e-6,
) -> GradientTransformation:
    """Replaces the updates by MADGRAD's step (the learning rate is inside the method).

    Update rule (k = step before the increment, lr evaluated at k; lamb = 0 if lr = 0):
        lamb = (lr + eps) sqrt(k + 1);  s = s + lamb g;  G = G + lamb g²
        z = x0 - s / (cbrt(G) + eps);  u = (1 - momentum) z + momentum x - x

    Args:
        learning_rate: Non-negative step size, or a schedule.
        momentum: Averaging weight of the iterate in [0, 1).
        eps: Added to the learning rate and to the cube root, >= 0.

    Returns:
        A transformation with `MadgradState`; its `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_madgrad(1.0, momentum=0.0, eps=0.0)
        >>> p = jnp.zeros(1)
        >>> tx.update(jnp.array([8.0]), tx.init(p), p)[0]
        Array([-2.], dtype=float32)

    References:
        Defazio & Jelassi, 2021: https://arxiv.org/abs/2101.11075
    """
    fn = "scale_by_madgrad"
    _validate.check_nonnegative(fn, "learning_rate", learning_rate)
    _validate.check_decay(fn, "momentum", momentum)
    _validate.check_nonnegative(fn, "eps", eps)

    def init(params):
        return MadgradState(
            count=jnp.zeros([], jnp.int32),
            grad_sum_sq=_tree.squares_like(params),
            s=pf.zeros_moments(params),
            x0=pf.initial_point(params),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params(fn, params)
        _tree.check_structure(fn, state.s, updates)
        dtype = pf.scalar_dtype(params)
        heps, hmom = pf.scalar(eps, dtype), pf.scalar(momentum, dtype)
        lr = pf.scheduled(learning_rate, state.count, dtype)
        # MADGRAD's code adds eps to the learning rate, so optax moves the params by
        # eps-sized steps even at lr = 0; gradtx keeps lr = 0 a no-op (lamb = 0).
        lr_stable = jnp.where(lr > 0, lr + heps, jnp.zeros_like(lr))
        # k + 1 in floating point: the int32 count may be saturated at its maximum.
        lamb = lr_stable * jnp.sqrt(state.count.astype(dtype) + 1)

        def leaf(g, p, gsq, s, x0):
            cd = _numerics.leaf_dtype(g, p, gsq, s)
            gc, pc = g.astype(cd), p.astype(cd)
            r = lambda h: h.astype(cd)
            gsq_store, gsq_new = store(gsq.astype(cd) + r(lamb) * gc * gc, gsq.dtype)
            s_store, s_new = store(s.astype(cd) + r(lamb) * gc, s.dtype)
            z = x0.astype(cd) - pf.safe_div(s_new, jnp.cbrt(gsq_new) + r(heps))
            u = (1 - r(hmom)) * z + r(hmom) * pc - pc
            return u.astype(g.dtype), gsq_store, s_store

        x0 = pf.known_point(state.x0, params)
        out = jax.tree.map(leaf, updates, params, state.grad_sum_sq, state.s, x0)
        u, gsq, s = _tree.unzip(out, updates, 3)
        count = _numerics.safe_int32_increment(state.count)
        return u, MadgradState(count=count, grad_sum_sq=gsq, s=s, x0=x0)

    return GradientTransformation(init, update)


@_validate.names_errors()
def madgrad(
    learning_rate: ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eps: float = 1e-6,
) -> GradientTransformation:
    """MADGRAD: `chain(add_decayed_weights(weight_decay), scale_by_madgrad(...))`.

    The weight decay is added to the gradient (coupled), as in optax and the paper's
    code; see `scale_by_madgrad` for the other arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.madgrad(1.0, momentum=0.0, eps=0.0)
        >>> p = jnp.zeros(1)
        >>> tx.update(jnp.array([8.0]), tx.init(p), p)[0]
        Array([-2.], dtype=float32)

    References:
        Defazio & Jelassi, 2021: https://arxiv.org/abs/2101.11075
    """
    return chain(
        add_decayed_weights(weight_decay),
        scale_by_madgrad(learning_rate, momentum, eps),
    )
