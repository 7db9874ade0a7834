# SPDX-License-Identifier: Apache-2.0
"""Regression tests for optax bugs B1-B4 and B6 of RELIABILITY.md, plus lr=None.

optax's behaviour is recorded (`record_property`) but never asserted, so these tests
keep passing when optax fixes its side; only gradtx is held to the required result.
"""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _registry import SHAPES, make_grads, make_params

import gradtx

LOW = ["float16", "bfloat16"]

# B1 (optax#1754), B2 (optax#1784), B3 (optax#1789, PR #1768): eps=1e-8 underflows
# to 0 in float16, so an exactly-zero gradient gives 0/0.
ZERO_GRAD_CASES = {
    "adam": ("adam", {"learning_rate": 1e-3}),
    "adamw": ("adamw", {"learning_rate": 1e-3, "weight_decay": 0.0}),
    "nadam": ("nadam", {"learning_rate": 1e-3}),
    "amsgrad": ("amsgrad", {"learning_rate": 1e-3}),
    "rmsprop": ("rmsprop", {"learning_rate": 1e-3}),
    "rmsprop-centered": ("rmsprop", {"learning_rate": 1e-3, "centered": True}),
    "scale_by_adam": ("scale_by_adam", {}),
    "scale_by_rms": ("scale_by_rms", {}),
    "scale_by_rms-eps_outside_sqrt": ("scale_by_rms", {"eps_in_sqrt": False}),
    "scale_by_stddev": ("scale_by_stddev", {}),
    "scale_by_stddev-eps_outside_sqrt": ("scale_by_stddev", {"eps_in_sqrt": False}),
    "adamax": ("adamax", {"learning_rate": 1e-3}),
    "scale_by_adamax": ("scale_by_adamax", {}),
}


def _zeros(dtype):
    return {k: jnp.zeros(s, dtype) for k, s in SHAPES.items()}


def _optax_finite(name, kwargs, params, grads):
    old = jax.config.jax_numpy_dtype_promotion
    jax.config.update("jax_numpy_dtype_promotion", "standard")
    try:
        tx = getattr(optax, name)(**kwargs)
        updates, _ = tx.update(grads, tx.init(params), params)
        return bool(all(jnp.all(jnp.isfinite(u)) for u in jax.tree.leaves(updates)))
    finally:
        jax.config.update("jax_numpy_dtype_promotion", old)


def _gradtx_zero_updates(tx, params, grads, update, steps):
    state = tx.init(params)
    for _ in range(steps):
        updates, state = update(grads, state, params)
        chex.assert_tree_all_finite(updates)
        chex.assert_tree_all_finite(state)
        for u in jax.tree.leaves(updates):
            assert u.dtype == grads["w"].dtype
            np.testing.assert_array_equal(np.asarray(u, np.float32), 0.0)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("case", list(ZERO_GRAD_CASES))
def test_all_zero_low_precision_grads_give_exactly_zero_updates(case, dtype, jit):
    name, kwargs = ZERO_GRAD_CASES[case]
    tx = getattr(gradtx, name)(**kwargs)
    _gradtx_zero_updates(tx, make_params(dtype), _zeros(dtype), jit(tx.update), 3)


def test_zero_grad_cases_where_optax_gives_nan(record_property):
    # Records which float16 cases optax still gets wrong (all of them in optax
    # 0.2.8); only gradtx's side is asserted, so an optax fix does not break this.
    optax_nan = []
    for case, (name, kwargs) in ZERO_GRAD_CASES.items():
        for dtype in ["float16"]:  # optax is fine in bf16, whose range is f32's
            params, grads = make_params(dtype), _zeros(dtype)
            if not _optax_finite(name, kwargs, params, grads):
                optax_nan.append(f"{case}-{dtype}")
                tx = getattr(gradtx, name)(**kwargs)
                _gradtx_zero_updates(tx, params, grads, tx.update, 1)
    record_property("optax_nan_cases", optax_nan)


def test_zero_grads_after_nonzero_steps_stay_finite_in_float16():
    # A frozen layer: real gradients first, then exact zeros; mu decays, nu stays
    # positive, so the update must be finite (and not NaN from a 0/0).
    tx = gradtx.adam(1e-3)
    params = make_params(jnp.float16)
    state = tx.init(params)
    for g in [*make_grads(3, jnp.float16), *[_zeros(jnp.float16)] * 3]:
        updates, state = tx.update(g, state, params)
        chex.assert_tree_all_finite(updates)


# B4 (optax PR#1752): norm == max_norm == 0 took the clipping branch: 0/0 * 0.
@pytest.mark.parametrize("dtype", ["float32", *LOW])
def test_clip_by_global_norm_zero_on_zeros_gives_zeros(dtype, jit, record_property):
    grads = _zeros(dtype)
    optax_finite = _optax_finite("clip_by_global_norm", {"max_norm": 0.0}, None, grads)
    record_property("optax_finite", optax_finite)
    tx = gradtx.clip_by_global_norm(0.0)
    updates, _ = jit(tx.update)(grads, tx.init(grads))
    for u in jax.tree.leaves(updates):
        assert u.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(u, np.float32), 0.0)


def test_clip_by_global_norm_zero_on_nonzero_grads_gives_zeros():
    tx = gradtx.clip_by_global_norm(0.0)
    updates, _ = tx.update(make_grads(1)[0], tx.init(None))
    for u in jax.tree.leaves(updates):
        np.testing.assert_array_equal(u, 0.0)


@pytest.mark.parametrize("max_norm", [0.0, 1.0])
def test_gradient_through_clip_by_global_norm_at_zero_is_finite(max_norm):
    tx = gradtx.clip_by_global_norm(max_norm)
    weights = make_params()

    def loss(g):
        clipped, _ = tx.update(g, tx.init(g))
        return sum(jnp.sum(clipped[k] * weights[k]) for k in weights)

    grad = jax.grad(loss)(_zeros(jnp.float32))
    chex.assert_tree_all_finite(grad)
    if max_norm > 0:  # inside the ball the clip is the identity: d/dg = weights
        chex.assert_trees_all_close(grad, weights)


def test_gradient_of_global_norm_at_zero_is_finite():
    grad = jax.grad(gradtx.global_norm)(_zeros(jnp.float32))
    chex.assert_tree_all_finite(grad)


# B6 (optax#1414): hyperparameters must not take the params' dtype; in bf16,
# b2=0.999 rounds to 1.0 and the bias correction 1 - b2**t to 0.
def test_adamw_bf16_params_match_float32_run_per_step():
    tx = gradtx.adamw(0.1, b2=0.999, weight_decay=0.1)
    step = jax.jit(tx.update)
    p32 = make_params()
    s32, s16 = (
        tx.init(p32),
        tx.init(jax.tree.map(lambda x: x.astype(jnp.bfloat16), p32)),
    )
    for g in make_grads(20):
        p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), p32)  # re-sync params
        g16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), g)
        u16, s16 = step(g16, s16, p16)
        u32, s32 = step(g, s32, p32)
        chex.assert_tree_all_finite(u16)
        assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(u16))
        # PyTorch's bf16 rtol and bitsandbytes' bf16 atol (RELIABILITY.md).
        chex.assert_trees_all_close(u16, u32, rtol=1.6e-2, atol=1e-3)
        new16 = gradtx.apply_updates(p16, u16)
        p32 = gradtx.apply_updates(p32, u32)
        chex.assert_trees_all_close(new16, p32, rtol=1.6e-2, atol=1e-3)


def test_bf16_array_hyperparameters_are_computed_in_float32():
    # The same bf16-representable values, given as traced bf16 arrays or as Python
    # floats, must give the same result: gradtx upcasts hyperparameters to float32,
    # so nothing (1 - b1**t, eps, lr * update) is computed in bfloat16.
    values = {
        "learning_rate": 0.1,
        "b1": 0.9,
        "b2": 0.996,
        "eps": 1e-3,
        "weight_decay": 0.1,
    }
    bf16 = {k: jnp.asarray(v, jnp.bfloat16) for k, v in values.items()}
    as_float = {k: float(v) for k, v in bf16.items()}
    assert as_float["b2"] < 1.0
    params = make_params()
    grads = make_grads(5)

    @jax.jit
    def run(hparams):
        tx = gradtx.adamw(**hparams)
        p, state, out = params, tx.init(params), []
        for g in grads:
            u, state = tx.update(g, state, p)
            p = gradtx.apply_updates(p, u)
            out.append(u)
        return out, state

    traced, state = run(bf16)
    plain, _ = run(as_float)
    chex.assert_trees_all_close(traced, plain, rtol=1e-6, atol=1e-7)
    assert all(x.dtype != jnp.bfloat16 for x in jax.tree.leaves(state))


def test_adam_with_bf16_params_and_default_b2_has_finite_bias_correction():
    tx = gradtx.adam(1e-3)  # b2 = 0.999 would be exactly 1.0 in bfloat16
    params = make_params(jnp.bfloat16)
    updates, _ = tx.update(make_grads(1, jnp.bfloat16)[0], tx.init(params), params)
    chex.assert_tree_all_finite(updates)
    # Step 1 of Adam is lr * g / |g| (eps is negligible): exactly -lr in magnitude.
    for u in jax.tree.leaves(updates):
        np.testing.assert_allclose(np.abs(np.asarray(u, np.float32)), 1e-3, rtol=8e-3)


# gradtx deliberately differs from optax: learning_rate=None still descends.
def test_scale_by_learning_rate_none_flips_the_sign(record_property):
    g = make_grads(1)[0]
    tx = gradtx.scale_by_learning_rate(None)
    updates, _ = tx.update(g, tx.init(g))
    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.negative, g))
    theirs = optax.scale_by_learning_rate(None)
    record_property(
        "optax_ascends", bool(jnp.all(theirs.update(g, None)[0]["w"] == g["w"]))
    )


@pytest.mark.parametrize(
    "tx",
    [
        gradtx.sgd(None),
        gradtx.chain(gradtx.scale(0.3), gradtx.scale_by_learning_rate(None)),
        gradtx.chain(
            gradtx.scale_by_sign(),
            gradtx.scale(0.05),
            gradtx.scale_by_learning_rate(None),
        ),
    ],
    ids=["sgd", "scaled", "sign"],
)
def test_learning_rate_none_descends_on_a_quadratic(tx):
    loss = lambda p: 0.25 * sum(jnp.sum(x * x) for x in jax.tree.leaves(p))
    params = make_params()
    state = tx.init(params)
    losses = [float(loss(params))]
    for _ in range(10):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = gradtx.apply_updates(params, updates)
        losses.append(float(loss(params)))
    assert all(b < a for a, b in itertools.pairwise(losses))


@pytest.mark.parametrize(
    "name", ["scale_by_adam", "scale_by_amsgrad", "scale_by_rms", "scale_by_rss"]
)
def test_float16_params_small_grads_keep_squared_state_in_range(name):
    # float16 cannot hold 0.001 * g**2 for |g| < 5e-3; a flushed nu made Adam's
    # update m / eps (inf). Squared-gradient state defaults to float32 for f16.
    tx = getattr(gradtx, name)()
    params = jnp.zeros(3, jnp.float16)
    grads = jnp.asarray([2.3e-6, 6e-5, 1e-3], jnp.float16)
    state = tx.init(params)
    for _ in range(3):
        updates, state = jax.jit(tx.update)(grads, state)
    assert updates.dtype == jnp.float16
    squared = [
        x for x in jax.tree.leaves(state) if x.shape == (3,) and x.dtype != params.dtype
    ]
    assert squared, "no float32 squared-gradient state"
    assert bool(jnp.all(jnp.isfinite(updates)))
    # Each update is a normalised step of order 1 (sign of g), never m / eps.
    assert float(jnp.max(jnp.abs(updates.astype(jnp.float32)))) < 10.0
