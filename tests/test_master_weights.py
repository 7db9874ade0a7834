# SPDX-License-Identifier: Apache-2.0
"""`master_weights`: float32 copies of low-precision params (issue #5, part 3)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import adamw as adamw_reference
from _registry import make_grads, make_params, to_f64

import gradtx

BF16, F16 = jnp.bfloat16, jnp.float16


def _run(tx, params, grads, jit):
    """Steps `tx` over `grads`; returns the params and state after each step."""
    update = jit(tx.update)
    state, out = tx.init(params), []
    for g in grads:
        updates, state = update(g, state, params)
        params = gradtx.apply_updates(params, updates)
        out.append((params, state))
    return out


def _cast(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype), tree)


def _assert_params_are_rounded_master(params, state):
    for p, m in zip(
        jax.tree.leaves(params), jax.tree.leaves(state.master), strict=True
    ):
        assert m.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(m.astype(p.dtype)), np.asarray(p))


@pytest.mark.parametrize(
    ("dtype", "tiny"), [(BF16, 2.0**-12), (F16, 2.0**-14)], ids=["bf16", "f16"]
)
def test_master_weights_thousand_tiny_updates_accumulate(dtype, tiny):
    # Below 1.0 an ulp is 2**-8 in bf16 and 2**-11 in f16; `tiny` is under half
    # of it, so round-to-nearest drops every single update from the param. (Jitted
    # only: 1000 eager steps take seconds; the other tests run eagerly too.)
    jit = jax.jit
    params = {"w": jnp.ones(8, dtype)}
    grads = [{"w": jnp.full(8, tiny, dtype)}] * 1000
    step = tiny
    plain = _run(gradtx.sgd(1.0), params, grads, jit)[-1][0]
    np.testing.assert_array_equal(np.asarray(plain["w"], np.float32), 1.0)
    last_params, last_state = _run(
        gradtx.master_weights(gradtx.sgd(1.0)), params, grads, jit
    )[-1]
    expected = 1.0 - 1000 * step  # exact in float32
    np.testing.assert_array_equal(np.asarray(last_state.master["w"]), expected)
    np.testing.assert_array_equal(
        np.asarray(last_params["w"]), np.asarray(jnp.full(8, expected).astype(dtype))
    )


def test_master_weights_params_always_equal_the_rounded_master(jit):
    # Params near zero and large updates, so elements cross zero and change binade:
    # the emitted update must still land exactly on round(master).
    params = _cast(make_params(), BF16)
    grads = make_grads(60 if jit is jax.jit else 15, BF16)
    tx = gradtx.master_weights(gradtx.adamw(0.3, weight_decay=0.1))
    for p, s in _run(tx, params, grads, jit):
        _assert_params_are_rounded_master(p, s)


def test_master_weights_master_copy_follows_the_float64_reference(jit):
    # The master copy is a float32 AdamW run: check it against the float64
    # reference (params atol 1e-5 of max |param|, like the conformance tests).
    params = _cast(make_params(), BF16)
    grads = make_grads(30, BF16)
    tx = gradtx.master_weights(gradtx.adamw(0.01, weight_decay=0.1))
    ref = adamw_reference(0.01, weight_decay=0.1)
    ref_params = to_f64(params)
    ref_state = ref.init(ref_params)
    for (p, s), g in zip(_run(tx, params, grads, jit), grads, strict=True):
        u, ref_state = ref.update(to_f64(g), ref_state, ref_params)
        ref_params = {k: ref_params[k] + u[k] for k in u}
        for k, v in ref_params.items():
            scale = max(1.0, float(np.abs(v).max()))
            np.testing.assert_allclose(s.master[k], v, rtol=1e-5, atol=1e-5 * scale)
        _assert_params_are_rounded_master(p, s)


def test_master_weights_passes_float32_params_through_bitwise(jit):
    params = make_params()
    grads = make_grads(10)
    plain = _run(gradtx.adamw(0.01, weight_decay=0.1), params, grads, jit)
    tx = gradtx.master_weights(gradtx.adamw(0.01, weight_decay=0.1))
    wrapped = _run(tx, params, grads, jit)
    assert jax.tree.leaves(wrapped[0][1].master) == []  # no copies at all
    for (p1, s1), (p2, s2) in zip(plain, wrapped, strict=True):
        chex.assert_trees_all_equal(p1, p2)
        chex.assert_trees_all_equal(s1, s2.inner_state)


def test_master_weights_mixed_tree_copies_only_the_narrow_leaves(jit):
    params = make_params()
    params["w"] = params["w"].astype(BF16)
    grads = [dict(g, w=g["w"].astype(BF16)) for g in make_grads(5)]
    tx = gradtx.master_weights(gradtx.adam(0.01))
    state = tx.init(params)
    assert state.master["w"].dtype == jnp.float32
    assert state.master["b"] is None
    assert state.master["s"] is None
    out = _run(tx, params, grads, jit)
    p, s = out[-1]
    assert {k: v.dtype for k, v in p.items()} == {
        "w": BF16,
        "b": jnp.float32,
        "s": jnp.float32,
    }
    np.testing.assert_array_equal(
        np.asarray(s.master["w"].astype(BF16)), np.asarray(p["w"])
    )
    # The float32 leaves follow plain Adam exactly.
    f32 = _run(gradtx.adam(0.01), make_params(), make_grads(5), jit)[-1][0]
    chex.assert_trees_all_equal(p["b"], f32["b"])


def test_master_weights_inner_state_is_float32_for_bf16_params():
    tx = gradtx.master_weights(gradtx.adam(0.01))
    state = tx.init(_cast(make_params(), BF16))
    inner = state.inner_state[0]
    assert {x.dtype for x in jax.tree.leaves((inner.mu, inner.nu))} == {
        jnp.dtype(jnp.float32)
    }


def test_master_weights_restarts_from_params_changed_outside(jit):
    params = {"w": jnp.ones(4, BF16)}
    tx = gradtx.master_weights(gradtx.sgd(1.0))
    update = jit(tx.update)
    g = {"w": jnp.full(4, 2.0**-12, BF16)}
    state = tx.init(params)
    for _ in range(3):
        u, state = update(g, state, params)
        params = gradtx.apply_updates(params, u)
    params = {"w": params["w"].at[0].set(5.0)}  # e.g. loaded from elsewhere
    u, state = update(g, state, params)
    new = gradtx.apply_updates(params, u)
    assert float(state.master["w"][0]) == 5.0 - 2.0**-12
    assert float(state.master["w"][1]) == 1.0 - 4 * 2.0**-12
    _assert_params_are_rounded_master(new, state)


def test_master_weights_inside_chain_multisteps_and_loss_scaling(jit):
    params = {"w": jnp.ones(6, BF16)}
    tiny = {"w": jnp.full(6, 2.0**-12, BF16)}
    bad = {"w": jnp.full(6, jnp.inf, BF16)}
    tx = gradtx.with_loss_scaling(
        gradtx.MultiSteps(
            gradtx.master_weights(
                gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.sgd(1.0))
            ),
            every_k_schedule=2,
        ),
        init_scale=1.0,
    )
    out = _run(tx, params, [tiny, tiny, bad, tiny, tiny, tiny, tiny], jit)
    final_params, state = out[-1]
    master_state = gradtx.tree.get(state, "master")
    # Three applied (averaged) steps of 2**-12; the non-finite one was skipped.
    np.testing.assert_array_equal(np.asarray(master_state["w"]), 1.0 - 3 * 2.0**-12)
    np.testing.assert_array_equal(
        np.asarray(final_params["w"]), np.asarray(master_state["w"].astype(BF16))
    )


def test_master_weights_outside_multisteps(jit):
    params = {"w": jnp.ones(3, BF16)}
    tiny = {"w": jnp.full(3, 2.0**-12, BF16)}
    tx = gradtx.master_weights(gradtx.MultiSteps(gradtx.sgd(1.0), every_k_schedule=4))
    _, state = _run(tx, params, [tiny] * 8, jit)[-1]
    np.testing.assert_array_equal(np.asarray(state.master["w"]), 1.0 - 2 * 2.0**-12)


def test_master_weights_under_scan_matches_a_python_loop():
    params = _cast(make_params(), BF16)
    grads = make_grads(8, BF16)
    tx = gradtx.master_weights(gradtx.adam(0.05))

    def body(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        return (gradtx.apply_updates(p, u), s), None

    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *grads)
    (p_scan, s_scan), _ = jax.jit(lambda c, g: jax.lax.scan(body, c, g))(
        (params, tx.init(params)), stacked
    )
    p_loop, s_loop = _run(tx, params, grads, jax.jit)[-1]
    chex.assert_trees_all_equal((p_scan, s_scan), (p_loop, s_loop))


def test_master_weights_update_dtypes_and_no_retrace():
    params = _cast(make_params(), BF16)
    tx = gradtx.master_weights(gradtx.adam(0.01))
    traces = []

    @jax.jit
    def step(p, s, g):
        traces.append(None)
        u, s = tx.update(g, s, p)
        return gradtx.apply_updates(p, u), s, u

    state = tx.init(params)
    before = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    for g in make_grads(3, BF16):
        params, state, updates = step(params, state, g)
    assert len(traces) == 1
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == before
    assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(BF16)}


def test_master_weights_init_under_eval_shape():
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, BF16), make_params()
    )
    state = jax.eval_shape(gradtx.master_weights(gradtx.adam(0.1)).init, abstract)
    assert state.master["w"].dtype == jnp.float32


def test_master_weights_float64_master_under_x64(x64):
    params = {"w": jnp.ones(2, jnp.float32)}
    tx = gradtx.master_weights(gradtx.sgd(1.0), dtype=jnp.float64)
    g = {"w": jnp.full(2, 2.0**-30, jnp.float32)}  # far below a float32 ulp of 1
    (p, s), *_ = reversed(_run(tx, params, [g] * 4, lambda f: f))
    assert s.master["w"].dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(s.master["w"]), 1.0 - 4 * 2.0**-30)
    assert p["w"].dtype == jnp.float32


def test_master_weights_needs_params_and_a_floating_dtype():
    tx = gradtx.master_weights(gradtx.sgd(0.1))
    params = {"w": jnp.ones(2, BF16)}
    with pytest.raises(gradtx.MissingParamsError, match=r"gradtx\.master_weights"):
        tx.update(params, tx.init(params))
    with pytest.raises(TypeError, match=r"gradtx\.master_weights: dtype"):
        gradtx.master_weights(gradtx.sgd(0.1), dtype=jnp.int32)


def test_master_weights_ignores_unknown_extra_args_and_forwards_them():
    seen = {}

    def update(updates, state, params=None, **extra):
        seen.update(extra)
        return updates, state

    inner = gradtx.GradientTransformation(lambda p: (), update)
    tx = gradtx.master_weights(inner)
    params = {"w": jnp.ones(2, BF16)}
    tx.update(params, tx.init(params), params, value=jnp.float32(1.0))
    assert "value" in seen
