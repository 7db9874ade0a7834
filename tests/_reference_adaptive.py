# SPDX-License-Identifier: Apache-2.0
"""References: Adaptive-moment blocks and optimizers (adadelta ... adafactor).

Same conventions as `_reference.py`: dict states keyed by the gradtx state's field
names, hyperparameters through `hp`, float64 arithmetic, math from the papers. Where
optax (whose numbers gradtx follows) departs from a paper, the class says so.
"""

from __future__ import annotations

import functools

import numpy as np
from _reference import (
    Chain,
    ClipByBlockRms,
    Ema,
    Scale,
    add_decayed_weights,
    scale_by_learning_rate,
)
from _reference_base import Reference, bias_correction, full, hp, increment, tmap, zeros


class ScaleByAdadelta(Reference):
    """AdaDelta (Zeiler, 2012, Algorithm 1), without the final sign flip.

    E[g²] = rho E[g²] + (1-rho) g²;  Δ = sqrt(E[Δ²] + ε) / sqrt(E[g²] + ε) g
    E[Δ²] = rho E[Δ²] + (1-rho) Δ².  The paper applies x += -Δ; here Δ is returned
    and the learning-rate block negates it.
    """

    def __init__(self, rho=0.9, eps=1e-6):
        self.rho, self.eps = hp(rho), hp(eps)

    def init(self, params):
        return {"e_g": zeros(params), "e_x": zeros(params)}

    def update(self, grads, state, params=None):
        rho, eps = self.rho, self.eps
        e_g = tmap(lambda g, e: rho * e + (1 - rho) * g * g, grads, state["e_g"])
        u = tmap(
            lambda g, eg, ex: np.sqrt(ex + eps) / np.sqrt(eg + eps) * g,
            grads,
            e_g,
            state["e_x"],
        )
        e_x = tmap(lambda u, e: rho * e + (1 - rho) * u * u, u, state["e_x"])
        return u, {"e_g": e_g, "e_x": e_x}


def _m_hat(m, g, b1, t, nesterov):
    """Bias-corrected first moment; Nesterov as optax writes it (see `Adam`)."""
    if nesterov:
        return b1 * m / bias_correction(b1, t + 1) + (1 - b1) * g / bias_correction(
            b1, t
        )
    return m / bias_correction(b1, t)


class ScaleByBelief(Reference):
    """AdaBelief (Zhuang et al., 2020, Algorithm 2).

    m = b1 m + (1-b1) g;  s = b2 s + (1-b2)(g - m)² + ε_root;  u = m̂ / (sqrt(ŝ) + ε).
    As in the paper ε_root is added to s itself (and so accumulates in the state).
    """

    def __init__(self, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, *, nesterov=False):
        self.b1, self.b2, self.eps, self.eps_root = map(hp, (b1, b2, eps, eps_root))
        self.nesterov = nesterov

    def init(self, params):
        return {"count": 0, "mu": zeros(params), "nu": zeros(params)}

    def update(self, grads, state, params=None):
        b1, b2, t = self.b1, self.b2, increment(state["count"])
        m = tmap(lambda g, m: b1 * m + (1 - b1) * g, grads, state["mu"])
        s = tmap(
            lambda g, m, s: b2 * s + (1 - b2) * (g - m) ** 2 + self.eps_root,
            grads,
            m,
            state["nu"],
        )
        c2 = bias_correction(b2, t)
        u = tmap(
            lambda m, g, s: (
                _m_hat(m, g, b1, t, self.nesterov) / (np.sqrt(s / c2) + self.eps)
            ),
            m,
            grads,
            s,
        )
        return u, {"count": t, "mu": m, "nu": s}


class ScaleByYogi(Reference):
    """Yogi (Zaheer et al., 2018, Algorithm 2) with Adam's bias correction (optax).

    v = v - (1-b2) sign(v - g²) g²;  u = m̂ / (sqrt(v̂ + ε_root) + ε). The paper has
    no bias correction and starts m at 0; optax (so gradtx) corrects both moments
    and starts m and v at `initial_accumulator_value`.
    """

    def __init__(
        self, b1=0.9, b2=0.999, eps=1e-3, eps_root=0.0, initial_accumulator_value=1e-6
    ):
        self.b1, self.b2, self.eps, self.eps_root = map(hp, (b1, b2, eps, eps_root))
        self.init_value = initial_accumulator_value

    def init(self, params):
        v = full(params, self.init_value)
        return {"count": 0, "mu": dict(v), "nu": dict(v)}

    def update(self, grads, state, params=None):
        b1, b2, t = self.b1, self.b2, increment(state["count"])
        m = tmap(lambda g, m: b1 * m + (1 - b1) * g, grads, state["mu"])
        v = tmap(
            lambda g, v: v - (1 - b2) * np.sign(v - g * g) * g * g, grads, state["nu"]
        )
        c1, c2 = bias_correction(b1, t), bias_correction(b2, t)
        u = tmap(
            lambda m, v: (m / c1) / (np.sqrt(v / c2 + self.eps_root) + self.eps), m, v
        )
        return u, {"count": t, "mu": m, "nu": v}


class ScaleByRadam(Reference):
    """RAdam (Liu et al., 2020, Algorithm 2); optax's `threshold` (paper: 4) and eps.

    rho_inf = 2/(1-b2) - 1;  rho_t = rho_inf - 2t b2^t/(1-b2^t);  rho_t >= threshold:
    u = r_t m̂ / (sqrt(v̂ + ε_root) + ε),
    r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t));
    else u = m̂ (the paper's un-adapted momentum step).
    """

    def __init__(
        self, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0, *, nesterov=False
    ):
        self.b1, self.b2, self.eps, self.eps_root = map(hp, (b1, b2, eps, eps_root))
        self.threshold, self.nesterov = hp(threshold), nesterov

    def init(self, params):
        return {"count": 0, "mu": zeros(params), "nu": zeros(params)}

    def update(self, grads, state, params=None):
        b1, b2, t = self.b1, self.b2, increment(state["count"])
        m = tmap(lambda g, m: b1 * m + (1 - b1) * g, grads, state["mu"])
        v = tmap(lambda g, v: b2 * v + (1 - b2) * g * g, grads, state["nu"])
        ro_inf = 2 / (1 - b2) - 1
        ro = ro_inf - 2 * t * b2**t / (1 - b2**t)
        m_hat = tmap(lambda m, g: _m_hat(m, g, b1, t, self.nesterov), m, grads)
        if ro >= self.threshold:
            r = np.sqrt(
                (ro - 4) * (ro - 2) * ro_inf / ((ro_inf - 4) * (ro_inf - 2) * ro)
            )
            c2 = bias_correction(b2, t)
            u = tmap(
                lambda m, v: r * m / (np.sqrt(v / c2 + self.eps_root) + self.eps),
                m_hat,
                v,
            )
        else:
            u = m_hat
        return u, {"count": t, "mu": m, "nu": v}


class ScaleByAdan(Reference):
    """Adan (Xie et al., 2022, Algorithm 1) in optax's convention.

    optax writes the decays as b = 1 - β_paper (b1=0.98 is the paper's β1=0.02) and
    bias-corrects m, v, n (the paper does not). It also weighs the gradient
    difference with (1 - b2) = β2_paper in n and in the update, where the paper (and
    its reference code) use 1 - β2_paper = b2. gradtx follows optax's numbers:
    d = g - g_prev (0 at step 1);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) d
    n = b3 n + (1-b3)(g + (1-b2) d)²;  u = (m̂ + (1-b2) v̂) / (sqrt(n̂ + ε_root) + ε).
    """

    def __init__(self, b1=0.98, b2=0.92, b3=0.99, eps=1e-8, eps_root=0.0):
        self.b1, self.b2, self.b3 = hp(b1), hp(b2), hp(b3)
        self.eps, self.eps_root = hp(eps), hp(eps_root)

    def init(self, params):
        z = zeros(params)
        return {"m": z, "v": dict(z), "n": dict(z), "g": dict(z), "t": {(): 0.0}}

    def update(self, grads, state, params=None):
        b1, b2, b3 = self.b1, self.b2, self.b3
        first = state["t"][()] == 0
        d = tmap(lambda g, p: 0 * g if first else g - p, grads, state["g"])
        m = tmap(lambda g, m: b1 * m + (1 - b1) * g, grads, state["m"])
        v = tmap(lambda d, v: b2 * v + (1 - b2) * d, d, state["v"])
        n = tmap(
            lambda g, d, n: b3 * n + (1 - b3) * (g + (1 - b2) * d) ** 2,
            grads,
            d,
            state["n"],
        )
        t = increment(int(state["t"][()]))
        c1, c2, c3 = (bias_correction(b, t) for b in (b1, b2, b3))
        u = tmap(
            lambda m, v, n: (
                (m / c1 + (1 - b2) * v / c2)
                / (np.sqrt(n / c3 + self.eps_root) + self.eps)
            ),
            m,
            v,
            n,
        )
        # `t` is optax's name for the count; the shared checks special-case only
        # `count`, so it is compared as the value of the 0-d leaf (`x[()]`).
        return u, {"m": m, "v": v, "n": n, "g": dict(grads), "t": {(): float(t)}}


class ScaleByNovograd(Reference):
    """NovoGrad (Ginsburg et al., 2019, Algorithm 1).

    v_1 = ||g||², v = b2 v + (1-b2) ||g||² (per layer = per leaf);
    m_1 = g/(sqrt(v)+ε) + d w, m = b1 m + g/(sqrt(v + ε_root)+ε) + d w;  u = m.
    """

    def __init__(
        self, b1=0.9, b2=0.25, eps=1e-8, eps_root=0.0, weight_decay=0.0, mu_dtype=None
    ):
        self.b1, self.b2, self.eps, self.eps_root = map(hp, (b1, b2, eps, eps_root))
        self.weight_decay = weight_decay

    def init(self, params):
        return {"count": 0, "mu": zeros(params), "nu": tmap(lambda p: 0.0, params)}

    def update(self, grads, state, params=None):
        wd = self.weight_decay
        wd = hp(wd(np.int64(state["count"])) if callable(wd) else wd)
        t = increment(state["count"])
        sq = tmap(lambda g: float(np.sum(g * g)), grads)
        if t == 1:
            v = sq
        else:
            v = tmap(lambda s, v: self.b2 * v + (1 - self.b2) * s, sq, state["nu"])
        step = tmap(
            lambda g, v, p: g / (np.sqrt(v + self.eps_root) + self.eps) + wd * p,
            grads,
            v,
            params,
        )
        m = step if t == 1 else tmap(lambda m, s: self.b1 * m + s, state["mu"], step)
        nu = tmap(np.float64, v)
        return dict(m), {"count": t, "mu": m, "nu": nu}


class ScaleByRprop(Reference):
    """iRprop- (Igel & Hüsken, 2003; Riedmiller & Braun, 1993), not negated.

    s = g · u_prev;  Δ ← clip(η+ Δ) if s > 0, clip(η- Δ) if s < 0, else Δ
    u = 0 if s < 0 else Δ sign(g);  u_prev = u. This is the step optax computes
    and stores as `prev_updates`; optax returns the previous one (PR #1725).
    """

    def __init__(
        self,
        learning_rate,
        eta_minus=0.5,
        eta_plus=1.2,
        min_step_size=1e-6,
        max_step_size=50.0,
    ):
        lr = learning_rate(np.int64(0)) if callable(learning_rate) else learning_rate
        self.lr, self.eta_minus, self.eta_plus = hp(lr), hp(eta_minus), hp(eta_plus)
        self.lo, self.hi = hp(min_step_size), hp(max_step_size)

    def init(self, params):
        return {"step_sizes": full(params, self.lr), "prev_updates": zeros(params)}

    def update(self, grads, state, params=None):
        def leaf(g, step, prev):
            s = g * prev
            grown = np.clip(
                step * np.where(s > 0, self.eta_plus, self.eta_minus), self.lo, self.hi
            )
            step = np.where(s == 0, step, grown)
            return np.where(s < 0, 0.0, step * np.sign(g)), step

        out = tmap(leaf, grads, state["step_sizes"], state["prev_updates"])
        u = {k: v[0] for k, v in out.items()}
        steps = {k: v[1] for k, v in out.items()}
        return u, {"step_sizes": steps, "prev_updates": dict(u)}


class ScaleByFactoredRms(Reference):
    """Adafactor's second-moment estimate (Shazeer & Stern, 2018, Algorithms 4-5).

    b_t = 1 - (t+1)^-decay_rate with t the count before the step (optax's offset by
    one from the paper's 1 - t^-0.8, so step 1 has b = 0), minus `step_offset` and
    clamped at 0. ε is added to g² before averaging (paper: ε1 = 1e-30 likewise).
    Factored (two largest axes both >= min_dim): R = b R + (1-b) mean over the largest
    axis of (g² + ε), C = b C + (1-b) mean over the second-largest axis;
    V̂ = outer(R, C) / mean(R);  u = g / sqrt(V̂). Otherwise V = b V + (1-b)(g² + ε).
    The paper uses row/column sums; with the mean the ratio R C / mean(R) is equal.
    """

    def __init__(
        self,
        factored=True,
        decay_rate=0.8,
        step_offset=0,
        min_dim_size_to_factor=128,
        epsilon=1e-30,
        decay_rate_fn=None,
    ):
        self.factored, self.min_dim = factored, min_dim_size_to_factor
        self.decay_rate, self.offset, self.eps = decay_rate, step_offset, hp(epsilon)
        self.decay_fn = decay_rate_fn or (lambda i, e: 1 - (i + 1.0) ** (-hp(e)))

    def dims(self, shape):
        if not self.factored or len(shape) < 2:
            return None
        order = np.argsort(shape)
        return None if shape[order[-2]] < self.min_dim else (order[-2], order[-1])

    def init(self, params):
        rows, cols, full_v = {}, {}, {}
        for k, p in params.items():
            d, small = self.dims(np.shape(p)), np.zeros(1)
            if d is None:
                rows[k], cols[k], full_v[k] = small, small, np.zeros(np.shape(p))
            else:
                rows[k] = np.zeros(np.delete(np.shape(p), d[1]))
                cols[k] = np.zeros(np.delete(np.shape(p), d[0]))
                full_v[k] = small
        return {"count": 0, "v_row": rows, "v_col": cols, "v": full_v}

    def update(self, grads, state, params=None):
        assert params is not None
        b = hp(self.decay_fn(max(state["count"] - self.offset, 0), self.decay_rate))
        u, rows, cols, full_v = {}, {}, {}, {}
        for k, g in grads.items():
            g2, d = g * g + self.eps, self.dims(np.shape(g))
            rows[k], cols[k], full_v[k] = (
                state["v_row"][k],
                state["v_col"][k],
                state["v"][k],
            )
            if d is None:
                full_v[k] = b * full_v[k] + (1 - b) * g2
                u[k] = g / np.sqrt(full_v[k])
                continue
            small, large = d
            rows[k] = b * rows[k] + (1 - b) * g2.mean(axis=large)
            cols[k] = b * cols[k] + (1 - b) * g2.mean(axis=small)
            v_hat = (
                np.expand_dims(rows[k], large)
                * np.expand_dims(cols[k], small)
                / rows[k].mean()
            )
            u[k] = g / np.sqrt(v_hat)
        new = {"v_row": rows, "v_col": cols, "v": full_v}
        return u, {"count": increment(state["count"]), **new}


class ScaleByParamBlockRms(Reference):
    """Adafactor's relative step: u = g · max(RMS(param leaf), min_scale)."""

    def __init__(self, min_scale=1e-3):
        self.min_scale = hp(min_scale)

    def update(self, grads, state, params=None):
        scale = tmap(lambda p: max(np.sqrt(np.mean(p * p)), self.min_scale), params)
        return tmap(lambda g, s: g * s, grads, scale), state


class ScaleBySm3(Reference):
    """SM3-II (Anil et al., 2019, Algorithm SM3-II) with optax's momentum and b2.

    a = g² + min_i μ_i (broadcast) for b2 = 1 (the paper), (1-b2) g² + b2 min_i μ_i
    otherwise; μ_i = max of a over every axis but i; leaves of rank < 2 keep a full
    accumulator. u = EMA_b1(g / sqrt(a + ε)), 0 where a = 0 (optax's momentum; the
    paper's momentum variant is heavy-ball). The state's `mu` is compared per leaf
    as the tuple of its per-axis accumulators.
    """

    def __init__(self, b1=0.9, b2=1.0, eps=1e-8):
        self.b1, self.b2, self.eps = hp(b1), hp(b2), hp(eps)

    def init(self, params):
        def acc(p):
            shape = np.shape(p)
            return [np.zeros(shape)] if len(shape) < 2 else [np.zeros(n) for n in shape]

        return {"mu": tmap(acc, params), "nu": zeros(params)}

    def update(self, grads, state, params=None):
        c = 1.0 if self.b2 == 1.0 else 1 - self.b2
        u, mus = {}, {}
        for k, g in grads.items():
            mu = state["mu"][k]
            if g.ndim < 2:
                prior = mu[0]
            else:
                shaped = [
                    m.reshape([1] * i + [-1] + [1] * (g.ndim - i - 1))
                    for i, m in enumerate(mu)
                ]
                prior = functools.reduce(np.minimum, shaped)
            a = c * g * g + self.b2 * prior
            axes = range(g.ndim)
            mus[k] = (
                [a]
                if g.ndim < 2
                else [a.max(axis=tuple(j for j in axes if j != i)) for i in axes]
            )
            with np.errstate(divide="ignore"):
                v = np.where(a > 0, g / np.sqrt(a + self.eps), 0.0)
            u[k] = self.b1 * state["nu"][k] + (1 - self.b1) * v
        return dict(u), {"mu": mus, "nu": u}


# --- the public names ---

scale_by_adadelta, scale_by_belief, scale_by_yogi = (
    ScaleByAdadelta,
    ScaleByBelief,
    ScaleByYogi,
)
scale_by_radam, scale_by_adan, scale_by_novograd = (
    ScaleByRadam,
    ScaleByAdan,
    ScaleByNovograd,
)
scale_by_rprop, scale_by_factored_rms = ScaleByRprop, ScaleByFactoredRms
scale_by_param_block_rms, scale_by_sm3 = ScaleByParamBlockRms, ScaleBySm3


def adadelta(
    learning_rate=None, rho=0.9, eps=1e-6, weight_decay=0.0, weight_decay_mask=None
):
    """lr None: a learning rate of 1, *negated* (gradtx descends; optax ascends)."""
    return Chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        ScaleByAdadelta(rho, eps),
        scale_by_learning_rate(learning_rate),
    )


def adabelief(learning_rate, **kwargs):
    return Chain(ScaleByBelief(**kwargs), scale_by_learning_rate(learning_rate))


def adan(learning_rate, weight_decay=0.0, mask=None, **kwargs):
    """Decoupled weight decay (optax), not the paper's proximal (1 + λη)^-1 step."""
    return Chain(
        ScaleByAdan(**kwargs),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def novograd(learning_rate, **kwargs):
    return Chain(ScaleByNovograd(**kwargs), scale_by_learning_rate(learning_rate))


def radam(learning_rate, **kwargs):
    return Chain(ScaleByRadam(**kwargs), scale_by_learning_rate(learning_rate))


def rprop(learning_rate, **kwargs):
    return Chain(ScaleByRprop(learning_rate, **kwargs), Scale(-1.0))


def sm3(learning_rate, momentum=0.9):
    return Chain(ScaleBySm3(momentum), scale_by_learning_rate(learning_rate))


def yogi(learning_rate, b1=0.9, b2=0.999, eps=1e-3):
    return Chain(ScaleByYogi(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adafactor(
    learning_rate=None,
    min_dim_size_to_factor=128,
    decay_rate=0.8,
    decay_offset=0,
    multiply_by_parameter_scale=True,
    clipping_threshold=1.0,
    momentum=None,
    dtype_momentum=None,
    weight_decay_rate=None,
    eps=1e-30,
    factored=True,
    weight_decay_mask=None,
):
    """Adafactor (Shazeer & Stern, 2018, Algorithm 4 with clipping, relative step).

    Update clipping (section 6) by the block RMS, lr (not 1/sqrt(t): optax has no
    built-in step schedule), the parameter-scale factor max(RMS(x), 1e-3)
    (section 8), optional momentum as an undebiased EMA (section 5), then
    decoupled weight decay, and the final negation.
    """
    del dtype_momentum  # float32 params: float32 storage, nothing to round
    refs = [
        ScaleByFactoredRms(
            factored, decay_rate, decay_offset, min_dim_size_to_factor, eps
        )
    ]
    if clipping_threshold is not None:
        refs.append(ClipByBlockRms(clipping_threshold))
    if learning_rate is not None:
        refs.append(scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        refs.append(ScaleByParamBlockRms())
    if momentum is not None:
        refs.append(Ema(momentum, debias=False))
    if weight_decay_rate is not None:
        refs.append(add_decayed_weights(weight_decay_rate, weight_decay_mask))
    refs.append(Scale(-1.0))
    return Chain(*refs)
