# SPDX-License-Identifier: Apache-2.0
"""Float64 NumPy references for every building block and optimizer, from the papers.

Each class mirrors one gradtx transformation: `init(params) -> state` and
`update(grads, state, params) -> (updates, state)`, on dicts of float64 NumPy arrays.
A state is a dict keyed by the field names of the gradtx NamedTuple state (an empty dict
for `EmptyState`); a chain's state is a tuple of its members' states. Nothing here calls
gradtx or optax: the math is re-derived from the update rules in the docstrings.

Hyperparameters enter through `hp`, which rounds them to float32, the dtype gradtx
holds them in (DESIGN.md §4): `1 - 0.999` differs from `1 - float32(0.999)` by 1.3e-5
relative, a representation error of the input rather than of the algorithm. The
arithmetic stays float64. `store` emulates a low-precision storage dtype
(`mu_dtype=bfloat16`): the value is rounded to that dtype when it is written to the
state, as gradtx does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from _reference_base import (  # noqa: F401 (store and INT32_MAX are re-exported)
    INT32_MAX,
    Reference,
    Tree,
    bias_correction,
    full,
    hp,
    increment,
    store,
    tmap,
    zeros,
)


class Identity(Reference):
    def leaf(self, g):
        return g


class SetToZero(Reference):
    def leaf(self, g):
        return np.zeros_like(g)


class Scale(Reference):
    def __init__(self, step_size: float):
        self.step_size = hp(step_size)

    def leaf(self, g):
        return self.step_size * g


class Sign(Reference):
    """signSGD (Bernstein et al., 2018): `u = sign(g)`."""

    def leaf(self, g):
        return np.sign(g)


class ZeroNans(Reference):
    """NaN elements become 0; `found_nan` records, per leaf, whether there was one."""

    def init(self, params):
        return {"found_nan": tmap(lambda p: False, params)}

    def update(self, grads, state, params=None):
        found = tmap(lambda g: bool(np.isnan(g).any()), grads)
        return tmap(lambda g: np.where(np.isnan(g), 0.0, g), grads), {
            "found_nan": found
        }


class ScaleBySchedule(Reference):
    """`u = fn(count) * g` with the count before the increment (0 on the first step)."""

    def __init__(self, step_size_fn: Callable[[Any], Any], factor: float = 1.0):
        self.fn, self.factor = step_size_fn, factor

    def init(self, params):
        return {"count": 0}

    def update(self, grads, state, params=None):
        s = self.factor * hp(self.fn(np.int64(state["count"])))
        return tmap(lambda g: s * g, grads), {"count": increment(state["count"])}


def scale_by_learning_rate(learning_rate: Any = None, flip_sign: bool = True):
    """`-lr * g`; `None` means lr = 1 with the sign still flipped (gradtx's choice)."""
    sign = -1.0 if flip_sign else 1.0
    if learning_rate is None:
        return Scale(sign)
    if callable(learning_rate):
        return ScaleBySchedule(learning_rate, sign)
    return Scale(sign * hp(learning_rate))


class Trace(Reference):
    """Heavy-ball momentum (Polyak 1964; Sutskever et al., 2013).

    t = g + decay t;  u = t, or the Nesterov look-ahead u = g + decay t.
    """

    def __init__(self, decay: float, nesterov: bool = False):
        self.decay, self.nesterov = hp(decay), nesterov

    def init(self, params):
        return {"trace": zeros(params)}

    def update(self, grads, state, params=None):
        d = self.decay
        t = tmap(lambda g, t: g + d * t, grads, state["trace"])
        u = tmap(lambda g, t: g + d * t, grads, t) if self.nesterov else t
        return u, {"trace": t}


class Ema(Reference):
    """Moving average e = decay e + (1 - decay) g, debiased by 1 - decay^k."""

    def __init__(self, decay: float, debias: bool = True):
        self.decay, self.debias = hp(decay), debias

    def init(self, params):
        return {"count": 0, "ema": zeros(params)}

    def update(self, grads, state, params=None):
        d, k = self.decay, increment(state["count"])
        e = tmap(lambda g, e: d * e + (1 - d) * g, grads, state["ema"])
        c = bias_correction(d, k) if self.debias else 1.0
        return tmap(lambda e: e / c, e), {"count": k, "ema": e}


class Adam(Reference):
    """Adam (Kingma & Ba, 2014, Algorithm 1); NAdam's look-ahead as optax writes it.

    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;  m̂ = m / (1-b1^t);  v̂ = v / (1-b2^t)
    u = m̂ / (sqrt(v̂ + eps_root) + eps)
    NAdam (Dozat, 2016, without the extra b2 factor): m̂ = b1 m / (1-b1^{t+1})
    + (1-b1) g / (1-b1^t).
    """

    def __init__(
        self,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        eps_root=0.0,
        mu_dtype=None,
        *,
        nesterov=False,
        nu_dtype=None,
    ):
        self.b1, self.b2 = hp(b1), hp(b2)
        self.eps, self.eps_root = hp(eps), hp(eps_root)
        self.mu_dtype, self.nu_dtype, self.nesterov = mu_dtype, nu_dtype, nesterov

    def init(self, params):
        return {"count": 0, "mu": zeros(params), "nu": zeros(params)}

    def update(self, grads, state, params=None):
        b1, b2, t = self.b1, self.b2, increment(state["count"])
        # The new moments are rounded to their storage dtype first and the update is
        # computed from the stored values (gradtx stores once and uses what it stored).
        m = tmap(
            lambda g, m: store(b1 * m + (1 - b1) * g, self.mu_dtype), grads, state["mu"]
        )
        v = tmap(
            lambda g, v: store(b2 * v + (1 - b2) * g * g, self.nu_dtype),
            grads,
            state["nu"],
        )
        c1, c2 = bias_correction(b1, t), bias_correction(b2, t)
        if self.nesterov:
            c1_next = bias_correction(b1, increment(t))
            m_hat = tmap(lambda m, g: b1 * m / c1_next + (1 - b1) * g / c1, m, grads)
        else:
            m_hat = tmap(lambda m: m / c1, m)
        u = tmap(
            lambda m, v: m / (np.sqrt(v / c2 + self.eps_root) + self.eps), m_hat, v
        )
        return u, {"count": t, "mu": m, "nu": v}


class AmsGrad(Reference):
    """AMSGrad (Reddi et al., 2018) with optax's optional bias corrections.

    v_max = max(v_max, v / (1-b2^t));  u = m̂ / (sqrt(v_max + eps_root) + eps)
    """

    def __init__(
        self,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        eps_root=0.0,
        mu_dtype=None,
        bias_correction_mu=True,
        bias_correction_nu=True,
    ):
        self.b1, self.b2 = hp(b1), hp(b2)
        self.eps, self.eps_root, self.mu_dtype = hp(eps), hp(eps_root), mu_dtype
        self.bc_mu, self.bc_nu = bias_correction_mu, bias_correction_nu

    def init(self, params):
        z = zeros(params)
        return {"count": 0, "mu": z, "nu": z, "nu_max": z}

    def update(self, grads, state, params=None):
        b1, b2, t = self.b1, self.b2, increment(state["count"])
        m = tmap(
            lambda g, m: store(b1 * m + (1 - b1) * g, self.mu_dtype), grads, state["mu"]
        )
        v = tmap(lambda g, v: b2 * v + (1 - b2) * g * g, grads, state["nu"])
        c1 = bias_correction(b1, t) if self.bc_mu else 1.0
        c2 = bias_correction(b2, t) if self.bc_nu else 1.0
        vmax = tmap(lambda vm, v: np.maximum(vm, v / c2), state["nu_max"], v)
        u = tmap(
            lambda m, vm: (m / c1) / (np.sqrt(vm + self.eps_root) + self.eps), m, vmax
        )
        return u, {"count": t, "mu": m, "nu": v, "nu_max": vmax}


class AdaMax(Reference):
    """AdaMax (Kingma & Ba, 2014, Algorithm 2), eps added to |g| as optax does.

    m = b1 m + (1-b1) g;  v = max(b2 v, |g| + eps);  u = m / (1-b1^t) / v
    """

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8):
        self.b1, self.b2, self.eps = hp(b1), hp(b2), hp(eps)

    def init(self, params):
        return {"count": 0, "mu": zeros(params), "nu": zeros(params)}

    def update(self, grads, state, params=None):
        b1, b2, t = self.b1, self.b2, increment(state["count"])
        m = tmap(lambda g, m: b1 * m + (1 - b1) * g, grads, state["mu"])
        v = tmap(
            lambda g, v: np.maximum(b2 * v, np.abs(g) + self.eps), grads, state["nu"]
        )
        c1 = bias_correction(b1, t)
        return tmap(lambda m, v: m / c1 / v, m, v), {"count": t, "mu": m, "nu": v}


def _inverse_root(n, eps, eps_in_sqrt):
    return 1 / np.sqrt(n + eps) if eps_in_sqrt else 1 / (np.sqrt(n) + eps)


class Rms(Reference):
    """RMSProp (Hinton, 2012): v = d v + (1-d) g²;  u = g / sqrt(v̂ + eps)."""

    def __init__(
        self,
        decay=0.9,
        eps=1e-8,
        initial_scale=0.0,
        eps_in_sqrt=True,
        bias_correction=False,
    ):
        self.decay, self.eps, self.initial_scale = hp(decay), hp(eps), initial_scale
        self.eps_in_sqrt, self.bias_correction = eps_in_sqrt, bias_correction

    def init(self, params):
        state = {"nu": full(params, self.initial_scale)}
        return {"count": 0, **state} if self.bias_correction else state

    def _count(self, state):
        if not self.bias_correction:
            return {}, 1.0
        t = increment(state["count"])
        return {"count": t}, bias_correction(self.decay, t)

    def update(self, grads, state, params=None):
        d = self.decay
        counted, c = self._count(state)
        v = tmap(lambda g, v: d * v + (1 - d) * g * g, grads, state["nu"])
        u = tmap(
            lambda g, v: g * _inverse_root(v / c, self.eps, self.eps_in_sqrt), grads, v
        )
        return u, {**counted, "nu": v}


class StdDev(Rms):
    """Centered RMSProp (Graves, 2013): u = g / sqrt(max(v̂ - m̂², 0) + eps)."""

    def init(self, params):
        return {**super().init(params), "mu": zeros(params)}

    def update(self, grads, state, params=None):
        d = self.decay
        counted, c = self._count(state)
        m = tmap(lambda g, m: d * m + (1 - d) * g, grads, state["mu"])
        v = tmap(lambda g, v: d * v + (1 - d) * g * g, grads, state["nu"])
        var = tmap(lambda m, v: np.maximum(v / c - (m / c) ** 2, 0.0), m, v)
        u = tmap(
            lambda g, s: g * _inverse_root(s, self.eps, self.eps_in_sqrt), grads, var
        )
        return u, {**counted, "mu": m, "nu": v}


class Rss(Reference):
    """AdaGrad (Duchi et al., 2011): s = s + g²;  u = g / sqrt(s + eps) where s > 0."""

    def __init__(self, initial_accumulator_value=0.1, eps=1e-7):
        self.initial, self.eps = initial_accumulator_value, hp(eps)

    def init(self, params):
        return {"sum_of_squares": full(params, self.initial)}

    def update(self, grads, state, params=None):
        s = tmap(lambda g, s: s + g * g, grads, state["sum_of_squares"])

        def leaf(g, s):
            return np.where(s > 0, g / np.sqrt(np.where(s > 0, s, 1.0) + self.eps), 0.0)

        return tmap(leaf, grads, s), {"sum_of_squares": s}


class AddDecayedWeights(Reference):
    """Decoupled weight decay (Loshchilov & Hutter, 2019): u = g + wd p if masked in."""

    def __init__(self, weight_decay=0.0, mask=None):
        self.weight_decay, self.mask = weight_decay, mask

    def init(self, params):
        return {"count": 0} if callable(self.weight_decay) else {}

    def update(self, grads, state, params=None):
        assert params is not None
        if callable(self.weight_decay):
            wd = hp(self.weight_decay(np.int64(state["count"])))
            state = {"count": increment(state["count"])}
        else:
            wd = hp(self.weight_decay)
        mask = self.mask(params) if callable(self.mask) else self.mask
        mask = mask if mask is not None else dict.fromkeys(params, True)
        u = {k: g + wd * params[k] if mask[k] else g for k, g in grads.items()}
        return u, state


class Clip(Reference):
    def __init__(self, max_delta):
        self.max_delta = hp(max_delta)

    def leaf(self, g):
        return np.clip(g, -self.max_delta, self.max_delta)


class ClipByGlobalNorm(Reference):
    """Pascanu et al., 2013: u = g min(1, max_norm / ||g||), or g if ||g|| <= max."""

    def __init__(self, max_norm):
        self.max_norm = hp(max_norm)

    def update(self, grads, state, params=None):
        n = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
        f = 1.0 if n <= self.max_norm else self.max_norm / n
        return tmap(lambda g: g * f, grads), state


class ClipByBlockRms(Reference):
    """Per-leaf version: u = g * min(1, threshold / rms(g))."""

    def __init__(self, threshold):
        self.threshold = hp(threshold)

    def leaf(self, g):
        rms = np.sqrt(np.mean(g * g))
        return g if rms <= self.threshold else g * (self.threshold / rms)


class Chain(Reference):
    """Applies references in order; the state is the tuple of their states."""

    def __init__(self, *refs: Reference):
        self.refs = refs

    def init(self, params):
        return tuple(r.init(params) for r in self.refs)

    def update(self, grads, state, params=None):
        out = []
        for r, s in zip(self.refs, state, strict=True):
            grads, s = r.update(grads, s, params)
            out.append(s)
        return grads, tuple(out)


# --- the public names: each gradtx factory's reference takes the same arguments ---

identity, set_to_zero, scale, scale_by_sign = Identity, SetToZero, Scale, Sign
zero_nans = ZeroNans
scale_by_schedule, trace, ema = ScaleBySchedule, Trace, Ema
scale_by_adam, scale_by_amsgrad, scale_by_adamax = Adam, AmsGrad, AdaMax
scale_by_rms, scale_by_stddev, scale_by_rss = Rms, StdDev, Rss
add_decayed_weights, clip = AddDecayedWeights, Clip
clip_by_global_norm, clip_by_block_rms = ClipByGlobalNorm, ClipByBlockRms

# Optimizers: the documented chains of the blocks above.


def sgd(learning_rate, momentum=None, nesterov=False):
    first = Identity() if momentum is None else Trace(momentum, nesterov)
    return Chain(first, scale_by_learning_rate(learning_rate))


def adagrad(learning_rate, initial_accumulator_value=0.1, eps=1e-7):
    lr = scale_by_learning_rate(learning_rate)
    return Chain(Rss(initial_accumulator_value, eps), lr)


def rmsprop(
    learning_rate,
    decay=0.9,
    eps=1e-8,
    initial_scale=0.0,
    eps_in_sqrt=True,
    centered=False,
    momentum=None,
    nesterov=False,
    bias_correction=False,
):
    # Momentum after the learning rate, as in optax and PyTorch's RMSprop.
    pre = (StdDev if centered else Rms)(
        decay, eps, initial_scale, eps_in_sqrt, bias_correction
    )
    last = Identity() if momentum is None else Trace(momentum, nesterov)
    return Chain(pre, scale_by_learning_rate(learning_rate), last)


def adam(learning_rate, **kwargs):
    return Chain(Adam(**kwargs), scale_by_learning_rate(learning_rate))


def adamw(learning_rate, weight_decay=1e-4, mask=None, **kwargs):
    wd = AddDecayedWeights(weight_decay, mask)
    return Chain(Adam(**kwargs), wd, scale_by_learning_rate(learning_rate))


def nadam(learning_rate, **kwargs):
    return adam(learning_rate, nesterov=True, **kwargs)


def nadamw(learning_rate, **kwargs):
    return adamw(learning_rate, nesterov=True, **kwargs)


def amsgrad(learning_rate, **kwargs):
    return Chain(AmsGrad(**kwargs), scale_by_learning_rate(learning_rate))


def adamax(learning_rate, **kwargs):
    return Chain(AdaMax(**kwargs), scale_by_learning_rate(learning_rate))


def adamaxw(learning_rate, weight_decay=1e-4, mask=None, **kwargs):
    wd = AddDecayedWeights(weight_decay, mask)
    return Chain(AdaMax(**kwargs), wd, scale_by_learning_rate(learning_rate))


def sign_sgd(learning_rate):
    return Chain(Sign(), scale_by_learning_rate(learning_rate))


def signum(learning_rate, beta=0.9):
    # The EMA is not debiased: a positive factor does not change the sign.
    return Chain(Ema(beta, debias=False), Sign(), scale_by_learning_rate(learning_rate))
