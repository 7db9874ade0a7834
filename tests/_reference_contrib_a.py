# SPDX-License-Identifier: Apache-2.0
"""References: optax.contrib, part one: parameter-free and Adam variants.

Same conventions as `_reference.py`: dict states keyed by the gradtx state's field
names, hyperparameters through `hp`, float64 arithmetic, math from the papers. Where
optax's numbers differ from the paper, these follow optax and say so. A scalar state
field (a distance estimate, a step counter that is not `count`) is held as `{(): x}`,
so the shared checks can compare it like a one-leaf tree (`state.x[()]`).
"""

from __future__ import annotations

import numpy as np
from _reference import AddDecayedWeights, Chain, Identity, scale_by_learning_rate
from _reference_base import Reference, hp, increment, tmap, zeros

S = lambda x: {(): np.float64(x)}  # a scalar state field
V = lambda s: s[()]


def _at(value, count):
    return hp(value(np.int64(count))) if callable(value) else hp(value)


def _sum(tree):
    return float(sum(np.sum(x) for x in tree.values()))


class Ademamix(Reference):
    """AdEMAMix (Pagliardini et al., 2024, Algorithm 1): Adam plus alpha slow EMAs.

    m1 = b1 m1 + (1-b1) g;  m2 = b3 m2 + (1-b3) g;  nu = b2 nu + (1-b2) g²
    u = (m1/(1-b1^t) + alpha m2) / (sqrt(nu/(1-b2^t) + eps_root) + eps)
    b3 and alpha may be schedules of the step before the increment.
    """

    def __init__(self, b1=0.9, b2=0.999, b3=0.9999, alpha=6.0, eps=1e-8, eps_root=0.0):
        self.b1, self.b2, self.b3, self.alpha = hp(b1), hp(b2), b3, alpha
        self.eps, self.eps_root = hp(eps), hp(eps_root)

    def init(self, params):
        z = zeros(params)
        return {"count": 0, "count_m2": S(0), "m1": z, "m2": z, "nu": z}

    def update(self, grads, state, params=None):
        b1, b2, t = self.b1, self.b2, increment(state["count"])
        k2 = int(V(state["count_m2"]))  # the schedules' own step counter
        b3, alpha = _at(self.b3, k2), _at(self.alpha, k2)
        m1 = tmap(lambda g, m: b1 * m + (1 - b1) * g, grads, state["m1"])
        m2 = tmap(lambda g, m: b3 * m + (1 - b3) * g, grads, state["m2"])
        nu = tmap(lambda g, v: b2 * v + (1 - b2) * g * g, grads, state["nu"])
        c1, c2 = 1 - b1**t, 1 - b2**t
        u = tmap(
            lambda a, b, v: (
                (a / c1 + alpha * b) / (np.sqrt(v / c2 + self.eps_root) + self.eps)
            ),
            m1,
            m2,
            nu,
        )
        return u, {
            "count": t,
            "count_m2": S(increment(k2)),
            "m1": m1,
            "m2": m2,
            "nu": nu,
        }


scale_by_ademamix = Ademamix


def ademamix(learning_rate, b1=0.9, b2=0.999, b3=0.9999, alpha=5.0, eps=1e-8,
             eps_root=0.0, mu_dtype=None, weight_decay=0.0, mask=None):  # fmt: skip
    assert mu_dtype is None
    return Chain(
        Ademamix(b1, b2, b3, alpha, eps, eps_root),
        AddDecayedWeights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


class SimplifiedAdemamix(Reference):
    """Simplified AdEMAMix (Morwani et al., 2024): undamped momentum plus alpha g.

    m = b1 m + g;  n = b2 n + (1-b2) g²;  u = (m + alpha g) / (sqrt(n/(1-b2^t)) + eps)
    """

    def __init__(self, b1=0.99, b2=0.95, alpha=0.0, eps=1e-8, eps_root=0.0):
        self.b1, self.b2, self.alpha = hp(b1), hp(b2), alpha
        self.eps, self.eps_root = hp(eps), hp(eps_root)

    def init(self, params):
        return {"t": S(0), "m": zeros(params), "n": zeros(params)}

    def update(self, grads, state, params=None):
        b1, b2, t0 = self.b1, self.b2, int(V(state["t"]))
        alpha, t = _at(self.alpha, t0), increment(t0)
        m = tmap(lambda g, m: g + b1 * m, grads, state["m"])
        n = tmap(lambda g, n: b2 * n + (1 - b2) * g * g, grads, state["n"])
        den = lambda n: np.sqrt(n / (1 - b2**t) + self.eps_root) + self.eps
        u = tmap(lambda m, g, n: (m + alpha * g) / den(n), m, grads, n)
        return u, {"t": S(t), "m": m, "n": n}


scale_by_simplified_ademamix = SimplifiedAdemamix


def simplified_ademamix(learning_rate, weight_decay=0.0, mask=None, **kwargs):
    return Chain(
        SimplifiedAdemamix(**kwargs),
        AddDecayedWeights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


class Acprop(Reference):
    """ACProp (Zhuang et al., 2021, Algorithm 2) with optax's two deviations.

    The paper steps by m_t / sqrt(s_{t-1}) with s built from (g - m_t)²; optax (and so
    gradtx) steps by the raw g_t / (sqrt(s_{t-1} / (1-b2^(t-1))) + eps), 1 at t = 1,
    and builds s from (g - m_{t-1})², adding eps_root every step.
    """

    def __init__(self, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16):
        self.b1, self.b2, self.eps, self.eps_root = (
            hp(b1),
            hp(b2),
            hp(eps),
            hp(eps_root),
        )

    def init(self, params):
        return {"count": 0, "mu": zeros(params), "nu": zeros(params)}

    def update(self, grads, state, params=None):
        b1, b2, t = self.b1, self.b2, state["count"]
        c = 1.0 if t == 0 else 1 - b2**t
        u = tmap(
            lambda g, s: g / (np.sqrt(1.0 if t == 0 else s / c) + self.eps),
            grads,
            state["nu"],
        )
        mu = tmap(lambda g, m: b1 * m + (1 - b1) * g, grads, state["mu"])
        nu = tmap(
            lambda g, m, s: b2 * s + (1 - b2) * (g - m) ** 2 + self.eps_root,
            grads,
            state["mu"],
            state["nu"],
        )
        return u, {"count": increment(t), "mu": mu, "nu": nu}


scale_by_acprop = Acprop


def acprop(learning_rate, weight_decay=0.0, mask=None, **kwargs):
    return Chain(
        Acprop(**kwargs),
        AddDecayedWeights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


class Adopt(Reference):
    """ADOPT (Taniguchi et al., 2024, Algorithm 2, with optional clipping).

    t = 0: nu = g², m = 0.  Then x = clip(g / max(sqrt(nu_old), eps), c(t)),
    m = b1 m + (1-b1) x, nu = b2 nu + (1-b2) g²; u = m (Nesterov: b1 m + (1-b1) x).
    """

    def __init__(self, b1=0.9, b2=0.9999, eps=1e-6, mu_dtype=None, *, nesterov=False,
                 use_clipping=True, clip_value_fn=None):  # fmt: skip
        assert mu_dtype is None
        self.b1, self.b2, self.eps = hp(b1), hp(b2), hp(eps)
        self.nesterov, self.clip = nesterov, use_clipping
        self.clip_fn = clip_value_fn or (lambda c: float(c) ** 0.25)

    def init(self, params):
        return {"count": 0, "mu": zeros(params), "nu": zeros(params)}

    def update(self, grads, state, params=None):
        t = state["count"]
        if t == 0:
            nu = tmap(lambda g: g * g, grads)
            u = zeros(grads)
            return u, {"count": 1, "mu": state["mu"], "nu": nu}
        b1, b2, eps = self.b1, self.b2, self.eps
        c = hp(self.clip_fn(np.int64(t)))
        x = tmap(lambda g, v: g / np.maximum(np.sqrt(v), eps), grads, state["nu"])
        if self.clip:
            x = tmap(lambda x: np.clip(x, -c, c), x)
        mu = tmap(lambda x, m: b1 * m + (1 - b1) * x, x, state["mu"])
        nu = tmap(lambda g, v: b2 * v + (1 - b2) * g * g, grads, state["nu"])
        u = tmap(lambda x, m: b1 * m + (1 - b1) * x, x, mu) if self.nesterov else mu
        return u, {"count": increment(t), "mu": mu, "nu": nu}


scale_by_adopt = Adopt


def adopt(learning_rate, *args, **kwargs):
    return Chain(Adopt(*args, **kwargs), scale_by_learning_rate(learning_rate))


class Cocob(Reference):
    """COCOB-Backprop (Orabona & Tommasi, 2017, Algorithm 2), L starting at eps.

    L = max(L, |g|); G += |g|; R = max(R - g (x - x0), 0); C -= g;
    x_next = x0 + C / (L max(G + L, alpha L)) (L + R);  u = x_next - x.
    """

    def __init__(self, alpha=100.0, eps=1e-8):
        self.alpha, self.eps = hp(alpha), hp(eps)

    def init(self, params):
        z = zeros(params)
        return {
            "init_particles": dict(params),
            "cumulative_gradients": z,
            "scale": tmap(lambda p: np.full(np.shape(p), self.eps), params),
            "subgradients": z,
            "reward": z,
        }

    def update(self, grads, state, params=None):
        x0 = state["init_particles"]
        L = tmap(lambda s, g: np.maximum(s, np.abs(g)), state["scale"], grads)
        G = tmap(lambda s, g: s + np.abs(g), state["subgradients"], grads)
        R = tmap(
            lambda r, g, x, x0: np.maximum(r - g * (x - x0), 0),
            state["reward"], grads, params, x0,
        )  # fmt: skip
        C = tmap(lambda c, g: c - g, state["cumulative_gradients"], grads)
        u = tmap(
            lambda x, x0, C, L, G, R: x0
            + C / (L * np.maximum(G + L, self.alpha * L)) * (L + R)
            - x,
            params, x0, C, L, G, R,
        )  # fmt: skip
        new = {"init_particles": x0, "cumulative_gradients": C, "scale": L}
        return u, {**new, "subgradients": G, "reward": R}


scale_by_cocob = Cocob


def cocob(learning_rate=1.0, alpha=100.0, eps=1e-8, weight_decay=0.0, mask=None):
    return Chain(
        AddDecayedWeights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, flip_sign=False),
        Cocob(alpha, eps),
    )


class Madgrad(Reference):
    """MADGRAD (Defazio & Jelassi, 2021, Algorithm 1; the lr + eps of its code, lr > 0).

    lamb = (lr_k + eps) sqrt(k + 1); s += lamb g; G += lamb g²;
    z = x0 - s / (cbrt(G) + eps); x_next = (1 - momentum) z + momentum x.
    """

    def __init__(self, learning_rate, momentum=0.9, eps=1e-6):
        self.lr, self.momentum, self.eps = learning_rate, hp(momentum), hp(eps)

    def init(self, params):
        z = zeros(params)
        return {"count": 0, "grad_sum_sq": z, "s": z, "x0": dict(params)}

    def update(self, grads, state, params=None):
        k = state["count"]
        lr = _at(self.lr, k)
        lamb = (lr + self.eps) * np.sqrt(k + 1.0) if lr > 0 else 0.0
        G = tmap(lambda a, g: a + lamb * g * g, state["grad_sum_sq"], grads)
        s = tmap(lambda a, g: a + lamb * g, state["s"], grads)
        c, z = self.momentum, lambda x0, s, G: x0 - s / (np.cbrt(G) + self.eps)
        u = tmap(
            lambda x0, s, G, x: (1 - c) * z(x0, s, G) + c * x - x,
            state["x0"], s, G, params,
        )  # fmt: skip
        return u, {"count": increment(k), "grad_sum_sq": G, "s": s, "x0": state["x0"]}


scale_by_madgrad = Madgrad


def madgrad(learning_rate, momentum=0.9, weight_decay=0.0, eps=1e-6):
    return Chain(AddDecayedWeights(weight_decay), Madgrad(learning_rate, momentum, eps))


class DAdaptAdamW(Reference):
    """D-Adaptation Adam (Defazio & Mishchenko, 2023, Algorithm 4, as its code).

    sb2 = sqrt(b2); dlr = d lr sqrt(1-b2^t) / (1-b1^t);
    num = sb2 num + (1-sb2) dlr <g, s / (sqrt(v) + eps)> (v before this step);
    m = b1 m + (1-b1) dlr g; v = b2 v + (1-b2) g²; s = sb2 s + (1-sb2) dlr g;
    d = max(d, num / ((1-sb2) |s|_1)); u = -wd dlr x - m / (sqrt(v) + eps).
    """

    def __init__(self, learning_rate=1.0, betas=(0.9, 0.999), eps=1e-8,
                 estim_lr0=1e-6, weight_decay=0.0):  # fmt: skip
        self.lr, self.b1, self.b2 = learning_rate, hp(betas[0]), hp(betas[1])
        self.eps, self.d0, self.wd = hp(eps), hp(estim_lr0), weight_decay

    def init(self, params):
        z = zeros(params)
        first = {"exp_avg": z, "exp_avg_sq": z, "grad_sum": z}
        return {**first, "estim_lr": S(self.d0), "numerator_weighted": S(0), "count": 0}

    def _dlr(self, state):
        k, d = state["count"], V(state["estim_lr"])
        t = increment(k)
        bc = np.sqrt(1 - self.b2**t) / (1 - self.b1**t)
        return d, d * _at(self.lr, k) * bc, _at(self.wd, k), t

    def update(self, grads, state, params=None):
        b1, b2, eps = self.b1, self.b2, self.eps
        sb2 = np.sqrt(b2)
        d, dlr, wd, t = self._dlr(state)
        acc = _sum(
            tmap(
                lambda g, s, v: g * s / (np.sqrt(v) + eps),
                grads, state["grad_sum"], state["exp_avg_sq"],
            )
        )  # fmt: skip
        m = tmap(lambda m, g: b1 * m + (1 - b1) * dlr * g, state["exp_avg"], grads)
        v = tmap(lambda v, g: b2 * v + (1 - b2) * g * g, state["exp_avg_sq"], grads)
        s = tmap(lambda s, g: sb2 * s + (1 - sb2) * dlr * g, state["grad_sum"], grads)
        num = sb2 * V(state["numerator_weighted"]) + (1 - sb2) * dlr * acc
        l1 = _sum(tmap(np.abs, s))
        d_new = max(d, num / ((1 - sb2) * l1)) if l1 > 0 else d
        u = tmap(lambda m, v, x: -wd * dlr * x - m / (np.sqrt(v) + eps), m, v, params)
        new = {"exp_avg": m, "exp_avg_sq": v, "grad_sum": s}
        return u, {
            **new,
            "estim_lr": S(d_new),
            "numerator_weighted": S(num),
            "count": t,
        }


dadapt_adamw = DAdaptAdamW


class Prodigy(DAdaptAdamW):
    """Prodigy (Mishchenko & Defazio, 2023, Algorithm 3, Adam form, as its code).

    dg = d g; m = b1 m + (1-b1) dg; v = b2 v + (1-b2) dg²;
    s = b3 s + (dlr, or d with safeguard_warmup) dg / d0;
    num = b3 num + (d / d0) dlr <g, x0 - x>; d = max(d, coef num / |s|_1);
    u = -wd dlr x - dlr m / (sqrt(v) + d eps).
    """

    def __init__(self, learning_rate=1.0, betas=(0.9, 0.999), beta3=None, eps=1e-8,
                 estim_lr0=1e-6, estim_lr_coef=1.0, weight_decay=0.0,
                 safeguard_warmup=False):  # fmt: skip
        super().__init__(learning_rate, betas, eps, estim_lr0, weight_decay)
        self.b3 = np.sqrt(self.b2) if beta3 is None else hp(beta3)
        self.coef, self.safeguard = hp(estim_lr_coef), safeguard_warmup

    def init(self, params):
        return {**super().init(params), "params0": dict(params)}

    def update(self, grads, state, params=None):
        b1, b2, b3, d0 = self.b1, self.b2, self.b3, self.d0
        d, dlr, wd, t = self._dlr(state)
        x0 = state["params0"]
        acc = _sum(tmap(lambda g, a, b: g * (a - b), grads, x0, params))
        m = tmap(lambda m, g: b1 * m + (1 - b1) * d * g, state["exp_avg"], grads)
        v = tmap(
            lambda v, g: b2 * v + (1 - b2) * (d * g) ** 2, state["exp_avg_sq"], grads
        )
        w = (d if self.safeguard else dlr) / d0
        s = tmap(lambda s, g: b3 * s + w * d * g, state["grad_sum"], grads)
        num = b3 * V(state["numerator_weighted"]) + (d / d0) * dlr * acc
        l1 = _sum(tmap(np.abs, s))
        d_new = max(d, self.coef * num / l1) if l1 > 0 else d
        u = tmap(
            lambda m, v, x: -wd * dlr * x - dlr * m / (np.sqrt(v) + d * self.eps),
            m, v, params,
        )  # fmt: skip
        new = {"exp_avg": m, "exp_avg_sq": v, "grad_sum": s, "params0": x0}
        return u, {
            **new,
            "estim_lr": S(d_new),
            "numerator_weighted": S(num),
            "count": t,
        }


prodigy = Prodigy


def _norm_sq(a, b=None):
    return _sum(tmap(lambda x, y: (x - y) ** 2, a, b or zeros(a)))


class DoG(Reference):
    """DoG (Ivgi et al., 2023, Algorithm 1): eta_t = max_s |x_s - x0| / sqrt(sum |g|²).

    r_eps: "distance" r, "heuristic" r (1 + |x0|), or "learning_rate" (eta_0 = r).
    """

    def __init__(self, init_step, eps):
        self.kind, self.value, self.eps = init_step[0], hp(init_step[1]), hp(eps)

    def init(self, params):
        r = {"distance": self.value, "learning_rate": 0.0}.get(self.kind)
        if r is None:
            r = self.value * (1 + np.sqrt(_norm_sq(params)))
        first = {"is_init_step": S(1.0), "init_params": dict(params)}
        return {**first, "max_dist": S(r), "sum_sq_norm_grads": S(0)}

    def update(self, grads, state, params=None):
        x0 = state["init_params"]
        r = max(V(state["max_dist"]), np.sqrt(_norm_sq(x0, params)))
        G = V(state["sum_sq_norm_grads"]) + _norm_sq(grads)
        eta = r / np.sqrt(G + self.eps)
        if self.kind == "learning_rate" and V(state["is_init_step"]):
            eta = self.value
        u = tmap(lambda g: eta * g, grads)
        first = {"is_init_step": S(0.0), "init_params": x0}
        return u, {**first, "max_dist": S(r), "sum_sq_norm_grads": S(G)}


def dog(learning_rate=1.0, init_step=("heuristic", 1e-6), eps=1e-8,
        weight_decay=None, mask=None):  # fmt: skip
    wd = Identity() if weight_decay is None else AddDecayedWeights(weight_decay, mask)
    return Chain(wd, DoG(init_step, eps), scale_by_learning_rate(learning_rate))


class DoWG(Reference):
    """DoWG (Khaled et al., 2023, Algorithm 1): eta = r² / (sqrt(sum r² |g|²) + eps)."""

    def __init__(self, init_estim_sq_dist, eps):
        self.r2 = hp(eps if init_estim_sq_dist is None else init_estim_sq_dist)
        self.eps = hp(eps)

    def init(self, params):
        return {
            "init_params": dict(params),
            "weighted_sq_norm_grads": S(0),
            "estim_sq_dist": S(self.r2),
        }

    def update(self, grads, state, params=None):
        x0 = state["init_params"]
        r2 = max(V(state["estim_sq_dist"]), _norm_sq(x0, params))
        w = V(state["weighted_sq_norm_grads"]) + r2 * _norm_sq(grads)
        eta = r2 / (np.sqrt(w) + self.eps)
        u = tmap(lambda g: eta * g, grads)
        return u, {
            "init_params": x0,
            "weighted_sq_norm_grads": S(w),
            "estim_sq_dist": S(r2),
        }


def dowg(learning_rate=1.0, init_estim_sq_dist=None, eps=1e-4,
         weight_decay=None, mask=None):  # fmt: skip
    wd = Identity() if weight_decay is None else AddDecayedWeights(weight_decay, mask)
    return Chain(
        wd, DoWG(init_estim_sq_dist, eps), scale_by_learning_rate(learning_rate)
    )


class LayerwiseDoG(Reference):
    """LDoG (Ivgi et al., 2023, section 4): DoG's step per leaf; G has shape (1,)."""

    def __init__(
        self, reps_rel=1e-6, eps=1e-8, param_dtype=np.float32, global_scale=1.0
    ):
        self.reps, self.eps, self.scale = hp(reps_rel), hp(eps), hp(global_scale)
        self.dtype = param_dtype

    def init(self, params):
        return {
            "max_dist": tmap(
                lambda x: self.reps * (1 + np.sqrt(np.sum(x * x))), params
            ),
            "grad_sum_of_squares": tmap(lambda x: np.zeros(1), params),
            "init_params": tmap(
                lambda x: np.asarray(x, self.dtype).astype(np.float64), params
            ),
        }

    def update(self, grads, state, params=None):
        x0 = state["init_params"]
        r = tmap(
            lambda d, x, y: np.maximum(d, np.sqrt(np.sum((x - y) ** 2))),
            state["max_dist"], params, x0,
        )  # fmt: skip
        G = tmap(lambda a, g: a + np.sum(g * g), state["grad_sum_of_squares"], grads)
        u = tmap(
            lambda g, r, G: self.scale * r / np.sqrt(G[0] + self.eps) * g, grads, r, G
        )
        return u, {"max_dist": r, "grad_sum_of_squares": G, "init_params": x0}


scale_by_distance_over_gradients = LayerwiseDoG
