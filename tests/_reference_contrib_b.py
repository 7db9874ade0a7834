# SPDX-License-Identifier: Apache-2.0
"""References: optax.contrib, part two: galore, muon, sam, schedule-free, sophia.

Same conventions as `_reference.py`: dict states keyed by the gradtx state's field
names, hyperparameters through `hp`, float64 arithmetic, math from the papers.
Wrappers take references of their inner optimizers. The noise of DP-SGD and the
Rademacher vectors of Hutchinson's estimator are drawn with `jax.random` from the
documented key stream (the only way two implementations can agree on noise).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _reference import Adam, AddDecayedWeights, Chain, scale_by_learning_rate
from _reference_base import Reference, bias_correction, hp, increment, tmap, zeros


class Normalize(Reference):
    """u = g / ||g|| over the whole tree; zero stays zero (gradtx's fix of B5)."""

    def update(self, grads, state, params=None):
        n = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
        return tmap(lambda g: g / n if n > 0 else g * 0.0, grads), state


normalize = Normalize

# --- Muon (Jordan et al., 2024) ---

NS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g, coeffs, steps, how="frobenius", eps=1e-8):
    """Quintic Newton-Schulz iteration X <- a X + (b A + c A²) X, A = X Xᵀ."""
    x = g.T if g.shape[0] > g.shape[1] else g
    if how == "frobenius":
        x = x / (np.linalg.norm(x) + eps)
    elif how == "spectral":
        x = x / (np.linalg.norm(x, 2) + eps)
    rows = [coeffs] * steps if np.ndim(coeffs) == 1 else list(coeffs)
    for i, (a, b, c) in enumerate(rows):
        gram = x @ x.T
        if i == 0 and how == "aol":
            s = 1 / np.sqrt(np.maximum(np.abs(gram).sum(-1), eps))[:, None]
            x, gram = x * s, gram * s * s.T
        elif i == 0 and how == "schatten":
            s = 1 / np.sqrt(max(np.linalg.norm(gram), eps))
            x, gram = x * s, gram * s**2
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if g.shape[0] > g.shape[1] else x


def _as_matrix(x, spec):
    """Batch of matrices for `spec = (reduction_axes, output_axes)` and the inverse."""
    red, out = ((a,) if isinstance(a, int) else tuple(a) for a in spec)
    red = tuple(a % x.ndim for a in red)
    out = tuple(a % x.ndim for a in out)
    rest = tuple(a for a in range(x.ndim) if a not in red + out)
    perm = rest + red + out
    shape = [x.shape[a] for a in perm]
    nb = int(np.prod([x.shape[a] for a in rest]))
    m, n = (
        int(np.prod([x.shape[a] for a in red])),
        int(np.prod([x.shape[a] for a in out])),
    )
    flat = x.transpose(perm).reshape(nb, m, n)
    return flat, lambda y: y.reshape(shape).transpose(np.argsort(perm)), (m, n)


class ScaleByMuon(Reference):
    """m = b m + (1-b) g;  m̂ (Nesterov or not, bias-corrected);  u = NS(m̂)."""

    def __init__(
        self,
        ns_coeffs=NS,
        ns_steps=5,
        beta=0.95,
        eps=1e-8,
        mu_dtype=None,
        *,
        nesterov=True,
        adaptive=False,
        preconditioning="frobenius",
        weight_dimension_numbers=None,
    ):
        self.coeffs = np.asarray(ns_coeffs, np.float32).astype(np.float64)
        if self.coeffs.ndim == 2:
            self.coeffs = self.coeffs[-ns_steps:]
        self.steps, self.b, self.eps = ns_steps, hp(beta), hp(eps)
        self.nesterov, self.adaptive, self.how = nesterov, adaptive, preconditioning
        self.dims = weight_dimension_numbers or {}

    def init(self, params):
        return {"count": 0, "mu": zeros(params), "ns_coeffs": self.coeffs}

    def update(self, grads, state, params=None):
        b, t = self.b, increment(state["count"])
        m = tmap(lambda g, m: b * m + (1 - b) * g, grads, state["mu"])
        if self.nesterov:
            c1, c2 = bias_correction(b, t + 1), bias_correction(b, t)
            m_hat = tmap(lambda m, g: b * m / c1 + (1 - b) * g / c2, m, grads)
        else:
            m_hat = tmap(lambda m: m / bias_correction(b, t), m)
        u = {k: self.ortho(v, self.dims.get(k, (0, 1))) for k, v in m_hat.items()}
        return u, {"count": t, "mu": m, "ns_coeffs": self.coeffs}

    def ortho(self, x, spec):
        flat, back, _ = _as_matrix(x, spec)
        o = np.stack(
            [
                newton_schulz(a, self.coeffs, self.steps, self.how, self.eps)
                for a in flat
            ]
        )
        o = back(o)
        return np.sum(x * o) * o if self.adaptive else o


class Partition(Reference):
    """Each group's reference on the sub-dict of its keys (keys: label -> keys)."""

    def __init__(self, groups: dict[str, tuple[Reference, list[str]]]):
        self.groups = groups

    def init(self, params):
        return {
            n: r.init({k: params[k] for k in ks}) for n, (r, ks) in self.groups.items()
        }

    def update(self, grads, state, params=None):
        out, new = {}, {}
        for n, (r, ks) in self.groups.items():
            sub = lambda t, ks=ks: {k: t[k] for k in ks}
            u, new[n] = r.update(sub(grads), state[n], sub(params))
            out.update(u)
        return out, new


class Scale(Reference):
    """Per-leaf constant factors."""

    def __init__(self, factors):
        self.factors = factors

    def update(self, grads, state, params=None):
        return {k: self.factors[k] * g for k, g in grads.items()}, state


def muon(
    learning_rate,
    *,
    params,
    weight_decay=0.0,
    consistent_rms=None,
    adam_b1=0.9,
    adam_b2=0.999,
    eps=1e-8,
    adam_weight_decay=0.0,
    **kw,
):
    """Muon on 2-D leaves (width-scaled), NAdamW on the others (optax's muon)."""
    mat = [k for k, v in params.items() if np.ndim(v) == 2]
    rest = [k for k in params if k not in mat]

    def width(k):
        fan_in, fan_out = params[k].shape
        if consistent_rms is None:
            return hp(max(1.0, fan_out / fan_in) ** 0.5)
        return hp(max(fan_in, fan_out) ** 0.5) * hp(consistent_rms)

    lr = scale_by_learning_rate(learning_rate)
    muon_ref = Chain(
        ScaleByMuon(eps=eps, **kw),
        Scale({k: width(k) for k in mat}),
        AddDecayedWeights(weight_decay),
        lr,
    )
    nesterov = kw.get("nesterov", True)
    adam = Chain(
        Adam(adam_b1, adam_b2, eps, nesterov=nesterov),
        AddDecayedWeights(adam_weight_decay),
        lr,
    )
    return Partition({"muon": (muon_ref, mat), "adam": (adam, rest)})


# --- GaLore (Zhao et al., 2024) ---


class ScaleByGalore(Reference):
    """R = Pᵀ G (P: top-r singular vectors, new every gap steps); u = P base(R)."""

    def __init__(self, rank=128, update_proj_gap=200, scale=1.0, base_optimizer=None):
        self.rank, self.gap, self.scale = rank, update_proj_gap, hp(scale)
        self.base = base_optimizer or Adam()

    def init(self, params):
        proxy = {}
        for k, p in params.items():
            if np.ndim(p) == 2:
                m, n = p.shape
                r = min(self.rank, m, n)
                proxy[k] = np.zeros((r, n) if m >= n else (m, r))
            else:
                proxy[k] = np.zeros(np.shape(p))
        return {
            "count": 0,
            "base_optimizer_state": self.base.init(proxy),
            "projector": {},
        }

    def update(self, grads, state, params=None):
        proj, low = dict(state["projector"]), {}
        for k, g in grads.items():
            if np.ndim(g) != 2:
                low[k] = g
                continue
            m, n = g.shape
            r = min(self.rank, m, n)
            if state["count"] % self.gap == 0:
                u, _, vh = np.linalg.svd(g, full_matrices=False)
                proj[k] = u[:, :r] if m >= n else vh[:r].T
            low[k] = proj[k].T @ g if m >= n else g @ proj[k]
        lu, base_state = self.base.update(low, state["base_optimizer_state"])
        out = dict(lu)
        for k, P in proj.items():
            left = grads[k].shape[0] >= grads[k].shape[1]
            out[k] = self.scale * (P @ lu[k] if left else lu[k] @ P.T)
        return out, {
            "count": increment(state["count"]),
            "base_optimizer_state": base_state,
            "projector": proj,
        }


def galore(learning_rate, rank=128, update_proj_gap=200, scale=1.0, weight_decay=0.0):
    return Chain(
        ScaleByGalore(rank, update_proj_gap, scale),
        AddDecayedWeights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )


# --- Sophia (Liu et al., 2023) ---


class ScaleBySophia(Reference):
    """u = clip(m̂ / max(gamma h, eps)); h: EMA of the Hessian diagonal every k steps."""

    def __init__(
        self,
        b1=0.965,
        b2=0.99,
        eps=1e-8,
        gamma=0.01,
        clip_threshold=1.0,
        update_interval=10,
        hessian_diag=None,
    ):
        self.b1, self.b2, self.eps, self.gamma = hp(b1), hp(b2), hp(eps), hp(gamma)
        self.clip, self.k, self.hdiag = clip_threshold, update_interval, hessian_diag

    def init(self, params):
        return {
            "count": 0,
            "mu": zeros(params),
            "nu": zeros(params),
            "hessian_fn_state": None,
        }

    def update(self, grads, state, params=None):
        t, b1 = increment(state["count"]), self.b1
        m = tmap(lambda g, m: b1 * m + (1 - b1) * g, grads, state["mu"])
        u = tmap(
            lambda m, h: (
                m / bias_correction(b1, t) / np.maximum(self.gamma * h, self.eps)
            ),
            m,
            state["nu"],
        )
        if self.clip is not None:
            u = tmap(lambda x: np.clip(x, -hp(self.clip), hp(self.clip)), u)
        nu = state["nu"]
        if state["count"] % self.k == 0:
            d = self.hdiag(params)
            nu = tmap(lambda d, h: self.b2 * h + (1 - self.b2) * d, d, nu)
        return u, {"count": t, "mu": m, "nu": nu, "hessian_fn_state": None}


def sophia(learning_rate, weight_decay=1e-4, **kw):
    return Chain(
        ScaleBySophia(**kw),
        AddDecayedWeights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )


# --- DP-SGD (Abadi et al., 2016) ---


class DpAggregate(Reference):
    """Per-example clip to C, sum, add N(0, (C s)²) noise, divide by the batch size."""

    def __init__(self, l2_norm_clip, noise_multiplier, key):
        self.c, self.s, self.key = hp(l2_norm_clip), hp(noise_multiplier), key

    def init(self, params):
        return {"rng_key": self.key}

    def update(self, grads, state, params=None):
        keys = list(grads)  # the flattening order of a dict: sorted keys
        keys.sort()
        b = grads[keys[0]].shape[0]
        norms = np.sqrt(sum(np.sum(grads[k].reshape(b, -1) ** 2, axis=1) for k in keys))
        f = np.where(norms > self.c, self.c / np.where(norms > 0, norms, 1), 1.0)
        new_key, *rngs = jax.random.split(state["rng_key"], len(keys) + 1)
        out = {}
        for k, r in zip(keys, rngs, strict=True):
            total = np.tensordot(f, grads[k], axes=1)
            noise = np.asarray(
                jax.random.normal(r, total.shape, jnp.float32), np.float64
            )
            out[k] = (total + self.c * self.s * noise) / b
        return out, {"rng_key": new_key}


def dpsgd(
    learning_rate, l2_norm_clip, noise_multiplier, seed, momentum=None, nesterov=False
):
    from _reference import Identity, Trace

    first = Identity() if momentum is None else Trace(momentum, nesterov)
    return Chain(
        DpAggregate(l2_norm_clip, noise_multiplier, jax.random.key(seed)),
        first,
        scale_by_learning_rate(learning_rate),
    )


def split_real_and_imaginary(inner: Reference) -> Any:
    """The inner reference on {k_re, k_im} real leaves; merged back to complex."""

    class Split(Reference):
        def split(self, t):
            out = {}
            for k, v in t.items():
                if np.iscomplexobj(v):
                    out[k + "_re"], out[k + "_im"] = v.real, v.imag
                else:
                    out[k] = v
            return out

        def init(self, params):
            return {"inner_state": inner.init(self.split(params))}

        def update(self, grads, state, params=None):
            u, s = inner.update(
                self.split(grads), state["inner_state"], self.split(params)
            )
            merged = {
                k: u[k + "_re"] + 1j * u[k + "_im"] if k + "_re" in u else u[k]
                for k in grads
            }
            return merged, {"inner_state": s}

    return Split()
