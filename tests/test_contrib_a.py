# SPDX-License-Identifier: Apache-2.0
"""optax.contrib part one: what the registry's generic tests do not cover.

x64 (RELIABILITY.md B18), the AdEMAMix checkpoint round trip (B25), the places where
gradtx deliberately differs from optax (zero gradients in D-Adaptation and Prodigy,
MADGRAD at lr = 0, LDoG on scalar leaves), and construction-time checks of the
structured arguments (`betas`, `init_step`, `clip_value_fn`).
"""

from __future__ import annotations

import io

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _registry import make_grads, make_params

import gradtx

VALUE_FREE = {
    "acprop": lambda: gradtx.acprop(0.01, weight_decay=0.1),
    "ademamix": lambda: gradtx.ademamix(0.01, weight_decay=0.1),
    "simplified_ademamix": lambda: gradtx.simplified_ademamix(0.01, alpha=1.0),
    "adopt": lambda: gradtx.adopt(0.01, nesterov=True),
    "cocob": lambda: gradtx.cocob(weight_decay=0.1),
    "madgrad": lambda: gradtx.madgrad(0.01, weight_decay=0.1),
    "dadapt_adamw": lambda: gradtx.dadapt_adamw(weight_decay=0.1),
    "prodigy": lambda: gradtx.prodigy(weight_decay=0.1),
    "dog": lambda: gradtx.dog(weight_decay=0.1),
    "dowg": lambda: gradtx.dowg(weight_decay=0.1),
    "scale_by_distance_over_gradients": gradtx.scale_by_distance_over_gradients,
    "mechanize": lambda: gradtx.mechanize(gradtx.adam(0.01)),
}
WITH_VALUE = {
    "momo": lambda: gradtx.momo(adapt_lower_bound=True),
    "momo_adam": lambda: gradtx.momo_adam(adapt_lower_bound=True),
}


@pytest.mark.parametrize("name", [*VALUE_FREE, *WITH_VALUE])
def test_float32_params_stay_float32_under_x64(name, x64):
    # B18: with x64 on, hyperparameters are float64 Python numbers and the count
    # is int32; nothing may promote a float32 state leaf or update to float64.
    tx = {**VALUE_FREE, **WITH_VALUE}[name]()
    extra = {"value": jnp.float32(1.5)} if name in WITH_VALUE else {}
    params = make_params()
    state0 = tx.init(params)
    step = jax.jit(lambda p, s, g: tx.update(g, s, p, **extra))
    state = state0
    for g in make_grads(2):
        updates, state = step(params, state, g)
        params = gradtx.apply_updates(params, updates)
    assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
    dtypes = [x.dtype for x in jax.tree.leaves(state)]
    assert dtypes == [x.dtype for x in jax.tree.leaves(state0)]
    assert jnp.dtype(jnp.float64) not in dtypes
    chex.assert_tree_all_finite((updates, state))


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw", "dog", "momo"])
def test_float64_params_get_float64_scalars_under_x64(name, x64):
    tx = {**VALUE_FREE, **WITH_VALUE}[name]()
    params = jax.tree.map(lambda x: x.astype(jnp.float64), make_params())
    scalars = [x for x in jax.tree.leaves(tx.init(params)) if x.ndim == 0]
    assert {x.dtype for x in scalars} - {jnp.dtype(jnp.int32), jnp.dtype(bool)} == {
        jnp.dtype(jnp.float64)
    }


def _npz_round_trip(state, template):
    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(x) for x in jax.tree.leaves(state)])
    buffer.seek(0)
    with np.load(buffer) as data:
        loaded = [data[f"arr_{i}"] for i in range(len(data.files))]
    leaves = [
        jnp.asarray(x.view(t.dtype) if x.dtype != t.dtype else x)
        for x, t in zip(loaded, jax.tree.leaves(template), strict=True)
    ]
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


@pytest.mark.parametrize("mu_dtype", [None, jnp.bfloat16], ids=["f32", "bf16"])
def test_ademamix_state_round_trip_resumes_without_nan(mu_dtype):
    # B25 (bitsandbytes#1382): AdEMAMix NaN'd right after loading a state dict.
    tx = gradtx.ademamix(0.01, mu_dtype=mu_dtype, weight_decay=0.1)
    step = jax.jit(lambda p, s, g: tx.update(g, s, p))
    params = make_params()
    template = tx.init(params)
    grads = make_grads(20)
    state = template
    for g in grads[:10]:
        updates, state = step(params, state, g)
        params = gradtx.apply_updates(params, updates)
    restored = _npz_round_trip(state, template)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    params_a, params_b = params, params
    for g in grads[10:]:
        ua, state = step(params_a, state, g)
        ub, restored = step(params_b, restored, g)
        params_a = gradtx.apply_updates(params_a, ua)
        params_b = gradtx.apply_updates(params_b, ub)
        chex.assert_tree_all_finite((ub, restored))
    chex.assert_trees_all_equal(params_a, params_b)
    chex.assert_trees_all_equal(state, restored)
    assert jax.tree.leaves(restored[0].m1)[0].dtype == (mu_dtype or jnp.float32)


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_zero_gradients_keep_the_distance_estimate_finite(name, standard_promotion):
    # optax computes 0/0 for the new estimate while every gradient so far is zero
    # (a frozen or warm-up step); its estim_lr stays NaN forever. gradtx keeps d.
    params = make_params()
    zero = jax.tree.map(jnp.zeros_like, params)
    (g,) = make_grads(1)
    theirs = getattr(optax.contrib, name)()
    s = theirs.init(params)
    _, s = theirs.update(zero, s, params)
    _, s = theirs.update(g, s, params)
    assert not np.isfinite(float(s.estim_lr))
    ours = getattr(gradtx, name)()
    state = ours.init(params)
    u0, state = ours.update(zero, state, params)
    u1, state = ours.update(g, state, params)
    chex.assert_trees_all_equal(u0, zero)
    assert float(state.estim_lr) == pytest.approx(1e-6)
    chex.assert_tree_all_finite((u1, state))
    # After the zero step, the run is the one that started at the first real step.
    fresh = ours.init(params)
    fresh = fresh._replace(count=jnp.ones([], jnp.int32))
    expected, _ = ours.update(g, fresh, params)
    chex.assert_trees_all_close(u1, expected, rtol=1e-6)


def test_madgrad_zero_learning_rate_is_a_no_op(standard_promotion):
    params = make_params()
    ours, theirs = gradtx.madgrad(0.0), optax.contrib.madgrad(0.0)
    state, their_state = ours.init(params), theirs.init(params)
    for g in make_grads(3):
        u, state = ours.update(g, state, params)
        ou, their_state = theirs.update(g, their_state, params)
        chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, u))
    # optax still moves by eps-sized steps (its lr + eps), about 1e-5 here.
    assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(ou)) > 1e-7


def test_ldog_matches_optax_without_scalar_leaves(standard_promotion):
    params = {k: v for k, v in make_params().items() if v.ndim}
    grads = [{k: g[k] for k in params} for g in make_grads(20)]
    for kwargs in ({}, {"reps_rel": 1e-4, "global_scale": -1.0}):
        ours = gradtx.scale_by_distance_over_gradients(**kwargs)
        theirs = optax.scale_by_distance_over_gradients(**kwargs)
        p, s, os = params, ours.init(params), theirs.init(params)
        for g in grads:
            u, s = ours.update(g, s, p)
            with jax.numpy_rank_promotion("allow"):  # optax's (1,) * (4, 3)
                ou, os = theirs.update(g, os, p)
            chex.assert_trees_all_close(u, ou, rtol=1e-5, atol=1e-7)
            chex.assert_trees_all_close(tuple(s), tuple(os), rtol=1e-5, atol=1e-7)
            p = gradtx.apply_updates(p, u)


def test_ldog_keeps_the_shape_of_a_scalar_leaf(standard_promotion):
    params = {"s": jnp.asarray(0.5), "b": jnp.ones(3)}
    grads = {"s": jnp.asarray(2.0), "b": jnp.ones(3)}
    tx = gradtx.scale_by_distance_over_gradients()
    updates, state = tx.update(grads, tx.init(params), params)
    assert updates["s"].shape == ()
    assert state.grad_sum_of_squares["s"].shape == (1,)  # optax's state layout
    theirs = optax.scale_by_distance_over_gradients()
    with jax.numpy_rank_promotion("allow"):  # optax's (1,) * ()
        their_updates, _ = theirs.update(grads, theirs.init(params), params)
    assert their_updates["s"].shape == (1,)
    np.testing.assert_allclose(updates["s"], their_updates["s"][0], rtol=1e-6)


def test_adopt_default_clipping_is_optax_count_to_the_quarter(standard_promotion):
    # The default is a named function (optax's is a lambda, which cannot run on an
    # int32 count under strict promotion); both give count ** 0.25.
    params = make_params()
    ours, theirs = gradtx.scale_by_adopt(), optax.contrib.scale_by_adopt()
    s, os = ours.init(params), theirs.init(params)
    for g in make_grads(5):
        u, s = ours.update(g, s, params)
        ou, os = theirs.update(g, os, params)
        chex.assert_trees_all_close(u, ou, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: gradtx.prodigy(betas=(0.9,)), r"prodigy: betas must be a pair"),
        (lambda: gradtx.prodigy(betas=(0.9, 1.0)), r"prodigy: betas\[1\] must be"),
        (lambda: gradtx.dadapt_adamw(betas=(-0.1, 0.9)), r"dadapt_adamw: betas\[0\]"),
        (lambda: gradtx.dog(init_step=("nope", 1.0)), r"dog: init_step must be"),
        (lambda: gradtx.dog(init_step=("distance", -1.0)), r"dog: init_step\[1\]"),
        (lambda: gradtx.ademamix(0.1, b3=1.0), r"ademamix: b3 must be"),
        (lambda: gradtx.dowg(init_estim_sq_dist=0.0), r"dowg: init_estim_sq_dist"),
    ],
    ids=[
        "betas-length",
        "betas-b2",
        "betas-b1",
        "init_step-kind",
        "init_step-value",
        "b3",
        "dowg-init",
    ],
)
def test_structured_arguments_are_checked_at_construction(build, message):
    with pytest.raises(gradtx.HyperparameterError, match=message):
        build()


def test_clip_value_fn_must_be_callable():
    with pytest.raises(TypeError, match=r"gradtx\.scale_by_adopt: clip_value_fn"):
        gradtx.scale_by_adopt(clip_value_fn=0.5)


def test_ademamix_schedules_receive_the_count_before_the_increment():
    seen = []
    tx = gradtx.scale_by_ademamix(alpha=lambda c: seen.append(int(c)) or 1.0)
    params = make_params()
    state = tx.init(params)
    for g in make_grads(3):
        _, state = tx.update(g, state, params)
    assert seen == [0, 1, 2]


NAMES = [
    "acprop", "scale_by_acprop", "ademamix", "scale_by_ademamix",
    "simplified_ademamix", "scale_by_simplified_ademamix", "adopt", "scale_by_adopt",
    "cocob", "scale_by_cocob", "dadapt_adamw", "prodigy", "dog", "dowg", "madgrad",
    "scale_by_madgrad", "mechanize", "momo", "momo_adam", "COCOBState",
    "DAdaptAdamWState", "DoGState", "DoWGState", "MadgradState", "MechanicState",
    "MomoState", "MomoAdamState", "ProdigyState", "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_contrib_names_are_reachable_both_ways_with_optax_fields(name):
    assert getattr(gradtx.contrib, name) is getattr(gradtx, name)
    assert name in gradtx.contrib.__all__
    ours, theirs = getattr(gradtx, name), getattr(optax.contrib, name)
    if isinstance(ours, type):
        assert ours._fields == theirs._fields
