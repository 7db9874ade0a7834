# SPDX-License-Identifier: Apache-2.0
"""References: sign, trust-ratio, clipping, noise, projections; lion, lamb.

Same conventions as `_reference.py`: dict states keyed by the gradtx state's field
names, hyperparameters through `hp`, float64 arithmetic, math from the papers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _reference import (
    Adam,
    AddDecayedWeights,
    Chain,
    Reference,
    Trace,
    hp,
    increment,
    scale_by_learning_rate,
    store,
    tmap,
    zeros,
)


class Lion(Reference):
    """Lion (Chen et al., 2023, Algorithm 1), with optax's smooth/refined variants.

    c = b1 m + (1-b1) g;  u = sign(c) | tanh(beta c) | (c if |c| < 1 else sign(c))
    m = b2 m + (1-b2) g
    """

    def __init__(self, b1=0.9, b2=0.99, mu_dtype=None, *, mode="hard", smooth_beta=1.0):
        self.b1, self.b2, self.mu_dtype = hp(b1), hp(b2), mu_dtype
        self.mode, self.smooth_beta = mode, hp(smooth_beta)

    def init(self, params):
        return {"count": 0, "mu": zeros(params)}

    def direction(self, c):
        if self.mode == "hard":
            return np.sign(c)
        if self.mode == "smooth":
            return np.tanh(self.smooth_beta * c)
        return np.where(np.abs(c) < 1, c, np.sign(c))

    def update(self, grads, state, params=None):
        b1, b2 = self.b1, self.b2
        u = tmap(lambda g, m: self.direction(b1 * m + (1 - b1) * g), grads, state["mu"])
        m = tmap(
            lambda g, m: store(b2 * m + (1 - b2) * g, self.mu_dtype), grads, state["mu"]
        )
        return u, {"count": increment(state["count"]), "mu": m}


def _norm(x):
    return float(np.sqrt(np.sum(np.square(x))))


class TrustRatio(Reference):
    """LARS trust ratio (You et al., 2017), per leaf; 1 where a norm is 0."""

    def __init__(self, min_norm=0.0, trust_coefficient=1.0, eps=0.0):
        self.min_norm, self.tc, self.eps = hp(min_norm), hp(trust_coefficient), hp(eps)

    def update(self, grads, state, params=None):
        def leaf(u, p):
            pn, un = max(_norm(p), self.min_norm), max(_norm(u), self.min_norm)
            if pn == 0 or un == 0:
                return u
            return u * (self.tc * pn / (un + self.eps))

        return tmap(leaf, grads, params), state


class ParamBlockNorm(Reference):
    """u = g · max(||p||, min_scale), per leaf."""

    def __init__(self, min_scale=1e-3):
        self.min_scale = hp(min_scale)

    def measure(self, p):
        return _norm(p)

    def update(self, grads, state, params=None):
        f = lambda g, p: g * max(self.measure(p), self.min_scale)
        return tmap(f, grads, params), state


class ParamBlockRms(ParamBlockNorm):
    """u = g · max(rms(p), min_scale), per leaf."""

    def measure(self, p):
        return float(np.sqrt(np.mean(np.square(p))))


class NormalizeByUpdateNorm(Reference):
    """u = scale_factor · g / (||g|| + eps), with the global norm over all leaves."""

    def __init__(self, scale_factor=1.0, eps=1e-6):
        self.scale_factor, self.eps = hp(scale_factor), hp(eps)

    def update(self, grads, state, params=None):
        n = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
        return tmap(lambda g: self.scale_factor * g / (n + self.eps), grads), state


class Centralize(Reference):
    """Gradient centralization (Yong et al., 2020): subtract the mean over axes 1.."""

    def leaf(self, g):
        if g.ndim <= 1:
            return g
        return g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)


def unit_norms(x: np.ndarray, axis: Any = None) -> np.ndarray:
    """Norms of the units of `x` (Brock et al., 2021), broadcast to `x`'s shape."""
    if axis is None:
        if np.squeeze(x).ndim <= 1:
            axis = None
        else:
            axis = {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}[x.ndim]
    n = np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    return np.broadcast_to(n, np.shape(x))


class AdaptiveGradClip(Reference):
    """AGC: g · min(1, clipping · max(||p_u||, eps) / ||g_u||) per unit."""

    def __init__(self, clipping, eps=1e-3, axis=None):
        self.clipping, self.eps, self.axis = hp(clipping), hp(eps), axis

    def update(self, grads, state, params=None):
        def leaf(g, p):
            gn = unit_norms(g, self.axis)
            mx = self.clipping * np.maximum(unit_norms(p, self.axis), self.eps)
            return np.where(gn < mx, g, g * mx / np.maximum(gn, 1e-6))

        return tmap(leaf, grads, params), state


class KeepParamsNonnegative(Reference):
    """u = -p where p + u < 0, so that p + u >= 0."""

    def update(self, grads, state, params=None):
        return tmap(lambda g, p: np.where(p + g < 0, -p, g), grads, params), state


class AddScaledParams(Reference):
    """u = g + c p for any sign of c (Fromage's shrink), c a scalar or schedule."""

    def __init__(self, coefficient):
        self.c = coefficient

    def init(self, params):
        return {"count": 0} if callable(self.c) else {}

    def update(self, grads, state, params=None):
        if callable(self.c):
            c = hp(self.c(np.int64(state["count"])))
            state = {"count": increment(state["count"])}
        else:
            c = hp(self.c)
        return tmap(lambda g, p: g + c * p, grads, params), state


class Masked(Reference):
    """Applies `inner` to the leaves where the (bool or dict) mask is True."""

    def __init__(self, inner, mask):
        self.inner, self.mask = inner, mask

    def init(self, params):
        return (self.inner.init(params),)  # MaskedState(inner_state)

    def update(self, grads, state, params=None):
        mask = _mask_dict(self.mask, params)
        inner_u, inner_s = self.inner.update(grads, state[0], params)
        return {k: inner_u[k] if mask[k] else g for k, g in grads.items()}, (inner_s,)


def _mask_dict(mask, params):
    mask = mask(params) if callable(mask) else mask
    return dict.fromkeys(params, mask) if isinstance(mask, bool) else mask


# --- the public names ---

scale_by_lion, scale_by_trust_ratio = Lion, TrustRatio
scale_by_param_block_norm, scale_by_param_block_rms = ParamBlockNorm, ParamBlockRms
normalize_by_update_norm, centralize = NormalizeByUpdateNorm, Centralize
adaptive_grad_clip, keep_params_nonnegative = AdaptiveGradClip, KeepParamsNonnegative


def fromage(learning_rate, min_norm=1e-6):
    """Bernstein et al., 2020: p ← (p - lr ||p||/||g|| g) / sqrt(1 + lr²)."""
    if callable(learning_rate):
        mult = lambda c: 1 / np.sqrt(1 + learning_rate(c) ** 2)
        lr = lambda c: mult(c) * learning_rate(c)
        shrink = lambda c: mult(c) - 1
    else:
        mult = 1 / np.sqrt(1 + learning_rate**2)
        lr, shrink = learning_rate * mult, mult - 1
    return Chain(
        TrustRatio(min_norm), scale_by_learning_rate(lr), AddScaledParams(shrink)
    )


def lamb(
    learning_rate, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0, mask=None
):
    return Chain(
        Adam(b1, b2, eps, eps_root),
        AddDecayedWeights(weight_decay, mask),
        TrustRatio(),
        scale_by_learning_rate(learning_rate),
    )


class _MaskedDecay(AddDecayedWeights):
    def update(self, grads, state, params=None):
        self.mask = _mask_dict(self.raw_mask, params)
        return super().update(grads, state, params)


def lars(
    learning_rate,
    weight_decay=0.0,
    weight_decay_mask=True,
    trust_coefficient=0.001,
    eps=0.0,
    trust_ratio_mask=True,
    momentum=0.9,
    nesterov=False,
):
    decay = _MaskedDecay(weight_decay)
    decay.raw_mask = weight_decay_mask
    return Chain(
        decay,
        Masked(TrustRatio(0.0, trust_coefficient, eps), trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
        Trace(momentum, nesterov),
    )


def lion(learning_rate, b1=0.9, b2=0.99, mu_dtype=None, weight_decay=1e-3, mask=None):
    return Chain(
        Lion(b1, b2, mu_dtype),
        AddDecayedWeights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# --- references of the names tested in tests/test_catalogue_geometry_steps.py ---


class ApplyEvery(Reference):
    """Sum the last k gradients and emit the sum on every k-th step, else zeros."""

    def __init__(self, k=1):
        self.k = int(k)

    def init(self, params):
        return {"count": 0, "grad_acc": zeros(params)}

    def update(self, grads, state, params=None):
        phase = state["count"] % self.k
        acc = tmap(lambda g, a: g + (a if phase else 0.0), grads, state["grad_acc"])
        emit = phase == self.k - 1
        u = tmap(lambda a: a if emit else np.zeros_like(a), acc)
        return u, {"count": (state["count"] + 1) % self.k, "grad_acc": acc}


class Optimistic(Reference):
    """Optimistic gradient: u = (alpha + beta) g_t - beta g_{t-1}, g_0 := g_1."""

    def __init__(self, alpha=1.0, beta=1.0):
        self.alpha, self.beta = hp(alpha), hp(beta)

    def init(self, params):
        return {"is_initial_step": True, "previous_gradient": zeros(params)}

    def update(self, grads, state, params=None):
        prev = grads if state["is_initial_step"] else state["previous_gradient"]
        a, b = self.alpha, self.beta
        u = tmap(lambda g, p: (a + b) * g - b * p, grads, prev)
        return u, {"is_initial_step": False, "previous_gradient": grads}


class AddNoise(Reference):
    """g + sqrt(eta / t**gamma) N(0, 1) (Neelakantan et al., 2015).

    The standard normal draws come from jax.random with the key layout optax uses
    (one split per step, one sub-key per leaf in tree order): drawing noise is not
    the algorithm under test, its scale and bookkeeping are.
    """

    def __init__(self, eta, gamma, key=None):
        self.eta, self.gamma, self.key = hp(eta), hp(gamma), key

    def init(self, params):
        import jax

        key = self.key if self.key is not None else 0
        if not hasattr(key, "dtype"):
            key = jax.random.key(key)
        return {"count": 0, "rng_key": key}

    def update(self, grads, state, params=None):
        import jax
        import jax.numpy as jnp

        t = increment(state["count"])
        std = np.sqrt(self.eta / t**self.gamma)
        key, sample = jax.random.split(state["rng_key"])
        names = sorted(grads)  # jax flattens a dict in sorted key order
        keys = dict(zip(names, jax.random.split(sample, len(names)), strict=True))
        noise = {
            k: np.asarray(jax.random.normal(keys[k], np.shape(g), jnp.float32), float)
            for k, g in grads.items()
        }
        u = tmap(lambda g, n: g + std * n, grads, noise)
        return u, {"count": t, "rng_key": key}


scale_by_param_block_norm = ParamBlockNorm
apply_every, add_noise, scale_by_optimistic_gradient = ApplyEvery, AddNoise, Optimistic


def noisy_sgd(learning_rate, eta=0.01, gamma=0.55, key=None):
    return Chain(AddNoise(eta, gamma, key), scale_by_learning_rate(learning_rate))


def optimistic_gradient_descent(learning_rate, alpha=1.0, beta=1.0):
    return Chain(Optimistic(alpha, beta), scale_by_learning_rate(learning_rate))


def optimistic_adam_v2(
    learning_rate,
    *,
    alpha=1.0,
    beta=1.0,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype=None,
    nesterov=True,
):
    return Chain(
        Adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        Optimistic(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )


def optimistic_adam(
    learning_rate,
    optimism=None,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype=None,
    *,
    nesterov=True,
):
    beta = learning_rate if optimism is None else optimism
    return Chain(
        Adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        Optimistic(learning_rate, beta),
        scale_by_learning_rate(1.0),
    )
