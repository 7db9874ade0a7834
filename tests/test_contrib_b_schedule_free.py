# SPDX-License-Identifier: Apache-2.0
"""Schedule-free SGD/AdamW and the wrapper: float64 references, optax, eval params."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import adam
from _registry_base import lr_schedule, make_grads, make_params
from test_contrib_b_harness import (
    ScheduleFree,
    close,
    run_both,
    run_reference,
    schedule_free_adamw,
    schedule_free_sgd,
)

import gradtx

CONFIGS = {
    "sgd": ("schedule_free_sgd", {"learning_rate": 0.1}),
    "sgd-warmup-wd": (
        "schedule_free_sgd",
        {"learning_rate": 0.1, "warmup_steps": 4, "weight_decay": 0.1, "b1": 0.8},
    ),
    "adamw": ("schedule_free_adamw", {"learning_rate": 0.01}),
    "adamw-warmup-wd-power": (
        "schedule_free_adamw",
        {"learning_rate": 0.01, "warmup_steps": 3, "weight_decay": 0.1,
         "weight_lr_power": 1.0, "b2": 0.99},
    ),
}  # fmt: skip
REFS = {
    "schedule_free_sgd": schedule_free_sgd,
    "schedule_free_adamw": schedule_free_adamw,
}


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_schedule_free_matches_reference(cfg, jit):
    name, kw = cfg
    steps = 15 if jit is jax.jit else 4
    tx = getattr(gradtx, name)(**kw)
    run_reference(tx, REFS[name](**kw), make_params(), make_grads(steps), jit)


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_schedule_free_matches_optax(cfg, standard_promotion):
    name, kw = cfg
    otx = getattr(optax.contrib, name)(**kw)
    run_both(getattr(gradtx, name)(**kw), otx, make_params(), make_grads(10))


def test_schedule_free_wrapping_adam_with_schedule_matches_reference(jit):
    tx = gradtx.schedule_free(gradtx.adam(lr_schedule, b1=0.0), lr_schedule, b1=0.9)
    ref = ScheduleFree(adam(lr_schedule, b1=0.0), lr_schedule, b1=0.9)
    steps = 10 if jit is jax.jit else 3
    run_reference(tx, ref, make_params(), make_grads(steps), jit)


def test_schedule_free_wrapping_adam_matches_optax(standard_promotion):
    tx = gradtx.schedule_free(gradtx.adam(lr_schedule, b1=0.0), lr_schedule)
    otx = optax.contrib.schedule_free(optax.adam(lr_schedule, b1=0.0), lr_schedule)
    run_both(tx, otx, make_params(), make_grads(8))


def test_eval_params_match_optax_and_the_paper(standard_promotion):
    params, grads = make_params(), make_grads(6)
    tx = gradtx.schedule_free_adamw(0.01)
    otx = optax.contrib.schedule_free_adamw(0.01)
    s, os_, p, op = tx.init(params), otx.init(params), params, params
    for g in grads:
        u, s = tx.update(g, s, p)
        ou, os_ = otx.update(g, os_, op)
        p, op = gradtx.apply_updates(p, u), optax.apply_updates(op, ou)
    ours = gradtx.schedule_free_eval_params(s, p)
    close(
        ours,
        jax.tree.map(np.asarray, optax.contrib.schedule_free_eval_params(os_, op)),
        "x",
    )
    b1 = 0.9
    expect = {k: (np.float64(p[k]) - (1 - b1) * np.float64(s.z[k])) / b1 for k in p}
    close(ours, expect, "x from y and z")


def test_eval_params_find_the_state_inside_a_chain():
    tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.schedule_free_sgd(0.1))
    params = make_params()
    u, state = tx.update(make_grads(1)[0], tx.init(params), params)
    x = gradtx.schedule_free_eval_params(state, gradtx.apply_updates(params, u))
    assert jax.tree.structure(x) == jax.tree.structure(params)
    with pytest.raises(ValueError, match="exactly one ScheduleFreeState"):
        gradtx.schedule_free_eval_params((), params)


def test_bf16_params_keep_b1_in_float32():
    # optax stores b1 in the params' dtype: 0.9 becomes 0.8984375 in bfloat16.
    params = make_params(jnp.bfloat16)
    tx = gradtx.schedule_free_sgd(0.1, b1=0.9)
    state = tx.init(params)
    assert state.b1.dtype == jnp.float32
    assert float(state.b1) == np.float32(0.9)
    step = jax.jit(tx.update)
    for g in make_grads(3, jnp.bfloat16):
        u, state = step(g, state, params)
        assert {x.dtype for x in jax.tree.leaves(u)} == {jnp.dtype(jnp.bfloat16)}
        params = gradtx.apply_updates(params, u)
    chex.assert_tree_all_finite(state)


def test_warmup_from_zero_learning_rate_gives_zero_first_update():
    # The first averaging weight is 0/0 (lr 0 at the start of warmup): no NaN.
    tx = gradtx.schedule_free_sgd(0.1, warmup_steps=5)
    params = make_params()
    u, state = tx.update(make_grads(1)[0], tx.init(params), params)
    for leaf in jax.tree.leaves(u):
        np.testing.assert_array_equal(leaf, 0.0)
    chex.assert_tree_all_finite(state)


def test_state_dtype_stores_z():
    tx = gradtx.schedule_free_adamw(0.01, state_dtype=jnp.bfloat16)
    state = tx.init(make_params())
    assert {z.dtype for z in jax.tree.leaves(state.z)} == {jnp.dtype(jnp.bfloat16)}


@pytest.mark.parametrize(
    ("name", "kwargs", "arg"),
    [
        ("schedule_free_sgd", {"b1": 0.0}, "b1"),
        ("schedule_free_adamw", {"b2": 1.0}, "b2"),
        ("schedule_free_adamw", {"eps": -1.0}, "eps"),
        ("schedule_free_sgd", {"weight_lr_power": -1.0}, "weight_lr_power"),
        ("schedule_free_sgd", {"warmup_steps": -2}, "warmup_steps"),
        ("schedule_free_sgd", {"learning_rate": -0.1}, "learning_rate"),
        ("schedule_free_adamw", {"weight_decay": float("nan")}, "weight_decay"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(name, kwargs, arg):
    with pytest.raises(gradtx.HyperparameterError, match=rf"gradtx\.{name}: {arg} "):
        getattr(gradtx, name)(**kwargs)


def test_bad_state_dtype_is_a_type_error():
    with pytest.raises(TypeError, match=r"schedule_free_sgd: state_dtype"):
        gradtx.schedule_free_sgd(state_dtype=jnp.int32)
