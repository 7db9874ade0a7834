# SPDX-License-Identifier: Apache-2.0
"""The geometry names the shared registry cannot hold (see NOT_IN_REGISTRY there).

apply_every (its count is a phase), add_noise / noisy_sgd (a PRNG key in the state),
the optimistic family (a bool flag in the state) and scale_by_param_block_norm
(unstable under 100 unit steps) get the registry's checks here: the float64
reference eager and under jit, optax parity, dtypes, retracing, eval_shape,
extra arguments, counters and construction-time validation.
"""

from __future__ import annotations

import warnings

import _reference_geometry as ref
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _registry_base import make_grads, make_params

import gradtx

KEY = jax.random.key(3)
CASES = {
    "apply_every-k1": ("apply_every", {}),
    "apply_every-k3": ("apply_every", {"k": 3}),
    "add_noise": ("add_noise", {"eta": 0.3, "gamma": 0.55, "key": KEY}),
    "add_noise-int_key": ("add_noise", {"eta": 0.01, "gamma": 1.0, "key": 7}),
    "noisy_sgd": ("noisy_sgd", {"learning_rate": 0.1, "key": KEY}),
    "scale_by_optimistic_gradient": ("scale_by_optimistic_gradient", {}),
    "scale_by_optimistic_gradient-ab": (
        "scale_by_optimistic_gradient",
        {"alpha": 0.5, "beta": 0.25},
    ),
    "optimistic_gradient_descent": (
        "optimistic_gradient_descent",
        {"learning_rate": 0.05, "alpha": 0.7, "beta": 0.4},
    ),
    "optimistic_adam_v2": ("optimistic_adam_v2", {"learning_rate": 0.01}),
    "optimistic_adam_v2-plain": (
        "optimistic_adam_v2",
        {"learning_rate": 0.01, "nesterov": False, "beta": 0.5},
    ),
    "optimistic_adam-deprecated": (
        "optimistic_adam",
        {"learning_rate": 0.02, "optimism": 0.01},
    ),
    "scale_by_param_block_norm": ("scale_by_param_block_norm", {}),
    "scale_by_param_block_norm-min": ("scale_by_param_block_norm", {"min_scale": 2.0}),
}
IDS = list(CASES)
RTOL = 1e-5


def _make(case, lib=gradtx):
    name, kwargs = CASES[case]
    with warnings.catch_warnings():  # optimistic_adam is deprecated in both
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(lib, name)(**kwargs)


def _step(tx):
    def step(params, state, grads, **extra):
        updates, state = tx.update(grads, state, params, **extra)
        return gradtx.apply_updates(params, updates), state, updates

    return step


def _f64(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _close(actual, expected, where):
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), expected, RTOL, RTOL * scale, err_msg=where
    )


def _compare_state(state, expected, where="state"):
    if isinstance(expected, tuple):
        for i, (s, e) in enumerate(zip(state, expected, strict=True)):
            _compare_state(s, e, f"{where}[{i}]")
        return
    assert set(state._fields) == set(expected), where
    for field, value in expected.items():
        got = getattr(state, field)
        if field == "count":
            assert got.dtype == jnp.int32, f"{where}.count"
            assert int(got) == value, f"{where}.count"
        elif field == "is_initial_step":
            assert bool(got) is value, f"{where}.{field}"
        elif field == "rng_key":
            chex.assert_trees_all_equal(
                jax.random.key_data(got), jax.random.key_data(value)
            )
        else:
            for k in value:
                _close(got[k], value[k], f"{where}.{field}[{k!r}]")


@pytest.mark.parametrize("case", IDS)
def test_matches_float64_reference(case, jit):
    n = 30 if jit is jax.jit else 6
    tx = _make(case)
    step = jit(_step(tx))
    name, kwargs = CASES[case]
    r = getattr(ref, name)(**kwargs)
    params = make_params()
    state, rparams = tx.init(params), _f64(params)
    rstate = r.init(rparams)
    for i, g in enumerate(make_grads(n)):
        params, state, updates = step(params, state, g)
        rupdates, rstate = r.update(_f64(g), rstate, rparams)
        rparams = {
            k: np.float32(rparams[k] + rupdates[k]).astype(np.float64) for k in rparams
        }
        for k in rupdates:
            _close(updates[k], rupdates[k], f"updates[{k!r}] at step {i}")
            _close(params[k], rparams[k], f"params[{k!r}] at step {i}")
        _compare_state(state, rstate, f"state at step {i}")


def _leaves(state):
    unwrap = lambda x: (
        jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    )
    return [unwrap(x) for x in jax.tree.leaves(state)]


@pytest.mark.parametrize("case", IDS)
def test_matches_optax(case, standard_promotion):
    ours, theirs = _make(case), _make(case, optax)
    params = make_params()
    s, os = ours.init(params), theirs.init(params)
    p, op = params, params
    for i, g in enumerate(make_grads(20)):
        u, s = ours.update(g, s, p)
        ou, os = theirs.update(g, os, op)
        p, op = gradtx.apply_updates(p, u), optax.apply_updates(op, ou)
        for k in g:
            _close(u[k], np.asarray(ou[k], np.float64), f"updates[{k!r}] step {i}")
            _close(p[k], np.asarray(op[k], np.float64), f"params[{k!r}] step {i}")
        ls, los = _leaves(s), _leaves(os)
        assert [x.dtype for x in ls] == [x.dtype for x in los]
        for j, (x, y) in enumerate(zip(ls, los, strict=True)):
            _close(x, np.asarray(y, np.float64), f"state leaf {j} step {i}")


def _avals(tree):
    return jax.tree.map(lambda x: (x.shape, x.dtype, getattr(x, "weak_type", 0)), tree)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("case", IDS)
def test_updates_keep_dtype_and_state_avals(case, dtype):
    tx = _make(case)
    traces = []

    def counted(*args):
        traces.append(None)
        return _step(tx)(*args)

    step = jax.jit(counted)
    params = make_params(dtype)
    state = tx.init(params)
    before = _avals(state)
    for g in make_grads(3, dtype):
        params, state, updates = step(params, state, g)
        assert all(u.dtype == jnp.dtype(dtype) for u in jax.tree.leaves(updates))
        assert _avals(state) == before
        chex.assert_tree_all_finite(updates)
    assert len(traces) == 1  # the second and third steps reuse the first trace


@pytest.mark.parametrize("case", IDS)
def test_init_under_eval_shape_and_extra_args_ignored(case):
    tx = _make(case)
    params = make_params()
    concrete = tx.init(params)
    abstract = jax.eval_shape(tx.init, params)
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
    (g,) = make_grads(1)
    plain = tx.update(g, concrete, params)
    extra = tx.update(g, concrete, params, foo=1, value=jnp.float32(2.0), grad=g)
    chex.assert_trees_all_equal(_leaves(plain), _leaves(extra))


@pytest.mark.parametrize("case", ["add_noise", "noisy_sgd"])
def test_noise_count_saturates_at_int32_max(case):
    tx = _make(case)
    params = make_params()
    state = tx.init(params)
    state = gradtx.tree.set(state, count=jnp.asarray(2**31 - 1, jnp.int32))
    for g in make_grads(2):
        updates, state = jax.jit(tx.update)(g, state, params)
        assert int(gradtx.tree.get(state, "count")) == 2**31 - 1
        chex.assert_tree_all_finite(updates)


def test_apply_every_count_stays_a_phase_and_traced_k_works():
    params = make_params()

    @jax.jit
    def run(k):
        tx = gradtx.apply_every(k)
        state = tx.init(params)
        outs = []
        for g in make_grads(5):
            u, state = tx.update(g, state, params)
            outs.append((u, state.count))
        return outs

    outs = run(jnp.int32(2))
    assert [int(c) for _, c in outs] == [1, 0, 1, 0, 1]
    g = make_grads(5)
    chex.assert_trees_all_close(
        outs[1][0], jax.tree.map(lambda a, b: a + b, g[0], g[1]), rtol=1e-6
    )
    assert all(float(jnp.max(jnp.abs(outs[i][0]["w"]))) == 0 for i in (0, 2, 4))


NAN, INF = float("nan"), float("inf")
NONNEG_BAD = [-1.0, NAN, INF]
BAD = [
    ("apply_every", {}, "k", [0, -2, 1.5, True, jnp.float32(2.0)]),
    ("add_noise", {"gamma": 0.5, "key": 0}, "eta", NONNEG_BAD),
    ("add_noise", {"eta": 0.5, "key": 0}, "gamma", NONNEG_BAD),
    ("noisy_sgd", {"key": 0}, "learning_rate", NONNEG_BAD),
    ("noisy_sgd", {"learning_rate": 0.1, "key": 0}, "eta", NONNEG_BAD),
    ("noisy_sgd", {"learning_rate": 0.1, "key": 0}, "gamma", NONNEG_BAD),
    ("scale_by_optimistic_gradient", {}, "alpha", [NAN, INF]),
    ("scale_by_optimistic_gradient", {}, "beta", [NAN, -INF]),
    ("optimistic_gradient_descent", {"learning_rate": 0.1}, "beta", [NAN]),
    ("optimistic_gradient_descent", {}, "learning_rate", NONNEG_BAD),
    ("optimistic_adam_v2", {"learning_rate": 0.1}, "b2", [1.0, -0.1, NAN]),
    ("optimistic_adam_v2", {"learning_rate": 0.1}, "alpha", [INF]),
    ("scale_by_param_block_norm", {}, "min_scale", NONNEG_BAD),
]


@pytest.mark.parametrize(
    ("name", "base", "arg", "value"),
    [
        pytest.param(n, b, a, v, id=f"{n}-{a}={v!r}")
        for n, b, a, values in BAD
        for v in values
    ],
)
def test_bad_concrete_value_raises(name, base, arg, value):
    with pytest.raises(gradtx.HyperparameterError) as info:
        getattr(gradtx, name)(**base, **{arg: value})
    message = str(info.value)
    assert f"gradtx.{name}:" in message
    assert f" {arg} " in message
    assert repr(value) in message


def test_add_noise_key_and_seed_rules():
    with pytest.raises(gradtx.HyperparameterError, match="seed"):
        gradtx.add_noise(0.1, 0.5, key=1, seed=2)
    with pytest.warns(UserWarning, match="no key"):
        tx = gradtx.add_noise(0.1, 0.5)
    with pytest.warns(DeprecationWarning, match="seed"):
        seeded = gradtx.add_noise(0.1, 0.5, seed=0)
    params = make_params()
    (g,) = make_grads(1)
    chex.assert_trees_all_equal(
        tx.update(g, tx.init(params))[0], seeded.update(g, seeded.init(params))[0]
    )


def test_optimistic_adam_warns_and_rejects_schedules():
    with pytest.warns(DeprecationWarning, match="optimistic_adam_v2"):
        gradtx.optimistic_adam(0.1)
    with (
        pytest.warns(DeprecationWarning, match="deprecated"),
        pytest.raises(gradtx.HyperparameterError, match="learning_rate"),
    ):
        gradtx.optimistic_adam(lambda count: 0.1)
