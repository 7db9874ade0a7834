# SPDX-License-Identifier: Apache-2.0
"""The adaptive-moment catalogue where gradtx differs from optax, or needs more than
the shared registry checks: float16 zero gradients (RELIABILITY.md B3), adadelta's
sign with `learning_rate=None`, Rprop's stale step, RAdam's rectifier accuracy,
Adafactor's decay offset and arguments, and convergence of every alias.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference_adaptive import ScaleByRadam
from _registry import make_grads, make_params, to_f64

import gradtx

F16_ZERO_CASES = {
    "scale_by_adadelta": lambda: gradtx.scale_by_adadelta(),
    "adadelta": lambda: gradtx.adadelta(),
    "scale_by_adan": lambda: gradtx.scale_by_adan(),
    "adan": lambda: gradtx.adan(0.1),
    "scale_by_novograd": lambda: gradtx.scale_by_novograd(),
    "novograd": lambda: gradtx.novograd(0.1),
    "adabelief": lambda: gradtx.adabelief(0.1),
    "radam": lambda: gradtx.radam(0.1),
    "adafactor": lambda: gradtx.adafactor(0.1, min_dim_size_to_factor=2),
    "sm3": lambda: gradtx.sm3(0.1),
    "rprop": lambda: gradtx.rprop(0.1),
}


def _run(tx, grads, params, steps):
    # One compilation instead of one per eager primitive (the slow part here).
    update, state = jax.jit(tx.update), tx.init(params)
    for _ in range(steps):
        updates, state = update(grads, state, params)
    return updates, state


@pytest.mark.parametrize("name", list(F16_ZERO_CASES))
def test_float16_zero_gradients_give_finite_zero_updates(name):
    # RELIABILITY.md B3: eps must not underflow to 0 in float16 (0/0 = NaN).
    params = make_params(jnp.float16)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, state = _run(F16_ZERO_CASES[name](), zeros, params, 3)
    chex.assert_tree_all_finite((updates, state))
    for u in jax.tree.leaves(updates):
        assert u.dtype == jnp.float16
        np.testing.assert_array_equal(u, np.zeros_like(u))


@pytest.mark.parametrize("name", ["adan", "novograd", "adabelief", "adafactor"])
def test_optax_gives_nan_on_float16_zero_gradients(name, standard_promotion):
    # The bug gradtx fixes (optax#1789): the same run with optax is NaN.
    params = make_params(jnp.float16)
    zeros = jax.tree.map(jnp.zeros_like, params)
    tx = getattr(optax, name)(0.1)
    updates, _ = _run(tx, zeros, params, 2)
    assert any(bool(jnp.isnan(u).any()) for u in jax.tree.leaves(updates))


def test_yogi_float16_zero_gradients_are_finite():
    # Yogi starts m at 1e-6, so its zero-gradient step is small but not zero.
    params = make_params(jnp.float16)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, state = _run(gradtx.yogi(0.1), zeros, params, 3)
    chex.assert_tree_all_finite((updates, state))


# --- adadelta and learning_rate=None ---


def test_adadelta_without_learning_rate_descends():
    params, (g,) = make_params(), make_grads(1)
    block, _ = gradtx.scale_by_adadelta().update(
        g, gradtx.scale_by_adadelta().init(params)
    )
    ours, _ = gradtx.adadelta().update(g, gradtx.adadelta().init(params), params)
    # A learning rate of 1, negated: every update points against its gradient.
    chex.assert_trees_all_close(ours, jax.tree.map(jnp.negative, block), rtol=0)
    for u, gl in zip(jax.tree.leaves(ours), jax.tree.leaves(g), strict=True):
        assert bool(jnp.all(u * gl <= 0))


def test_optax_adadelta_without_learning_rate_ascends(standard_promotion):
    params, (g,) = make_params(), make_grads(1)
    theirs, _ = optax.adadelta().update(g, optax.adadelta().init(params), params)
    for u, gl in zip(jax.tree.leaves(theirs), jax.tree.leaves(g), strict=True):
        assert bool(jnp.all(u * gl >= 0))


def test_adadelta_without_learning_rate_lowers_a_quadratic():
    params = {"x": jnp.array([1.0, -2.0, 3.0])}
    loss = lambda p: jnp.sum(p["x"] ** 2)
    tx = gradtx.adadelta()
    state = tx.init(params)
    for _ in range(20):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = gradtx.apply_updates(params, updates)
    assert float(loss(params)) < 14.0 * 0.999


# --- Rprop: this step's update, not the previous one (optax PR #1725) ---


def test_rprop_follows_the_paper_step_by_step():
    tx = gradtx.scale_by_rprop(0.1, eta_minus=0.5, eta_plus=1.2)
    state = tx.init(jnp.zeros(1))
    got = []
    for g in [1.0, 1.0, 1.0, -1.0, 1.0]:
        u, state = tx.update(jnp.array([g]), state)
        got.append(float(u[0]))
    # Grows while the sign holds, no step on a sign change, then the halved step.
    np.testing.assert_allclose(got, [0.1, 0.12, 0.144, 0.0, 0.072], rtol=1e-6)


def test_rprop_returns_the_step_optax_stores_but_returns_late(standard_promotion):
    ours, theirs = gradtx.rprop(0.01), optax.rprop(0.01)
    params = make_params()
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    previous = None
    for g in make_grads(20):
        u_ours, s_ours = ours.update(g, s_ours, params)
        u_theirs, s_theirs = theirs.update(g, s_theirs, params)
        # Same step sizes, and optax's stored step is the one gradtx returns.
        chex.assert_trees_all_close(tuple(s_ours[0]), tuple(s_theirs[0]), rtol=1e-6)
        stored = jax.tree.map(jnp.negative, s_theirs[0].prev_updates)
        chex.assert_trees_all_close(u_ours, stored, rtol=1e-6)
        if previous is None:  # optax's first step does not move
            assert all(not bool(u.any()) for u in jax.tree.leaves(u_theirs))
        else:  # then it returns last step's update (0 after a sign change)
            late = jax.tree.map(
                lambda p, u: jnp.where(u == 0, 0, p), previous, u_theirs
            )
            chex.assert_trees_all_close(u_theirs, late, rtol=1e-6)
            assert any(bool((u != 0).any()) for u in jax.tree.leaves(u_theirs))
        previous = u_ours


def test_rprop_rejects_max_step_below_min_step():
    with pytest.raises(gradtx.HyperparameterError, match=r"gradtx\.rprop: max_step"):
        gradtx.rprop(0.1, min_step_size=0.5, max_step_size=0.1)


# --- RAdam's rectifier ---


def _radam_updates(make, steps):
    params = make_params()
    tx = make()
    update, state = jax.jit(tx.update), tx.init(params)
    out = []
    for g in make_grads(steps):
        u, state = update(g, state, params)
        out.append(u["w"])
    return np.stack(out)


def test_radam_rectifier_is_float32_accurate_where_optax_is_not(standard_promotion):
    ref = ScaleByRadam()
    rstate = ref.init(to_f64(make_params()))
    expected = []
    for g in make_grads(12):
        u, rstate = ref.update(to_f64(g), rstate)
        expected.append(u["w"])
    expected = np.stack(expected)
    ours = _radam_updates(gradtx.scale_by_radam, 12)
    theirs = _radam_updates(optax.scale_by_radam, 12)
    # Per step, relative to the step's largest update (the registry's convention).
    scale = np.max(np.abs(expected), axis=(1, 2))
    err = lambda x: np.max(np.max(np.abs(x - expected), axis=(1, 2)) / scale)
    assert err(ours) < 1e-5
    assert err(theirs) > 1e-4  # optax's float32 cancellation (step 6, rho_t ~ 6)
    np.testing.assert_allclose(ours, theirs, rtol=3e-2)  # same algorithm, 1.2% off


# --- Adafactor ---


def test_adafactor_decay_offset_does_not_poison_the_state(standard_promotion):
    # optax PR #1791: a local step below 0 gives a NaN decay rate in optax.
    params = make_params()
    grads = make_grads(3)
    ours, _ = _run(gradtx.adafactor(0.01, decay_offset=5), grads[0], params, 3)
    chex.assert_tree_all_finite(ours)
    theirs, _ = _run(optax.adafactor(0.01, decay_offset=5), grads[0], params, 3)
    assert any(bool(jnp.isnan(u).any()) for u in jax.tree.leaves(theirs))


def test_adafactor_decay_offset_restarts_the_schedule():
    # With the count restored to the offset, the run equals a fresh one.
    params, grads = make_params(), make_grads(4)
    fresh = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2)
    tuned = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2, step_offset=7)
    s_fresh = fresh.init(params)
    s_tuned = tuned.init(params)._replace(count=jnp.asarray(7, jnp.int32))
    for g in grads:
        u_fresh, s_fresh = fresh.update(g, s_fresh, params)
        u_tuned, s_tuned = tuned.update(g, s_tuned, params)
        chex.assert_trees_all_close(u_fresh, u_tuned, rtol=0)


def test_factored_rms_default_decay_matches_optax(standard_promotion):
    ref = optax.scale_by_factored_rms.__defaults__[-1]
    mine = gradtx.scale_by_factored_rms.__defaults__[-1]
    assert mine.__name__ == ref.__name__
    for step in range(0, 50, 7):
        for rate in (0.8, 0.5):
            np.testing.assert_allclose(
                mine(jnp.int32(step), rate), ref(jnp.int32(step), rate), rtol=1e-7
            )


def test_factored_rms_uses_a_custom_decay_rate_fn():
    params, (g,) = make_params(), make_grads(1)
    seen = []

    def constant(step, rate):
        seen.append(rate)
        return jnp.float32(0.5)

    tx = gradtx.scale_by_factored_rms(decay_rate=0.3, decay_rate_fn=constant)
    state = tx.init(params)
    _, state = tx.update(g, state, params)
    _, state = tx.update(g, state, params)
    assert seen == [0.3, 0.3]
    # v = 0.5 * (0.5 * g²) + 0.5 * g² (eps 1e-30 is below float32's resolution here)
    np.testing.assert_allclose(state.v["b"], 0.75 * np.square(g["b"]), rtol=1e-6)


def test_factored_rms_state_layout_matches_optax(standard_promotion):
    params = make_params()
    for kwargs in ({}, {"min_dim_size_to_factor": 3}):
        ours = gradtx.scale_by_factored_rms(**kwargs).init(params)
        theirs = optax.scale_by_factored_rms(**kwargs).init(params)
        assert type(ours).__name__ == type(theirs).__name__
        assert ours._fields == theirs._fields
        layout = lambda s: jax.tree.map(lambda x: (x.shape, x.dtype), tuple(s))
        assert layout(ours) == layout(theirs)


@pytest.mark.parametrize("value", [-1, 1.5, True, "8"])
def test_min_dim_size_to_factor_must_be_a_non_negative_int(value):
    for fn in (gradtx.adafactor, gradtx.scale_by_factored_rms):
        with pytest.raises(gradtx.HyperparameterError, match="min_dim_size_to_factor"):
            fn(min_dim_size_to_factor=value)


def test_adafactor_names_its_own_arguments_in_errors():
    cases = {
        "clipping_threshold": -1.0,
        "decay_offset": -1.0,
        "eps": -1.0,
        "weight_decay_rate": -1.0,
        "momentum": 1.0,
    }
    for arg, value in cases.items():
        with pytest.raises(gradtx.HyperparameterError, match=rf"adafactor: {arg} "):
            gradtx.adafactor(**{arg: value})


# --- novograd's params ---


def test_novograd_needs_params_only_with_weight_decay():
    (g,) = make_grads(1)
    tx = gradtx.scale_by_novograd()
    u, _ = tx.update(g, tx.init(make_params()))
    chex.assert_tree_all_finite(u)
    decayed = gradtx.scale_by_novograd(weight_decay=0.1)
    with pytest.raises(gradtx.MissingParamsError):
        decayed.update(g, decayed.init(make_params()))


# --- every alias descends on a quadratic ---

ALIASES = {
    "adadelta": lambda: gradtx.adadelta(1.0, eps=0.1),
    "adabelief": lambda: gradtx.adabelief(0.1),
    "adafactor": lambda: gradtx.adafactor(0.1, min_dim_size_to_factor=2),
    "adan": lambda: gradtx.adan(0.1),
    "novograd": lambda: gradtx.novograd(0.1),
    "radam": lambda: gradtx.radam(0.1),
    "rprop": lambda: gradtx.rprop(0.1),
    "sm3": lambda: gradtx.sm3(0.1),
    "yogi": lambda: gradtx.yogi(0.1),
}


@pytest.mark.parametrize("name", list(ALIASES))
def test_alias_lowers_a_quadratic(name):
    params = make_params()
    loss = lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
    tx = ALIASES[name]()
    state = tx.init(params)
    start = float(loss(params))

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return gradtx.apply_updates(params, updates), state

    for _ in range(100):
        params, state = step(params, state)
    assert float(loss(params)) < 0.5 * start


# --- Adan's count is named `t` (optax): it saturates like every count ---


def test_adan_step_count_saturates_at_int32_max():
    tx = gradtx.scale_by_adan()
    params = make_params()
    state = tx.init(params)._replace(t=jnp.asarray(2**31 - 1, jnp.int32))
    for g in make_grads(2):
        updates, state = tx.update(g, state)
        assert int(state.t) == 2**31 - 1
        chex.assert_tree_all_finite(updates)


# --- each alias is exactly its chain of public blocks ---

CHAINS = {
    "adadelta": (
        lambda: gradtx.adadelta(0.5, rho=0.8, weight_decay=0.1),
        lambda: gradtx.chain(
            gradtx.add_decayed_weights(0.1),
            gradtx.scale_by_adadelta(rho=0.8),
            gradtx.scale_by_learning_rate(0.5),
        ),
    ),
    "adafactor": (
        lambda: gradtx.adafactor(
            0.1, min_dim_size_to_factor=2, momentum=0.5, weight_decay_rate=0.1
        ),
        lambda: gradtx.chain(
            gradtx.scale_by_factored_rms(min_dim_size_to_factor=2),
            gradtx.clip_by_block_rms(1.0),
            gradtx.scale_by_learning_rate(0.1, flip_sign=False),
            gradtx.scale_by_param_block_rms(),
            gradtx.ema(0.5, debias=False, accumulator_dtype=jnp.float32),
            gradtx.add_decayed_weights(0.1),
            gradtx.scale(-1.0),
        ),
    ),
    "adan": (
        lambda: gradtx.adan(0.1, weight_decay=0.1),
        lambda: gradtx.chain(
            gradtx.scale_by_adan(eps_root=1e-8),
            gradtx.add_decayed_weights(0.1),
            gradtx.scale_by_learning_rate(0.1),
        ),
    ),
    "rprop": (
        lambda: gradtx.rprop(0.1),
        lambda: gradtx.chain(gradtx.scale_by_rprop(0.1), gradtx.scale(-1.0)),
    ),
    "sm3": (
        lambda: gradtx.sm3(0.1, momentum=0.5),
        lambda: gradtx.chain(
            gradtx.scale_by_sm3(b1=0.5), gradtx.scale_by_learning_rate(0.1)
        ),
    ),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_alias_equals_its_chain(name):
    alias, chain = (make() for make in CHAINS[name])
    params = make_params()
    s_alias, s_chain = alias.init(params), chain.init(params)
    for g in make_grads(3):
        u_alias, s_alias = alias.update(g, s_alias, params)
        u_chain, s_chain = chain.update(g, s_chain, params)
        chex.assert_trees_all_equal(u_alias, u_chain)
        chex.assert_trees_all_equal(s_alias, s_chain)
