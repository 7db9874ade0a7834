# SPDX-License-Identifier: Apache-2.0
"""`MultiSteps` (gradient accumulation) and its skip predicates.

optax runs under the `standard_promotion` fixture; gradtx runs inside
`jax.numpy_dtype_promotion("strict")` in the same test, so its strictness is kept.
"""

from __future__ import annotations

import functools
import inspect
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _registry import avals, make_grads, make_params
from _wrapper_runs import leaves_close as _leaves_close
from _wrapper_runs import run

import gradtx

INT32_MAX = 2**31 - 1
strict = functools.partial(jax.numpy_dtype_promotion, "strict")


def _run(tx, grads, params, jit, **extra):
    """Per-step (updates, state) of `run`."""
    return [(u, s) for u, s, _ in run(tx, grads, params, jit, **extra)]


def _same_parameters(ours, theirs):
    """Names, kinds and defaults (annotations are spelled differently)."""
    strip = lambda sig: [(p.name, p.kind, p.default) for p in sig.parameters.values()]
    return strip(inspect.signature(ours)) == strip(inspect.signature(theirs))


class _F32Updates(NamedTuple):
    scale: jax.Array


def _f32_inner():
    """An adafactor-like inner transform: f32 updates for bf16 grads, and a state
    whose dtype changes between `init` (bf16) and `update` (f32)."""

    def init(params):
        return _F32Updates(scale=jnp.ones([], jnp.bfloat16))

    def update(updates, state, params=None, **extra_args):
        scale = state.scale.astype(jnp.float32) * 0.5
        return jax.tree.map(lambda g: g.astype(jnp.float32) * scale, updates), (
            _F32Updates(scale=scale)
        )

    return gradtx.GradientTransformation(init, update)


# --- the optax API ---


def test_multisteps_signature_and_state_match_optax():
    assert _same_parameters(gradtx.MultiSteps, optax.MultiSteps)
    assert gradtx.MultiStepsState._fields == optax.MultiStepsState._fields
    assert gradtx.MultiStepsState._field_defaults == {"skip_state": ()}
    for name in ("init", "update", "has_updated", "gradient_transformation"):
        assert callable(getattr(gradtx.MultiSteps(gradtx.sgd(1.0), 2), name))
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 3, use_grad_mean=False)
    assert tx.every_k_schedule(jnp.int32(0)) == 3
    assert tx.use_grad_mean is False
    assert tx.should_skip_update_fn(jnp.ones(1), 0, None)[0].dtype == jnp.bool_
    assert isinstance(tx.inner_opt, gradtx.GradientTransformation)


@pytest.mark.parametrize(
    ("k", "mean", "skip"),
    [
        (1, True, False),
        (3, True, False),
        (3, False, False),
        (3, True, True),
        (lambda step: 1 + step % 3, True, False),
    ],
    ids=["k1", "k3-mean", "k3-sum", "k3-skip-nonfinite", "k-schedule"],
)
def test_multisteps_matches_optax(jit, standard_promotion, k, mean, skip):
    params, grads = make_params(), make_grads(15)
    if skip:  # non-finite micro-batches at steps 2 and 7 are rejected
        for i in (2, 7):
            grads[i] = {**grads[i], "b": grads[i]["b"].at[1].set(jnp.nan)}
    inner = gradtx.adam(
        0.1
    )  # the same inner math on both sides: this tests the wrapper
    skip_fn = (gradtx.skip_not_finite, optax.skip_not_finite) if skip else (None, None)
    # optax is the reference: always jitted (eager, its lax.cond recompiles per step).
    theirs = _run(optax.MultiSteps(inner, k, mean, skip_fn[1]), grads, params, jax.jit)
    with strict():
        ours = _run(gradtx.MultiSteps(inner, k, mean, skip_fn[0]), grads, params, jit)
    for (u, s), (ou, os) in zip(ours, theirs, strict=True):
        _leaves_close(u, ou)
        _leaves_close(s, os)


@pytest.mark.parametrize("name", ["skip_not_finite", "skip_large_updates"])
def test_skip_functions_match_optax(standard_promotion, name):
    g = make_grads(1)[0]
    bad = {**g, "w": g["w"].at[0, 0].set(jnp.inf).at[1, 1].set(jnp.nan)}
    extra = {"max_squared_norm": 10.0} if name == "skip_large_updates" else {}
    for updates in (g, bad):
        theirs = getattr(optax, name)(updates, jnp.int32(0), None, **extra)
        with strict():
            ours = getattr(gradtx, name)(updates, jnp.int32(0), None, **extra)
        assert bool(ours[0]) == bool(theirs[0])
        assert sorted(ours[1]) == sorted(theirs[1])
        _leaves_close(ours[1], theirs[1])


def test_skip_large_updates_sums_the_norm_in_float32(standard_promotion):
    # Deliberate difference: optax sums the squares in the leaves' dtype, so a
    # float16 norm of 300 overflows to inf and a small update is rejected.
    g = {"a": jnp.full((1,), 300.0, jnp.float16)}
    theirs = optax.skip_large_updates(g, 0, None, max_squared_norm=1e6)
    with strict():
        skip, info = gradtx.skip_large_updates(g, 0, None, max_squared_norm=1e6)
    assert not bool(skip)
    assert info["norm_squared"].dtype == jnp.float32
    assert float(info["norm_squared"]) == 90000.0
    if bool(jnp.isinf(theirs[1]["norm_squared"])):  # optax 0.2.8
        assert bool(theirs[0])
    else:  # a future optax that widens the sum agrees with gradtx
        assert bool(theirs[0]) == bool(skip)


# --- numbers ---


def test_multisteps_equal_micro_grads_equal_one_inner_step(jit):
    k, params, g = 4, make_params(), make_grads(1)[0]
    tx = gradtx.MultiSteps(gradtx.adam(0.1), every_k_schedule=k)
    out = _run(tx, [g] * k, params, jit)
    for u, _ in out[:-1]:
        chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, g))
    ref = gradtx.adam(0.1)
    expected, ref_state = ref.update(g, ref.init(params), params)
    chex.assert_trees_all_close(out[-1][0], expected, rtol=1e-6)
    chex.assert_trees_all_close(out[-1][1].inner_opt_state, ref_state, rtol=1e-6)
    assert bool(tx.has_updated(out[-1][1]))
    assert not any(bool(tx.has_updated(s)) for _, s in out[:-1])


def test_multisteps_four_micro_batches_equal_one_big_batch(jit):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((32, 5)), jnp.float32)
    y = jnp.asarray(rng.standard_normal(32), jnp.float32)
    loss = lambda w, xb, yb: jnp.mean((xb @ w - yb) ** 2)
    grad = jax.grad(loss)
    big, small = gradtx.sgd(0.1), gradtx.MultiSteps(gradtx.sgd(0.1), 4)
    w_big = w_small = jnp.zeros(5, jnp.float32)
    s_big, s_small = big.init(w_big), small.init(w_small)
    step = jit(small.update)
    for _ in range(3):  # three accumulation windows
        for i in range(4):
            sl = slice(8 * i, 8 * i + 8)
            u, s_small = step(grad(w_small, x[sl], y[sl]), s_small, w_small)
            w_small = gradtx.apply_updates(w_small, u)
        u, s_big = big.update(grad(w_big, x, y), s_big, w_big)
        w_big = gradtx.apply_updates(w_big, u)
        chex.assert_trees_all_close(w_small, w_big, rtol=1e-6)


def test_multisteps_sums_when_use_grad_mean_is_false(jit):
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 3, use_grad_mean=False)
    out = _run(tx, [jnp.ones(2), 2 * jnp.ones(2), 3 * jnp.ones(2)], jnp.zeros(2), jit)
    chex.assert_trees_all_equal(out[-1][0], -6 * jnp.ones(2))


# --- dtypes and control flow (B9, B10, B12) ---


@pytest.mark.parametrize("skip", [None, gradtx.skip_not_finite], ids=["plain", "skip"])
def test_multisteps_bf16_params_with_f32_inner_updates(jit, skip):
    params = make_params(jnp.bfloat16)
    tx = gradtx.MultiSteps(_f32_inner(), every_k_schedule=2, should_skip_update_fn=skip)
    state0 = tx.init(params)
    out = _run(tx, make_grads(4, jnp.bfloat16), params, jit)
    for i, (u, s) in enumerate(out):
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(u))
        assert avals(s) == avals(state0)
        assert bool(gradtx.tree.get(s, "mini_step")) == (i % 2 == 0)
    assert float(out[-1][1].inner_opt_state.scale) == 0.25


@pytest.mark.parametrize(
    "inner",
    [
        lambda: gradtx.adam(0.1, mu_dtype=jnp.float32),
        lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.sgd(0.1, 0.9)),
        _f32_inner,
    ],
    ids=["adam-f32-mu", "clip-sgd", "f32-inner"],
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("acc", [None, jnp.bfloat16], ids=["acc-params", "acc-bf16"])
def test_multisteps_state_structure_and_dtypes_unchanged(jit, inner, dtype, acc):
    params = make_params(jnp.dtype(dtype))
    tx = gradtx.MultiSteps(inner(), 2, accumulator_dtype=acc)
    state0 = tx.init(params)
    want = jnp.dtype(acc) if acc is not None else jnp.dtype(dtype)
    assert all(a.dtype == want for a in jax.tree.leaves(state0.acc_grads))
    for _, s in _run(tx, make_grads(3, jnp.dtype(dtype)), params, jit):
        assert jax.tree.structure(s) == jax.tree.structure(state0)
        assert avals(s) == avals(state0)


def test_multisteps_nonfinite_grad_resets_the_accumulator(standard_promotion):
    # Deliberate difference: after an emitting step gradtx restarts from exact
    # zeros; optax multiplies the accumulator by 0, so a NaN stays in it forever.
    grads = [jnp.array([jnp.nan, 1.0]), jnp.ones(2), jnp.ones(2), jnp.ones(2)]
    optax_out = _run(optax.MultiSteps(optax.sgd(1.0), 2), grads, jnp.zeros(2), jax.jit)
    with strict():
        ours = _run(gradtx.MultiSteps(gradtx.sgd(1.0), 2), grads, jnp.zeros(2), jax.jit)
    chex.assert_trees_all_equal(ours[1][1].acc_grads, jnp.zeros(2))
    chex.assert_trees_all_equal(ours[2][0], jnp.zeros(2))
    chex.assert_trees_all_equal(ours[3][0], -jnp.ones(2))
    if bool(jnp.isnan(optax_out[3][0]).any()):  # optax 0.2.8: the NaN persists
        assert bool(jnp.isnan(optax_out[1][1].acc_grads[0]))
    else:  # a future optax that resets the accumulator agrees with gradtx
        chex.assert_trees_all_equal(optax_out[3][0], ours[3][0])


def test_multisteps_skip_not_finite_changes_nothing_but_skip_state(jit):
    params, g = make_params(), make_grads(2)
    tx = gradtx.MultiSteps(
        gradtx.adam(0.1), 2, should_skip_update_fn=gradtx.skip_not_finite
    )
    update = jit(tx.update)
    u, state = update(g[0], tx.init(params), params)
    bad = {**g[1], "s": jnp.array(jnp.inf, jnp.float32)}
    u, skipped = update(bad, state, params)
    chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, g[1]))
    chex.assert_trees_all_equal(
        skipped._replace(skip_state=()), state._replace(skip_state=())
    )
    assert int(skipped.skip_state["num_not_finite"]) == 1
    assert bool(skipped.skip_state["should_skip"])


def test_multisteps_skip_large_updates_rejects_by_norm(jit):
    skip = functools.partial(gradtx.skip_large_updates, max_squared_norm=5.0)
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 1, should_skip_update_fn=skip)
    out = _run(
        tx,
        [jnp.array([1.0, 2.0]), jnp.array([2.0, 1.0]), jnp.ones(2)],
        jnp.zeros(2),
        jit,
    )
    assert [bool(s.skip_state["should_skip"]) for _, s in out] == [True, True, False]
    assert [int(s.gradient_step) for _, s in out] == [0, 0, 1]
    chex.assert_trees_all_close(out[2][1].skip_state["norm_squared"], jnp.float32(2.0))


def test_multisteps_gradient_step_saturates_without_misfiring(jit):
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 2)
    state = tx.init(jnp.zeros(1))._replace(gradient_step=jnp.int32(INT32_MAX))
    update = jit(tx.update)
    u, state = update(jnp.ones(1), state)
    assert (int(state.mini_step), int(state.gradient_step)) == (1, INT32_MAX)
    chex.assert_trees_all_equal(u, jnp.zeros(1))
    u, state = update(jnp.ones(1), state)
    assert (int(state.mini_step), int(state.gradient_step)) == (0, INT32_MAX)
    chex.assert_trees_all_equal(u, -jnp.ones(1))
    assert bool(tx.has_updated(state))


# --- jit, scan, eval_shape, extra args, composition ---


def test_multisteps_lax_scan_over_20_steps_equals_a_python_loop():
    params, grads = make_params(), make_grads(20)
    tx = gradtx.MultiSteps(
        gradtx.adam(0.1), 3, should_skip_update_fn=gradtx.skip_not_finite
    )
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *grads)

    def body(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        return (gradtx.apply_updates(p, u), s), None

    (p_scan, s_scan), _ = jax.jit(lambda c: jax.lax.scan(body, c, stacked))(
        (params, tx.init(params))
    )
    out = _run(tx, grads, params, jax.jit)
    p_loop = params
    for u, _ in out:
        p_loop = gradtx.apply_updates(p_loop, u)
    chex.assert_trees_all_close(p_scan, p_loop, rtol=1e-6)
    chex.assert_trees_all_equal(s_scan.gradient_step, out[-1][1].gradient_step)


def test_multisteps_init_under_eval_shape():
    params = make_params(jnp.bfloat16)
    tx = gradtx.MultiSteps(
        gradtx.adam(0.1), 4, should_skip_update_fn=gradtx.skip_not_finite
    )
    shapes = jax.eval_shape(tx.init, params)
    assert avals(shapes) == avals(tx.init(params))


def test_multisteps_forwards_extra_args_and_does_not_retrace():
    seen, traces = [], []

    def update(updates, state, params=None, *, factor, **extra_args):
        seen.append(sorted(extra_args))
        return jax.tree.map(lambda u: u * factor, updates), state

    tx = gradtx.MultiSteps(gradtx.GradientTransformation(lambda p: (), update), 1)

    @jax.jit
    def step(g, s, factor):
        traces.append(None)
        return tx.update(g, s, None, factor=factor, value=jnp.float32(1.0))

    state = tx.init(jnp.zeros(2))
    u, state = step(jnp.ones(2), state, jnp.float32(3.0))
    u, state = step(jnp.ones(2), state, jnp.float32(5.0))
    chex.assert_trees_all_equal(u, 5 * jnp.ones(2))
    assert seen[0] == ["value"]
    assert len(traces) == 1


def test_multisteps_around_inject_hyperparams_and_in_a_chain(jit):
    inner = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1)
    tx = gradtx.chain(
        gradtx.clip(10.0), gradtx.MultiSteps(inner, 2).gradient_transformation()
    )
    params, g = make_params(jnp.bfloat16), make_grads(1, jnp.bfloat16)[0]
    out = _run(tx, [g, g], params, jit)
    ref = gradtx.adam(0.1)
    expected, _ = ref.update(g, ref.init(params), params)
    chex.assert_trees_all_close(out[1][0], expected, rtol=1e-6)
    multi_state = out[1][1][1]
    assert int(multi_state.inner_opt_state.count) == 1
    assert multi_state.inner_opt_state.hyperparams["b2"].dtype == jnp.float32


# --- validation ---


@pytest.mark.parametrize("k", [0, -1, 2.5, "2", True, None], ids=repr)
def test_multisteps_rejects_a_bad_constant_k(k):
    with pytest.raises(gradtx.HyperparameterError) as err:
        gradtx.MultiSteps(gradtx.sgd(1.0), k)
    msg = str(err.value)
    assert "gradtx.MultiSteps" in msg
    assert "every_k_schedule" in msg
    assert repr(k) in msg


def test_multisteps_accepts_integer_arrays_and_rejects_bad_dtypes():
    assert gradtx.MultiSteps(gradtx.sgd(1.0), np.int64(2)).every_k_schedule(0) == 2
    assert gradtx.MultiSteps(gradtx.sgd(1.0), jnp.int32(3)).every_k_schedule(0) == 3
    with pytest.raises(TypeError, match=r"gradtx\.MultiSteps: accumulator_dtype"):
        gradtx.MultiSteps(gradtx.sgd(1.0), 2, accumulator_dtype=jnp.int32)


def test_multisteps_rejects_a_non_bool_skip_predicate():
    bad = lambda updates, step, params: (jnp.float32(1.0), ())
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 2, should_skip_update_fn=bad)
    with pytest.raises(gradtx.HyperparameterError, match="should_skip_update_fn"):
        tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))


def test_multisteps_names_the_first_tree_mismatch():
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 2)
    with pytest.raises(gradtx.TreeMismatchError, match=r"gradtx\.MultiSteps"):
        tx.update({"a": jnp.ones(1)}, tx.init({"b": jnp.ones(1)}))
