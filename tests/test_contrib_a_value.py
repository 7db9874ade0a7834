# SPDX-License-Identifier: Apache-2.0
"""momo, momo_adam (need `value=`) and mechanize (a wrapper): float64 references
written from the papers, eager and jit, and optax parity (NOT_IN_REGISTRY names)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import adam as adam_reference
from _reference_base import hp, increment, tmap, zeros
from _reference_contrib_a import S, V
from _registry import Trajectory, make_grads, make_params, to_f64

import gradtx

RTOL = 1e-5
VALUES = [float(v) for v in 2.0 + np.cos(np.arange(100) / 3.0)]  # positive losses


def _sum(tree):
    return float(sum(np.sum(x) for x in tree.values()))


def _dot(a, b):
    return _sum(tmap(lambda x, y: x * y, a, b))


class Momo:
    """MoMo (Schaipp et al., 2023, Algorithm 1 with weight decay, optax's form).

    d = b d + (1-b) g;  f = b f + (1-b) loss;  gamma = b gamma + (1-b) <g, x>
    (b = 0 on the first step; MoMo-Adam uses b1 throughout and preconditions d):
    h = (1 + lr wd)(f - bc1 lb - gamma) + <d, x>;  tau = min(lr/bc1, h+ / <d, D^-1 d>)
    u = -lr wd / (1 + lr wd) x - tau D^-1 d.  ResetStar (adapt_lower_bound) moves lb.
    """

    def __init__(
        self,
        adam=False,
        learning_rate=1.0,
        beta=0.9,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        lower_bound=0.0,
        weight_decay=0.0,
        adapt_lower_bound=False,
    ):
        self.adam, self.lr, self.wd = adam, learning_rate, hp(weight_decay)
        self.beta, self.b1, self.b2, self.eps = hp(beta), hp(b1), hp(b2), hp(eps)
        self.lower, self.adapt = hp(lower_bound), adapt_lower_bound
        self.resets = 0

    def init(self, params):
        state = {"exp_avg": zeros(params), "barf": S(0), "gamma": S(0)}
        if self.adam:
            state["exp_avg_sq"] = zeros(params)
        return {**state, "lb": S(self.lower), "count": 0}

    def update(self, grads, state, params, value):
        k, t = state["count"], increment(state["count"])
        b = self.b1 if self.adam else (0.0 if k == 0 else self.beta)
        mix = lambda old, new: b * old + (1 - b) * new
        f, gamma = (
            mix(V(state["barf"]), value),
            mix(V(state["gamma"]), _dot(grads, params)),
        )
        d = tmap(mix, state["exp_avg"], grads)
        out = {"exp_avg": d, "barf": S(f), "gamma": S(gamma), "count": t}
        D, bc1 = tmap(lambda x: np.ones_like(x), d), 1.0
        if self.adam:
            v = tmap(
                lambda v, g: self.b2 * v + (1 - self.b2) * g * g,
                state["exp_avg_sq"],
                grads,
            )
            D = tmap(lambda v: self.eps + np.sqrt(v / (1 - self.b2**t)), v)
            out["exp_avg_sq"], bc1 = v, 1 - self.b1**t
        lr = hp(self.lr(np.int64(k))) if callable(self.lr) else hp(self.lr)
        one = 1 + lr * self.wd
        norm, iprod, lb = (
            _dot(d, tmap(np.divide, d, D)),
            _dot(d, params),
            V(state["lb"]),
        )
        if self.adapt:
            cap = one * (f - gamma) + iprod
            if cap < one * bc1 * lb:
                lb, self.resets = (
                    max(cap / (2 * bc1 * one), self.lower),
                    self.resets + 1,
                )
        h = max(one * (f - bc1 * lb - gamma) + iprod, 0.0)
        tau = min(lr / bc1, h / norm if norm > np.finfo(np.float32).eps else 0.0)
        u = tmap(lambda x, d, D: -lr * self.wd / one * x - tau * d / D, params, d, D)
        if self.adapt:
            lb = max((f + iprod - gamma - tau * norm / 2) / bc1, self.lower)
        return u, {**out, "lb": S(lb)}


MOMO = [
    pytest.param("momo", {}, id="momo"),
    pytest.param(
        "momo", {"learning_rate": 0.5, "beta": 0.8, "weight_decay": 0.1}, id="momo-wd"
    ),
    pytest.param(
        "momo",
        {"learning_rate": 2.0, "lower_bound": 1.0, "adapt_lower_bound": True},
        id="momo-adapt",
    ),
    pytest.param("momo_adam", {}, id="momo_adam"),
    pytest.param(
        "momo_adam", {"learning_rate": 0.05, "weight_decay": 0.1}, id="momo_adam-wd"
    ),
    pytest.param(
        "momo_adam",
        {"learning_rate": 0.1, "lower_bound": 1.0, "adapt_lower_bound": True},
        id="momo_adam-adapt",
    ),
]


def _momo_reference(name, kwargs):
    if name == "momo_adam":
        return Momo(adam=True, **{"learning_rate": 1e-2, **kwargs})
    return Momo(**kwargs)


@pytest.mark.parametrize(("name", "kwargs"), MOMO)
def test_momo_matches_float64_reference(name, kwargs, jit):
    tx = getattr(gradtx, name)(**kwargs)
    ref = _momo_reference(name, kwargs)
    step = jit(lambda p, s, g, v: tx.update(g, s, p, value=v))
    params = make_params()
    state, rparams = tx.init(params), to_f64(params)
    rstate, trajectory = ref.init(rparams), Trajectory()
    n = 100 if jit is jax.jit else 10
    for g, v in zip(make_grads(n), VALUES[:n], strict=True):
        updates, state = step(params, state, g, jnp.float32(v))
        params = gradtx.apply_updates(params, updates)
        rupdates, rstate = ref.update(to_f64(g), rstate, rparams, hp(v))
        rparams = tmap(lambda p, u: np.float64(np.float32(p + u)), rparams, rupdates)
        trajectory.add_tree("updates", updates, rupdates, RTOL)
        trajectory.add_tree("params", params, rparams, RTOL)
        assert int(state.count) == rstate["count"]
        # The scalars are dot products and averages of O(1) terms: their float32
        # error is relative to those terms (scale >= 1), not to a result near 0.
        for field, expected in rstate.items():
            if field != "count":
                trajectory.add_tree(field, getattr(state, field), expected, RTOL)
    trajectory.check()
    if kwargs.get("adapt_lower_bound") and jit is jax.jit:
        assert 0 < ref.resets < n, "the lower-bound reset branch was not exercised"


def _optax_run(tx, apply, grads, values):
    """Runs `tx` under jit (compiling once costs less than 30 eager steps)."""

    @jax.jit
    def step(params, state, g, v):
        updates, state = tx.update(g, state, params, value=v)
        return updates, apply(params, updates), state

    params, out = make_params(), []
    state = tx.init(params)
    for g, v in zip(grads, values, strict=True):
        updates, params, state = step(params, state, g, jnp.float32(v))
        out.append((updates, params, state))
    return out


def _add_state_leaves(trajectory, ours, theirs):
    """Same leaves, same order and dtypes; atol relative to max(1, |leaf|)."""
    ls, los = jax.tree.leaves(ours), jax.tree.leaves(theirs)
    assert [x.dtype for x in ls] == [x.dtype for x in los]
    for i, (x, y) in enumerate(zip(ls, los, strict=True)):
        scale = max(1.0, float(jnp.max(jnp.abs(y.astype(jnp.float32)))))
        trajectory.add(f"state leaf {i}", x, y, RTOL, RTOL * scale)


def _compare(ours, theirs):
    trajectory = Trajectory()
    for (u, p, s), (ou, op, os) in zip(ours, theirs, strict=True):
        trajectory.add_tree("updates", u, jax.tree.map(np.asarray, ou), RTOL)
        trajectory.add_tree("params", p, jax.tree.map(np.asarray, op), RTOL)
        _add_state_leaves(trajectory, s, os)
    trajectory.check()


@pytest.mark.parametrize(("name", "kwargs"), MOMO)
def test_momo_matches_optax(name, kwargs, standard_promotion):
    grads = make_grads(30)
    ours = _optax_run(
        getattr(gradtx, name)(**kwargs), gradtx.apply_updates, grads, VALUES[:30]
    )
    theirs = _optax_run(
        getattr(optax.contrib, name)(**kwargs), optax.apply_updates, grads, VALUES[:30]
    )
    _compare(ours, theirs)


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_momo_without_value_or_params_raises(name):
    tx = getattr(gradtx, name)()
    params = make_params()
    (g,) = make_grads(1)
    with pytest.raises(gradtx.MissingValueError, match=rf"gradtx\.{name}: .*value="):
        tx.update(g, tx.init(params), params)
    with pytest.raises(gradtx.MissingParamsError, match=rf"gradtx\.{name}"):
        tx.update(g, tx.init(params), None, value=1.0)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("momo", {"beta": 1.0}),
        ("momo", {"lower_bound": float("nan")}),
        ("momo_adam", {"b2": -0.1}),
        ("momo_adam", {"weight_decay": -1.0}),
        ("mechanize", {"s_init": 0.0}),
        ("mechanize", {"num_betas": 0}),
        ("mechanize", {"eps": -1.0}),
    ],
)
def test_bad_hyperparameters_raise(name, kwargs):
    args = (gradtx.sgd(0.1),) if name == "mechanize" else ()
    with pytest.raises(gradtx.HyperparameterError, match=rf"gradtx\.{name}: "):
        getattr(gradtx, name)(*args, **kwargs)


class Mechanic:
    """Mechanic (Cutkosky et al., 2023, Algorithm 1) around a base reference.

    The base's (descent) updates accumulate in Δ = (x0 - x)/s_sum - u_base; with
    h = <g + wd s_sum |g|/(|x|+eps) x, (x0 - x)/s_sum>, each learner i (beta_i =
    1 - 0.1^i) updates m, v, r and s_i = (s_init/n m + max(r, 0)) / (sqrt(v) + eps);
    the new params are x0 - (sum_i s_i) Δ.
    """

    def __init__(self, base, weight_decay=1e-2, eps=1e-8, s_init=1e-6, num_betas=6):
        self.base, self.wd, self.eps, self.s_init = (
            base,
            hp(weight_decay),
            hp(eps),
            hp(s_init),
        )
        self.betas = np.asarray([hp(1 - 0.1**i) for i in range(1, num_betas + 1)])

    def init(self, params):
        z = np.zeros(len(self.betas))
        return {
            "base_optimizer_state": self.base.init(params),
            "count": 0,
            "r": S(z),
            "m": S(z),
            "v": S(z),
            "s": S(z + self.s_init),
            "x0": dict(params),
        }

    def update(self, grads, state, params=None):
        base_u, base_state = self.base.update(
            grads, state["base_optimizer_state"], params
        )
        eps, b, x0 = self.eps, self.betas, state["x0"]
        s_sum = float(np.sum(V(state["s"])))
        decay = (
            self.wd
            * s_sum
            * np.sqrt(_dot(grads, grads))
            / (np.sqrt(_dot(params, params)) + eps)
        )
        delta_prev = tmap(lambda x0, x: (x0 - x) / (s_sum + eps), x0, params)
        h = _dot(tmap(lambda g, x: g + decay * x, grads, params), delta_prev)
        m_old = V(state["m"])
        m = np.maximum(b * m_old, abs(h) + eps)
        v = b**2 * V(state["v"]) + h * h
        r = b * V(state["r"]) + np.clip(h, -m_old, m_old) * V(state["s"])
        s = (self.s_init / len(b) * m + np.maximum(r, 0)) / (np.sqrt(v) + eps)
        u = tmap(
            lambda x0, dp, ub, x: x0 - np.sum(s) * (dp - ub) - x,
            x0,
            delta_prev,
            base_u,
            params,
        )
        return u, {
            "base_optimizer_state": base_state,
            "count": increment(state["count"]),
            "r": S(r),
            "m": S(m),
            "v": S(v),
            "s": S(s),
            "x0": x0,
        }


MECHANIZE = [
    pytest.param({}, id="defaults"),
    pytest.param({"weight_decay": 0.0, "num_betas": 3, "s_init": 1e-4}, id="custom"),
]


@pytest.mark.parametrize("kwargs", MECHANIZE)
def test_mechanize_matches_float64_reference(kwargs, jit):
    tx = gradtx.mechanize(gradtx.adam(0.01), **kwargs)
    ref = Mechanic(adam_reference(0.01), **kwargs)
    step = jit(lambda p, s, g: tx.update(g, s, p))
    params = make_params()
    state, rparams = tx.init(params), to_f64(params)
    rstate, trajectory = ref.init(rparams), Trajectory()
    for g in make_grads(100 if jit is jax.jit else 10):
        updates, state = step(params, state, g)
        params = gradtx.apply_updates(params, updates)
        rupdates, rstate = ref.update(to_f64(g), rstate, rparams)
        rparams = tmap(lambda p, u: np.float64(np.float32(p + u)), rparams, rupdates)
        trajectory.add_tree("updates", updates, rupdates, RTOL)
        trajectory.add_tree("params", params, rparams, RTOL)
        trajectory.add_state(
            state.base_optimizer_state, rstate["base_optimizer_state"], RTOL
        )
        assert int(state.count) == rstate["count"]
        for field in ("r", "m", "v", "s", "x0"):
            expected = rstate[field]
            scale = max(float(np.max(np.abs(x))) for x in expected.values())
            trajectory.add_tree(field, getattr(state, field), expected, RTOL, scale)
    trajectory.check()


@pytest.mark.parametrize("kwargs", MECHANIZE)
def test_mechanize_matches_optax_step_by_step(kwargs, standard_promotion):
    # Mechanic's x0 - x cancels: a last-bit difference in the params grows to 1e-3
    # relative over a free run in either library (both match the float64 reference
    # run on the same float32 params). So optax gets gradtx's state and params each
    # step (the bitsandbytes re-sync method) and one step is compared at a time.
    ours = gradtx.mechanize(gradtx.adam(0.01), **kwargs)
    theirs = optax.contrib.mechanize(optax.adam(0.01), **kwargs)
    params = make_params()
    state = ours.init(params)
    treedef = jax.tree.structure(theirs.init(params))
    our_step, their_step = jax.jit(ours.update), jax.jit(theirs.update)
    trajectory = Trajectory()
    for g in make_grads(30):
        their_state = jax.tree.unflatten(treedef, jax.tree.leaves(state))
        ou, os = their_step(g, their_state, params)
        u, state = our_step(g, state, params)
        trajectory.add_tree("updates", u, jax.tree.map(np.asarray, ou), RTOL)
        _add_state_leaves(trajectory, state, os)
        params = gradtx.apply_updates(params, u)
    trajectory.check()


def test_mechanize_passes_extra_arguments_to_the_base_optimizer():
    base = gradtx.momo(learning_rate=0.1)
    tx = gradtx.mechanize(base)
    params = make_params()
    (g,) = make_grads(1)
    updates, state = tx.update(g, tx.init(params), params, value=jnp.float32(2.0))
    chex.assert_tree_all_finite((updates, state))
    assert int(state.base_optimizer_state.count) == 1
    with pytest.raises(gradtx.MissingValueError):
        tx.update(g, tx.init(params), params)


def test_mechanize_wraps_an_optax_transformation_without_extra_args(standard_promotion):
    tx = gradtx.mechanize(optax.sgd(0.1))
    params = make_params()
    (g,) = make_grads(1)
    updates, _ = tx.update(g, tx.init(params), params, foo=1)
    chex.assert_tree_all_finite(updates)
