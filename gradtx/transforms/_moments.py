# SPDX-License-Identifier: Apache-2.0
"""Adaptive-moment preconditioners: AdaDelta, AdaBelief, Yogi and RAdam.

Same dtype rules as `_adam.py`: the math of every leaf runs in float32 (or wider),
eps stays float32, and each state leaf is rounded to its storage dtype once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._numerics import abs_sq, like, moment, store
from gradtx.transforms._adam import ScaleByAdamState


class ScaleByAdaDeltaState(NamedTuple):
    """State of `scale_by_adadelta`: running averages of g² and of the update²."""

    e_g: Any
    e_x: Any


class ScaleByBeliefState(NamedTuple):
    """State of `scale_by_belief`: the count, the mean and the belief variance."""

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_adadelta(
    rho: ArrayLike = 0.9, eps: ArrayLike = 1e-6
) -> GradientTransformation:
    """Rescales updates by AdaDelta's ratio of update RMS to gradient RMS.

    The result points along the gradient (it is not negated):
    `scale_by_learning_rate` flips the sign.

    Update rule:
        e_g = rho e_g + (1-rho) g²;  u = sqrt(e_x + eps) / sqrt(e_g + eps) g
        e_x = rho e_x + (1-rho) u²

    Args:
        rho: Decay of both running averages, in [0, 1).
        eps: Added inside both square roots, >= 0; float32 even for f16 grads.

    Returns:
        A transformation with `ScaleByAdaDeltaState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_adadelta(rho=0.0, eps=1.0)
        >>> tx.update(jnp.array([0.0]), tx.init(jnp.zeros(1)))[0]
        Array([0.], dtype=float32)

    References:
        Zeiler, 2012: https://arxiv.org/abs/1212.5701
    """
    _validate.check_decay("scale_by_adadelta", "rho", rho)
    _validate.check_nonnegative("scale_by_adadelta", "eps", eps)

    def init(params):
        return ScaleByAdaDeltaState(
            e_g=_tree.squares_like(params), e_x=_tree.squares_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("scale_by_adadelta", state.e_g, updates)
        hrho, heps = _numerics.hparam(rho), _numerics.hparam(eps)

        def leaf(g, eg, ex):
            cd = _numerics.leaf_dtype(g, eg, ex)
            gc = g.astype(cd)
            r = lambda h: like(h, gc)
            eg_store, eg_new = store(
                moment(abs_sq(gc).astype(cd), eg.astype(cd), r(hrho)), eg.dtype
            )
            u = jnp.sqrt(ex.astype(cd) + r(heps)) / jnp.sqrt(eg_new + r(heps)) * gc
            ex_store, _ = store(moment(abs_sq(u), ex.astype(cd), r(hrho)), ex.dtype)
            return u.astype(g.dtype), eg_store, ex_store

        out = jax.tree.map(leaf, updates, state.e_g, state.e_x)
        u, e_g, e_x = _tree.unzip(out, updates, 3)
        return u, ScaleByAdaDeltaState(e_g=e_g, e_x=e_x)

    return GradientTransformation(init, update)


class _Hyper(NamedTuple):
    """The float32 (or wider) hyperparameters of one step, and its new count."""

    b1: jax.Array
    b2: jax.Array
    eps: jax.Array
    eps_root: jax.Array
    count: jax.Array


def _check_moments(fn: str, b1, b2, eps, eps_root) -> None:
    _validate.check_decay(fn, "b1", b1)
    _validate.check_decay(fn, "b2", b2)
    _validate.check_nonnegative(fn, "eps", eps)
    _validate.check_nonnegative(fn, "eps_root", eps_root)


def _moments_init(state_cls: Any, value: ArrayLike = 0.0) -> Any:
    """`init` of a `(count, mu, nu)` state with both moments filled with `value`."""

    def init(params):
        v = _numerics.hparam(value)
        return state_cls(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.full_like(params, v),
            nu=_tree.squares_like(params, v),
        )

    return init


def _moments_update(fn: str, state_cls: Any, hyper: tuple, second, finish) -> Any:
    """`update` of an Adam-like block: `m` is an EMA of g; the rest is the rule's.

    `second(gc, m, v, h)` gives the new second moment and `finish(gc, m, v, h)` the
    update from the stored moments, both in the leaf's compute dtype.
    """

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure(fn, state.mu, updates)
        count = _numerics.safe_int32_increment(state.count)
        h = _Hyper(*(_numerics.hparam(x) for x in hyper), count)

        def leaf(g, m, v):
            cd = _numerics.leaf_dtype(g, m, v)
            gc = g.astype(cd)
            m_store, m_new = store(moment(gc, m.astype(cd), like(h.b1, gc)), m.dtype)
            v_store, v_new = store(second(gc, m_new, v.astype(cd), h), v.dtype)
            return finish(gc, m_new, v_new, h).astype(g.dtype), m_store, v_store

        out = jax.tree.map(leaf, updates, state.mu, state.nu)
        u, mu, nu = _tree.unzip(out, updates, 3)
        return u, state_cls(count=count, mu=mu, nu=nu)

    return update


def _adam_denominator(v, h):
    """`sqrt(v / (1-b2^t) + eps_root) + eps` in the dtype of `v`."""
    r = lambda x: like(x, v)
    c2 = _numerics.bias_correction(h.b2, h.count)
    return jnp.sqrt(v / r(c2) + r(h.eps_root)) + r(h.eps)


def _first_moment_hat(gc, m_new, hb1, count, nesterov: bool):
    """`m / (1-b1^t)`, or the Nesterov look-ahead form optax uses."""
    r = lambda h: like(h, gc)
    c1 = _numerics.bias_correction(hb1, count)
    if not nesterov:
        return m_new / r(c1)
    c1_next = _numerics.bias_correction(hb1, _numerics.safe_int32_increment(count))
    return r(hb1) * m_new / r(c1_next) + (1 - r(hb1)) * gc / r(c1)


def scale_by_belief(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-16,
    eps_root: ArrayLike = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Rescales updates by AdaBelief: Adam with the variance of the prediction error.

    Update rule:
        m = b1 m + (1-b1) g;  s = b2 s + (1-b2) (g-m)² + eps_root  (stored)
        u = m̂ / (sqrt(s / (1-b2^t)) + eps), m̂ as in `scale_by_adam`

    Args:
        b1: First-moment decay in [0, 1).
        b2: Decay of the belief variance in [0, 1).
        eps: Added outside the square root, >= 0.
        eps_root: Added to the stored variance each step, >= 0.
        nesterov: Use the Nesterov form of the first moment.

    Returns:
        A transformation with `ScaleByBeliefState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_belief()
        >>> tx.update(jnp.array([0.0]), tx.init(jnp.zeros(1)))[0]
        Array([0.], dtype=float32)

    References:
        Zhuang et al., 2020: https://arxiv.org/abs/2010.07468
    """
    _check_moments("scale_by_belief", b1, b2, eps, eps_root)

    def second(gc, m, v, h):
        # eps_root goes into the stored variance (as in the paper and in optax).
        return moment(abs_sq(gc - m), v, like(h.b2, gc)) + like(h.eps_root, gc)

    def finish(gc, m, v, h):
        m_hat = _first_moment_hat(gc, m, h.b1, h.count, nesterov)
        return m_hat / _adam_denominator(v, h._replace(eps_root=jnp.zeros_like(h.eps)))

    update = _moments_update(
        "scale_by_belief", ScaleByBeliefState, (b1, b2, eps, eps_root), second, finish
    )
    return GradientTransformation(_moments_init(ScaleByBeliefState), update)


def scale_by_yogi(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-3,
    eps_root: ArrayLike = 0.0,
    initial_accumulator_value: ArrayLike = 1e-6,
) -> GradientTransformation:
    """Rescales updates by Yogi: Adam whose second moment moves additively.

    Update rule:
        m = b1 m + (1-b1) g;  v = v - (1-b2) sign(v - g²) g²
        u = m̂ / (sqrt(v̂ + eps_root) + eps)   (both moments start at the initial value)

    Args:
        b1: First-moment decay in [0, 1).
        b2: Second-moment rate in [0, 1).
        eps: Added outside the square root, >= 0.
        eps_root: Added inside the square root, >= 0.
        initial_accumulator_value: Starting value of both moments, >= 0.

    Returns:
        A transformation with `ScaleByAdamState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_yogi(initial_accumulator_value=0.0)
        >>> tx.update(jnp.array([0.0]), tx.init(jnp.zeros(1)))[0]
        Array([0.], dtype=float32)

    References:
        Zaheer et al., 2018: https://papers.nips.cc/paper/8186
    """
    _check_moments("scale_by_yogi", b1, b2, eps, eps_root)
    _validate.check_nonnegative(
        "scale_by_yogi", "initial_accumulator_value", initial_accumulator_value
    )

    def second(gc, m, v, h):
        g2 = abs_sq(gc).astype(v.dtype)
        return v - (1 - like(h.b2, gc)) * jnp.sign(v - g2) * g2

    def finish(gc, m, v, h):
        return _first_moment_hat(gc, m, h.b1, h.count, False) / _adam_denominator(v, h)

    update = _moments_update(
        "scale_by_yogi", ScaleByAdamState, (b1, b2, eps, eps_root), second, finish
    )
    init = _moments_init(ScaleByAdamState, initial_accumulator_value)
    return GradientTransformation(init, update)


def _radam_rho(hb2: jax.Array, count: jax.Array) -> jax.Array:
    """RAdam's `rho_t = rho_inf - 2 t b2^t / (1 - b2^t)`, accurate in float32.

    Written directly, `rho_inf` (~2/(1-b2)) cancels against the second term and
    float32 loses up to 0.7% of `rho_t ~ t` for b2 = 0.999 (optax does that). With
    `L = -log(b2)`, `y = t L`: `rho_t = (2/L) ((L/x - 1) + (1 - y/expm1(y))) - 1`,
    `x = 1 - b2`, where both brackets come from series with no cancellation.
    """
    t = count.astype(hb2.dtype)
    x = 1 - hb2
    b2t = hb2**t
    direct = (2 / x - 1) - 2 * t * b2t / (1 - b2t)
    big_l = -jnp.log1p(-x)
    y = t * big_l
    s1 = sum(x**k / (k + 1) for k in range(1, 17))  # L/x - 1 for x < 0.1
    b1 = y / 2 - y**2 / 12 + y**4 / 720 - y**6 / 30240 + y**8 / 1209600
    b1 = b1 - y**10 / 47900160  # 1 - y/expm1(y) for y < 1
    b1 = jnp.where(y < 1, b1, 1 - y / jnp.expm1(y))
    accurate = (2 / big_l) * (s1 + b1) - 1
    return jnp.where(x < 0.1, accurate, direct)


def _radam_rectifier(hb2: jax.Array, count: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(rho_t, r_t)` of RAdam; `r_t` is only meaningful where `rho_t >= 4`."""
    ro_inf = 2 / (1 - hb2) - 1
    ro = _radam_rho(hb2, count)
    ratio = (ro - 4) * (ro - 2) * ro_inf / ((ro_inf - 4) * (ro_inf - 2) * ro)
    # The clamp keeps the unused branch free of NaN (rho_t in (2, 4) is negative).
    return ro, jnp.sqrt(jnp.maximum(ratio, 0))


def scale_by_radam(
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    threshold: ArrayLike = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Rescales updates by Rectified Adam: momentum until the variance is tractable.

    Update rule:
        rho_inf = 2/(1-b2) - 1;  rho_t = rho_inf - 2 t b2^t / (1-b2^t)
        rho_t >= threshold: u = r_t m̂ / (sqrt(v̂ + eps_root) + eps), else u = m̂
        r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))

    Args:
        b1: First-moment decay in [0, 1).
        b2: Second-moment decay in [0, 1).
        eps: Added outside the square root, >= 0.
        eps_root: Added inside the square root, >= 0.
        threshold: Smallest `rho_t` that uses the adaptive step, >= 0.
        nesterov: Use the Nesterov form of the first moment.

    Returns:
        A transformation with `ScaleByAdamState`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_radam()
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]  # momentum step
        Array([2.], dtype=float32)

    References:
        Liu et al., 2020: https://arxiv.org/abs/1908.03265
    """
    _check_moments("scale_by_radam", b1, b2, eps, eps_root)
    _validate.check_nonnegative("scale_by_radam", "threshold", threshold)

    def second(gc, m, v, h):
        return moment(abs_sq(gc).astype(v.dtype), v, like(h.b2, gc))

    def finish(gc, m, v, h):
        ro, rect = _radam_rectifier(h.b2, h.count)
        m_hat = _first_moment_hat(gc, m, h.b1, h.count, nesterov)
        scaled = like(rect, gc) * m_hat / _adam_denominator(v, h)
        return jnp.where(ro >= _numerics.hparam(threshold), scaled, m_hat)

    update = _moments_update(
        "scale_by_radam", ScaleByAdamState, (b1, b2, eps, eps_root), second, finish
    )
    return GradientTransformation(_moments_init(ScaleByAdamState), update)
