# SPDX-License-Identifier: Apache-2.0
"""torch.optim's preconditioners where no gradtx block has the same formula.

Each is a `GradientTransformation` that returns the step direction before the
learning rate (the aliases in `_aliases.py` put `scale_by_learning_rate` last).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _numerics, _tree
from gradtx._base import GradientTransformation
from gradtx._numerics import abs_sq, moment, store
from gradtx.torch._common import compute, leaf_map, step_float
from gradtx.transforms._adam import ScaleByAdamState, ScaleByAmsgradState


class TorchMomentumState(NamedTuple):
    """State of torch's SGD momentum: the step count and the momentum buffer."""

    count: jax.Array
    momentum_buffer: Any


class TorchAdadeltaState(NamedTuple):
    """State of torch's Adadelta (field names as in torch's state dict)."""

    square_avg: Any
    acc_delta: Any


class TorchNadamState(NamedTuple):
    """State of torch's NAdam: Adam's plus the running product of momentum factors."""

    count: jax.Array
    mu: Any
    nu: Any
    mu_product: jax.Array


def scale_by_torch_momentum(
    momentum: Any, dampening: Any, nesterov: bool
) -> GradientTransformation:
    """Torch's SGD buffer: `b = g` first, then `b = momentum b + (1-dampening) g`."""

    def init(params):
        return TorchMomentumState(jnp.zeros([], jnp.int32), _tree.zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        hm, hd = _numerics.hparam(momentum), _numerics.hparam(dampening)
        first = state.count == 0

        def leaf(g, b):
            cd, r = compute(g, b)
            gc = g.astype(cd)
            b_new = jnp.where(first, gc, r(hm) * b.astype(cd) + (1 - r(hd)) * gc)
            b_store, b_new = store(b_new, b.dtype)
            u = gc + r(hm) * b_new if nesterov else b_new
            return u.astype(g.dtype), b_store

        u, buf = leaf_map("sgd", leaf, updates, state.momentum_buffer)
        count = _numerics.safe_int32_increment(state.count)
        return u, TorchMomentumState(count, buf)

    return GradientTransformation(init, update)


def scale_by_torch_amsgrad(b1: Any, b2: Any, eps: Any) -> GradientTransformation:
    """Torch's AMSGrad: the max is taken of the raw `nu`, corrected afterwards."""

    def init(params):
        zeros = _tree.squares_like(params)
        return ScaleByAmsgradState(
            jnp.zeros([], jnp.int32), _tree.zeros_like(params), zeros, zeros
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        hb1, hb2, heps = map(_numerics.hparam, (b1, b2, eps))
        count = _numerics.safe_int32_increment(state.count)
        c1 = _numerics.bias_correction(hb1, count)
        c2 = _numerics.bias_correction(hb2, count)

        def leaf(g, m, v, vmax):
            cd, r = compute(g, m, v, vmax)
            gc = g.astype(cd)
            m_store, m_new = store(moment(gc, m.astype(cd), r(hb1)), m.dtype)
            v_store, v_new = store(moment(abs_sq(gc), v.astype(cd), r(hb2)), v.dtype)
            x_store, x_new = store(jnp.maximum(vmax.astype(cd), v_new), vmax.dtype)
            u = m_new / r(c1) / (jnp.sqrt(x_new) / jnp.sqrt(r(c2)) + r(heps))
            return u.astype(g.dtype), m_store, v_store, x_store

        u, mu, nu, nu_max = leaf_map(
            "adam", leaf, updates, state.mu, state.nu, state.nu_max
        )
        return u, ScaleByAmsgradState(count, mu, nu, nu_max)

    return GradientTransformation(init, update)


def scale_by_torch_adagrad(
    initial_accumulator_value: Any, eps: Any
) -> GradientTransformation:
    """Torch's Adagrad: `s += g²;  u = g / (sqrt(s) + eps)` (eps outside the root)."""
    from gradtx.transforms._rms import ScaleByRssState

    def init(params):
        return ScaleByRssState(_tree.squares_like(params, initial_accumulator_value))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        heps = _numerics.hparam(eps)

        def leaf(g, s):
            cd, r = compute(g, s)
            gc = g.astype(cd)
            s_store, s_new = store(s.astype(cd) + abs_sq(gc), s.dtype)
            return (gc / (jnp.sqrt(s_new) + r(heps))).astype(g.dtype), s_store

        u, s = leaf_map("adagrad", leaf, updates, state.sum_of_squares)
        return u, ScaleByRssState(s)

    return GradientTransformation(init, update)


def scale_by_torch_adadelta(rho: Any, eps: Any) -> GradientTransformation:
    """Torch's Adadelta: `u = sqrt(a + eps) / sqrt(s + eps) g` with decaying a, s."""

    def init(params):
        return TorchAdadeltaState(
            _tree.squares_like(params), _tree.squares_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        hrho, heps = _numerics.hparam(rho), _numerics.hparam(eps)

        def leaf(g, s, a):
            cd, r = compute(g, s, a)
            gc = g.astype(cd)
            s_store, s_new = store(moment(abs_sq(gc), s.astype(cd), r(hrho)), s.dtype)
            ac = a.astype(cd)
            delta = jnp.sqrt(ac + r(heps)) / jnp.sqrt(s_new + r(heps)) * gc
            a_store, _ = store(moment(abs_sq(delta), ac, r(hrho)), a.dtype)
            return delta.astype(g.dtype), s_store, a_store

        u, sq, acc = leaf_map(
            "adadelta", leaf, updates, state.square_avg, state.acc_delta
        )
        return u, TorchAdadeltaState(sq, acc)

    return GradientTransformation(init, update)


def scale_by_torch_nadam(
    b1: Any, b2: Any, eps: Any, momentum_decay: Any
) -> GradientTransformation:
    """Torch's NAdam, with the momentum schedule `mu_t = b1 (1 - 0.96^(t psi) / 2)`."""

    def init(params):
        return TorchNadamState(
            jnp.zeros([], jnp.int32),
            _tree.zeros_like(params),
            _tree.squares_like(params),
            jnp.ones([], _numerics.hparam_dtype()),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        hb1, hb2, heps, hpsi = map(_numerics.hparam, (b1, b2, eps, momentum_decay))
        count = _numerics.safe_int32_increment(state.count)
        t = step_float(count)
        c2 = _numerics.bias_correction(hb2, count)
        mu_t = hb1 * (1.0 - 0.5 * 0.96 ** (t * hpsi))
        mu_next = hb1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * hpsi))
        product = state.mu_product * mu_t
        coef_g = (1.0 - mu_t) / (1.0 - product)
        coef_m = mu_next / (1.0 - product * mu_next)

        def leaf(g, m, v):
            cd, r = compute(g, m, v)
            gc = g.astype(cd)
            m_store, m_new = store(moment(gc, m.astype(cd), r(hb1)), m.dtype)
            v_store, v_new = store(moment(abs_sq(gc), v.astype(cd), r(hb2)), v.dtype)
            denom = jnp.sqrt(v_new / r(c2)) + r(heps)
            u = r(coef_g) * gc / denom + r(coef_m) * m_new / denom
            return u.astype(g.dtype), m_store, v_store

        u, mu, nu = leaf_map("nadam", leaf, updates, state.mu, state.nu)
        return u, TorchNadamState(count, mu, nu, product.astype(state.mu_product.dtype))

    return GradientTransformation(init, update)


def scale_by_torch_radam(b1: Any, b2: Any, eps: Any) -> GradientTransformation:
    """Torch's RAdam: rectified Adam once `rho_t > 5`, else bias-corrected momentum."""

    def init(params):
        return ScaleByAdamState(
            jnp.zeros([], jnp.int32),
            _tree.zeros_like(params),
            _tree.squares_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        hb1, hb2, heps = map(_numerics.hparam, (b1, b2, eps))
        count = _numerics.safe_int32_increment(state.count)
        t = step_float(count)
        c1 = _numerics.bias_correction(hb1, count)
        c2 = _numerics.bias_correction(hb2, count)
        rho_inf = 2.0 / (1.0 - hb2) - 1.0
        rho_t = rho_inf - 2.0 * t * hb2**t / c2
        rectified = rho_t > 5.0
        # Evaluated on both branches of the `where`: keep the root's argument >= 0.
        safe_rho = jnp.where(rectified, rho_t, 6.0)
        rect = jnp.sqrt(
            (safe_rho - 4)
            * (safe_rho - 2)
            * rho_inf
            / ((rho_inf - 4) * (rho_inf - 2) * safe_rho)
        )

        def leaf(g, m, v):
            cd, r = compute(g, m, v)
            gc = g.astype(cd)
            m_store, m_new = store(moment(gc, m.astype(cd), r(hb1)), m.dtype)
            v_store, v_new = store(moment(abs_sq(gc), v.astype(cd), r(hb2)), v.dtype)
            m_hat = m_new / r(c1)
            adaptive = jnp.sqrt(r(c2)) / (jnp.sqrt(v_new) + r(heps))
            u = jnp.where(rectified, m_hat * adaptive * r(rect), m_hat)
            return u.astype(g.dtype), m_store, v_store

        u, mu, nu = leaf_map("radam", leaf, updates, state.mu, state.nu)
        return u, ScaleByAdamState(count, mu, nu)

    return GradientTransformation(init, update)
