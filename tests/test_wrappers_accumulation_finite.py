# SPDX-License-Identifier: Apache-2.0
"""`apply_if_finite`: skipping non-finite updates, counters, and parity with optax."""

from __future__ import annotations

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from _registry import avals, make_grads, make_params
from _wrapper_runs import leaves_close as _leaves_close
from _wrapper_runs import run as _run

import gradtx

INT32_MAX = 2**31 - 1
strict = functools.partial(jax.numpy_dtype_promotion, "strict")


def _with_nan(g, where="b"):
    return {**g, where: g[where].at[0].set(jnp.nan)}


def _grads(pattern, dtype=jnp.float32):
    """Gradients for a pattern such as "f.n": `f` finite, `n` with a NaN."""
    gs = make_grads(len(pattern), dtype)
    return [g if c == "f" else _with_nan(g) for c, g in zip(pattern, gs, strict=True)]


def _counters(out):
    return [
        (int(s.notfinite_count), bool(s.last_finite), int(s.total_notfinite))
        for _, s, _ in out
    ]


# --- the optax API and numbers ---


def test_apply_if_finite_signature_and_state_match_optax():
    strip = lambda f: [
        (p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()
    ]
    assert strip(gradtx.apply_if_finite) == strip(optax.apply_if_finite)
    assert gradtx.ApplyIfFiniteState._fields == optax.ApplyIfFiniteState._fields


@pytest.mark.parametrize("pattern", ["ffffffffff", "fnfnnfnnff"], ids=["finite", "nan"])
def test_apply_if_finite_matches_optax_within_the_limit(
    jit, standard_promotion, pattern
):
    # Streaks never exceed max_consecutive_errors=2, where both libraries agree.
    params, grads, inner = make_params(), _grads(pattern), gradtx.adam(0.1)
    theirs = _run(optax.apply_if_finite(inner, 2), grads, params, jax.jit)
    with strict():
        ours = _run(gradtx.apply_if_finite(inner, 2), grads, params, jit)
    for a, b in zip(ours, theirs, strict=True):
        _leaves_close(a, b)


def test_apply_if_finite_resets_the_streak_after_giving_up(jit, standard_promotion):
    # B13 (optax PR #1746): gradtx's notfinite_count is the current streak of
    # skipped updates; after max skips it applies one non-finite update and starts
    # over. optax 0.2.8 keeps counting, and then applies every later NaN.
    pattern = "fnnnnnnf"
    with strict():
        ours = _run(
            gradtx.apply_if_finite(gradtx.sgd(1.0), 2),
            _grads(pattern),
            make_params(),
            jit,
        )
    assert _counters(ours) == [
        (0, True, 0),
        (1, False, 1),
        (2, False, 2),
        (0, False, 3),  # the boundary: the third NaN in a row is applied
        (1, False, 4),
        (2, False, 5),
        (0, False, 6),
        (0, True, 6),
    ]
    applied = [not bool(jnp.all(u["b"] == 0)) for u, _, _ in ours]
    assert applied == [True, False, False, True, False, False, True, True]
    theirs = _run(
        optax.apply_if_finite(optax.sgd(1.0), 2),
        _grads(pattern),
        make_params(),
        jax.jit,
    )
    optax_counts = [c for c, _, _ in _counters(theirs)]
    if optax_counts[4] == 4:  # optax 0.2.8: the count grows past the limit
        assert optax_counts == [0, 1, 2, 3, 4, 5, 6, 0]
    else:  # a future optax with the fix agrees with gradtx
        assert _counters(theirs) == _counters(ours)


def test_apply_if_finite_skip_is_exact_zeros_and_leaves_the_inner_state_bitwise(jit):
    params, (g0, g1) = make_params(), make_grads(2)
    tx = gradtx.apply_if_finite(gradtx.adam(0.1), 3)
    update = jit(tx.update)
    _, state = update(g0, tx.init(params), params)
    bad = {**g1, "w": g1["w"].at[2, 1].set(-jnp.inf)}
    u, skipped = update(bad, state, params)
    chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, g1))
    chex.assert_trees_all_equal(skipped.inner_state, state.inner_state)
    assert int(gradtx.tree.get(skipped.inner_state, "count")) == 1
    chex.assert_trees_all_equal(gradtx.apply_updates(params, u), params)
    assert (int(skipped.notfinite_count), int(skipped.total_notfinite)) == (1, 1)
    assert not bool(skipped.last_finite)


def test_apply_if_finite_zero_limit_applies_everything(jit):
    out = _run(
        gradtx.apply_if_finite(gradtx.sgd(1.0), 0), _grads("nnf"), make_params(), jit
    )
    assert _counters(out) == [(0, False, 1), (0, False, 2), (0, True, 2)]
    assert bool(jnp.isnan(out[0][0]["b"][0]))


def test_apply_if_finite_counters_saturate(jit):
    tx = gradtx.apply_if_finite(gradtx.sgd(1.0), INT32_MAX)
    params = make_params()
    state = tx.init(params)._replace(
        notfinite_count=jnp.int32(INT32_MAX), total_notfinite=jnp.int32(INT32_MAX)
    )
    u, state = jit(tx.update)(_grads("n")[0], state, params)
    assert (int(state.notfinite_count), int(state.total_notfinite)) == (INT32_MAX,) * 2
    chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, params))


def test_apply_if_finite_huge_limit_never_gives_up():
    tx = gradtx.apply_if_finite(gradtx.sgd(1.0), 10**12)
    state = tx.init(jnp.zeros(1))._replace(notfinite_count=jnp.int32(INT32_MAX))
    u, state = tx.update(jnp.array([jnp.nan]), state)
    chex.assert_trees_all_equal(u, jnp.zeros(1))
    assert int(state.notfinite_count) == INT32_MAX


# --- dtypes (B9): bf16 params, f32 updates, chains ---


@pytest.mark.parametrize(
    "inner",
    [
        lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(0.1)),
        lambda: gradtx.adam(0.1, mu_dtype=jnp.float32),
        lambda: gradtx.chain(
            gradtx.stateless(
                lambda u, p: jax.tree.map(lambda x: x.astype(jnp.float32), u)
            ),
            gradtx.sgd(0.1, 0.9, accumulator_dtype=jnp.float32),
        ),
    ],
    ids=["clip-adamw", "adam-f32-mu", "f32-updates"],
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_apply_if_finite_state_dtypes_stable_with_low_precision(jit, inner, dtype):
    dtype = jnp.dtype(dtype)
    params = make_params(dtype)
    tx = gradtx.apply_if_finite(inner(), 1)
    state0 = tx.init(params)
    out = _run(tx, _grads("fnnfnf", dtype), params, jit)
    for _, s, p in out:
        assert jax.tree.structure(s) == jax.tree.structure(state0)
        assert avals(s) == avals(state0)
        assert all(x.dtype == dtype for x in jax.tree.leaves(p))
    applied = [int(s.notfinite_count) == 0 for _, s, _ in out]
    assert applied == [True, False, True, True, False, True]
    chex.assert_tree_all_finite(out[1][2])


def test_apply_if_finite_around_multisteps_with_bf16_params(jit):
    params = make_params(jnp.bfloat16)
    tx = gradtx.apply_if_finite(
        gradtx.MultiSteps(gradtx.adam(0.1), 2).gradient_transformation(), 5
    )
    out = _run(tx, _grads("fnff", jnp.bfloat16), params, jit)
    assert int(out[1][1].inner_state.mini_step) == 1  # the NaN micro-step was skipped
    assert int(out[2][1].inner_state.gradient_step) == 1
    chex.assert_tree_all_finite(out[-1][2])


# --- jit, scan, eval_shape, extra args ---


def test_apply_if_finite_lax_scan_over_20_steps_equals_a_python_loop():
    params, grads = make_params(), _grads("fnffnnffnnnfffnfffnf")
    tx = gradtx.apply_if_finite(gradtx.adam(0.1), 2)
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *grads)

    def body(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        return (gradtx.apply_updates(p, u), s), None

    (p_scan, s_scan), _ = jax.jit(lambda c: jax.lax.scan(body, c, stacked))(
        (params, tx.init(params))
    )
    out = _run(tx, grads, params, jax.jit)
    chex.assert_trees_all_close(p_scan, out[-1][2], rtol=1e-6)
    chex.assert_trees_all_equal(s_scan.total_notfinite, out[-1][1].total_notfinite)
    assert int(s_scan.total_notfinite) == 8


def test_apply_if_finite_init_under_eval_shape():
    tx = gradtx.apply_if_finite(gradtx.adam(0.1), 2)
    params = make_params(jnp.bfloat16)
    assert avals(jax.eval_shape(tx.init, params)) == avals(tx.init(params))


def test_apply_if_finite_forwards_extra_args_and_does_not_retrace():
    traces = []

    def update(updates, state, params=None, *, factor, **extra_args):
        del extra_args
        return jax.tree.map(lambda u: u * factor, updates), state

    tx = gradtx.apply_if_finite(gradtx.GradientTransformation(lambda p: (), update), 1)

    @jax.jit
    def step(g, s, factor):
        traces.append(None)
        return tx.update(g, s, None, factor=factor, loss=jnp.float32(0.0))

    state = tx.init(jnp.zeros(2))
    _, state = step(jnp.ones(2), state, jnp.float32(3.0))
    u, state = step(jnp.ones(2), state, jnp.float32(5.0))
    chex.assert_trees_all_equal(u, 5 * jnp.ones(2))
    assert len(traces) == 1


# --- validation ---


@pytest.mark.parametrize("value", [-1, 1.5, 2.0, "3", True, None], ids=repr)
def test_apply_if_finite_rejects_a_bad_limit(value):
    with pytest.raises(gradtx.HyperparameterError) as err:
        gradtx.apply_if_finite(gradtx.sgd(1.0), value)
    msg = str(err.value)
    assert "gradtx.apply_if_finite" in msg
    assert "max_consecutive_errors" in msg
    assert repr(value) in msg
