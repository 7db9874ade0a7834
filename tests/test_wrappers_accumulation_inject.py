# SPDX-License-Identifier: Apache-2.0
"""`inject_hyperparams`: optax parity, hyperparameter dtypes (B6), B14, no retrace."""

from __future__ import annotations

import functools
import inspect
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _registry import avals, make_grads, make_params
from _wrapper_runs import leaves_close as _leaves_close
from _wrapper_runs import run as _run

import gradtx

strict = functools.partial(jax.numpy_dtype_promotion, "strict")


class _LossSchedule:
    """A stateful schedule driven by an extra argument: lr = 0.1 / (1 + #losses > 1)."""

    def init(self):
        return {"big": jnp.zeros([], jnp.int32)}

    def update(self, state, *, loss, **extra_args):
        return {"big": state["big"] + (loss > 1.0).astype(jnp.int32)}

    def __call__(self, state, **extra_args):
        return 0.1 / (1.0 + state["big"].astype(jnp.float32))


# --- the optax API ---


@pytest.mark.parametrize(
    "name", ["InjectHyperparamsState", "InjectStatefulHyperparamsState"]
)
def test_inject_state_fields_match_optax(name):
    assert getattr(gradtx, name)._fields == getattr(optax, name)._fields


def test_inject_state_type_and_wrapped_schedule_match_optax():
    tx = gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=lambda n: 0.1)
    state = tx.init(jnp.zeros(2))
    theirs = optax.inject_hyperparams(optax.sgd)(learning_rate=lambda n: 0.1)
    assert type(state).__name__ == type(theirs.init(jnp.zeros(2))).__name__
    assert isinstance(
        state.hyperparams_states["learning_rate"], gradtx.WrappedScheduleState
    )
    s = gradtx.WrappedSchedule(lambda n: 2 * n)
    assert int(s(s.update(s.update(s.init())))) == 4


def test_inject_keeps_the_inner_signature():
    factory = gradtx.inject_hyperparams(gradtx.adamw)
    assert inspect.signature(factory) == inspect.signature(gradtx.adamw)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"learning_rate": 0.1},
        {"learning_rate": lambda n: 0.1 * 0.9 ** n.astype(jnp.float32), "b1": 0.8},
        {"learning_rate": 0.05, "b2": lambda n: 0.99 - 0.001 * n.astype(jnp.float32)},
    ],
    ids=["constant", "lr-schedule", "b2-schedule"],
)
def test_inject_matches_optax(jit, standard_promotion, kwargs):
    params, grads = make_params(), make_grads(20)
    theirs = _run(
        optax.inject_hyperparams(gradtx.adam)(**kwargs), grads, params, jax.jit
    )
    with strict():
        ours = _run(
            gradtx.inject_hyperparams(gradtx.adam)(**kwargs), grads, params, jit
        )
    for a, b in zip(ours, theirs, strict=True):
        _leaves_close(a, b)


def test_inject_stateful_schedule_sees_extra_args_like_optax(standard_promotion):
    params, grads = make_params(), make_grads(10)
    losses = [
        jnp.float32(x) for x in (0.5, 2.0, 3.0, 0.1, 4.0, 0.2, 0.3, 5.0, 0.0, 1.5)
    ]

    def run(factory):
        tx = factory(gradtx.sgd)(learning_rate=_LossSchedule())
        state, p, out = tx.init(params), params, []
        for g, loss in zip(grads, losses, strict=True):
            u, state = jax.jit(tx.update)(g, state, p, loss=loss)
            p = gradtx.apply_updates(p, u)
            out.append((u, state))
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # optax deprecates it
        theirs = run(optax.inject_stateful_hyperparams)
    with strict():
        ours = run(gradtx.inject_stateful_hyperparams)
    for a, b in zip(ours, theirs, strict=True):
        _leaves_close(a, b)
    assert int(ours[-1][1].hyperparams_states["learning_rate"]["big"]) == 5


# --- numbers: B14 and B6 ---


def test_inject_adam_with_a_constant_schedule_equals_plain_adam(jit):
    # B14 (optax #1532): optax's injected Adam drifts from plain Adam.
    params, grads = make_params(), make_grads(100)
    lr = gradtx.constant_schedule(1e-3)
    plain = _run(gradtx.adam(1e-3), grads, params, jit)
    injected = _run(gradtx.inject_hyperparams(gradtx.adam)(lr), grads, params, jit)
    for (u, _, p), (iu, _, ip) in zip(plain, injected, strict=True):
        chex.assert_trees_all_close(iu, u, rtol=1e-6)
        chex.assert_trees_all_close(ip, p, rtol=1e-6)
    chex.assert_trees_all_close(injected[-1][1].inner_state, plain[-1][1], rtol=1e-6)


def test_inject_bf16_params_keep_float32_hyperparams(jit):
    # B6 (optax #1414): optax infers the dtype from bf16 params, b2=0.999 becomes
    # 1.0, and the bias correction 1 - b2**t = 0 gives NaN from step 1.
    factory = gradtx.inject_hyperparams(gradtx.adamw)
    tx = factory(learning_rate=1e-3)
    p16, p32 = make_params(jnp.bfloat16), make_params(jnp.float32)
    s16, s32 = tx.init(p16), tx.init(p32)
    assert s16.hyperparams["b2"].dtype == jnp.float32
    assert float(s16.hyperparams["b2"]) == float(np.float32(0.999))
    update = jit(tx.update)
    for g in make_grads(10):
        u16, s16 = update(jax.tree.map(lambda x: x.astype(jnp.bfloat16), g), s16, p16)
        u32, s32 = update(g, s32, p32)
        chex.assert_tree_all_finite(u16)
        assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u16))
        new16 = gradtx.apply_updates(p16, u16)
        new32 = gradtx.apply_updates(p32, u32)
        chex.assert_trees_all_close(
            jax.tree.map(lambda x: x.astype(jnp.float32), new16),
            new32,
            rtol=1.6e-2,
            atol=1e-3,
        )
        p16 = new16  # re-sync the f32 run to the bf16 params each step
        p32 = jax.tree.map(lambda x: x.astype(jnp.float32), new16)
    assert s16.hyperparams["b2"].dtype == jnp.float32


def test_inject_bf16_optax_difference_is_guarded(standard_promotion):
    p16, g16 = make_params(jnp.bfloat16), make_grads(1, jnp.bfloat16)[0]
    theirs = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3)
    s = theirs.init(p16)
    u, _ = theirs.update(g16, s, p16)
    if s.hyperparams["b2"].dtype == jnp.bfloat16:  # optax 0.2.8
        assert float(s.hyperparams["b2"]) == 1.0
        assert bool(jnp.isnan(u["w"]).all())
    with strict():
        ours = gradtx.inject_hyperparams(gradtx.adamw)(learning_rate=1e-3)
        u, _ = ours.update(g16, ours.init(p16), p16)
    chex.assert_tree_all_finite(u)


def test_inject_hyperparam_dtype_still_overrides():
    tx = gradtx.inject_hyperparams(gradtx.adam, hyperparam_dtype=jnp.bfloat16)(1e-3)
    state = tx.init(make_params())
    assert all(v.dtype == jnp.bfloat16 for v in state.hyperparams.values())
    _, state = tx.update(make_grads(1)[0], state)
    assert all(v.dtype == jnp.bfloat16 for v in state.hyperparams.values())


def test_inject_casts_strong_arrays_and_numpy_scalars(standard_promotion):
    # Deliberate difference: hyperparam_dtype casts every floating hyperparameter,
    # and NumPy scalars are injected; optax 0.2.8 leaves strongly typed arrays
    # alone and treats NumPy scalars as static.
    kwargs = {
        "learning_rate": jnp.asarray(0.1, jnp.float32),
        "momentum": np.float32(0.9),
    }
    theirs = optax.inject_hyperparams(optax.sgd, hyperparam_dtype=jnp.bfloat16)(
        **kwargs
    )
    their_hps = theirs.init(jnp.zeros(1)).hyperparams
    with strict():
        ours = gradtx.inject_hyperparams(gradtx.sgd, hyperparam_dtype=jnp.bfloat16)
        hps = ours(**kwargs).init(jnp.zeros(1)).hyperparams
    assert {k: v.dtype for k, v in hps.items()} == {
        "learning_rate": jnp.bfloat16,
        "momentum": jnp.bfloat16,
    }
    if "momentum" not in their_hps:  # optax 0.2.8
        assert their_hps["learning_rate"].dtype == jnp.float32
    else:  # a future optax that injects both agrees with gradtx
        assert {k: v.dtype for k, v in their_hps.items()} == {
            k: v.dtype for k, v in hps.items()
        }


def test_inject_hyperparams_are_float64_under_x64(x64):
    tx = gradtx.inject_hyperparams(gradtx.adam)(1e-3)
    params = make_params(jnp.float32)
    state = tx.init(params)
    assert all(v.dtype == jnp.float64 for v in state.hyperparams.values())
    u, state2 = tx.update(make_grads(1)[0], state, params)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(u))
    assert avals(state2) == avals(state)


# --- changing values without recompiling (B15) ---


def test_inject_changing_a_hyperparameter_does_not_retrace():
    traces = []
    tx = gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=0.1)

    @jax.jit
    def step(g, s):
        traces.append(None)
        return tx.update(g, s)

    g = jnp.ones(2)
    _, state = step(g, tx.init(g))
    state = gradtx.tree.set(
        state, hyperparams=lambda h: {**h, "learning_rate": jnp.float32(0.5)}
    )
    u, state = step(g, state)
    chex.assert_trees_all_close(u, -0.5 * g)
    state.hyperparams["learning_rate"] = jnp.asarray(2.0, jnp.float32)
    u, state = step(g, state)
    chex.assert_trees_all_close(u, -2.0 * g)
    assert len(traces) == 1


# --- argument handling ---


def test_inject_sorts_arguments_like_optax():
    tx = gradtx.inject_hyperparams(gradtx.sgd)(0.1, momentum=0.9, nesterov=True)
    state = tx.init(jnp.zeros(2))
    assert sorted(state.hyperparams) == ["learning_rate", "momentum"]
    assert (
        gradtx.inject_hyperparams(gradtx.sgd)(1)
        .init(jnp.zeros(1))
        .hyperparams["learning_rate"]
        .dtype
        == jnp.int32
    )  # integers keep their dtype, as in optax


def test_inject_static_args_are_passed_unchanged():
    calls = []

    def factory(learning_rate, fn):
        calls.append(fn)
        return gradtx.scale(learning_rate)

    double = lambda x: 2 * x
    tx = gradtx.inject_hyperparams(factory, static_args="fn")(0.5, double)
    u, state = tx.update(jnp.ones(1), tx.init(jnp.ones(1)))
    chex.assert_trees_all_equal(u, 0.5 * jnp.ones(1))
    assert calls == [double, double]
    assert sorted(state.hyperparams) == ["learning_rate"]


def test_inject_handles_var_positional_and_var_keyword_factories():
    tx = gradtx.inject_hyperparams(gradtx.chain)(gradtx.scale(2.0), gradtx.scale(3.0))
    chex.assert_trees_all_equal(
        tx.update(jnp.ones(1), tx.init(jnp.ones(1)))[0], 6 * jnp.ones(1)
    )

    def factory(step_size, **kwargs):
        return gradtx.scale(step_size * kwargs["extra"])

    tx = gradtx.inject_hyperparams(factory)(2.0, extra=4.0)
    u, state = tx.update(jnp.ones(1), tx.init(jnp.ones(1)))
    chex.assert_trees_all_equal(u, 8 * jnp.ones(1))
    assert sorted(state.hyperparams) == ["extra", "step_size"]


def test_inject_stateful_hyperparams_is_inject_hyperparams_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tx = gradtx.inject_stateful_hyperparams(gradtx.sgd)(learning_rate=0.1)
    ref = gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=0.1)
    g = make_grads(1)[0]
    chex.assert_trees_all_equal(tx.update(g, tx.init(g)), ref.update(g, ref.init(g)))


def test_inject_rejects_unknown_static_args_and_bad_dtypes():
    with pytest.raises(gradtx.HyperparameterError) as err:
        gradtx.inject_hyperparams(gradtx.sgd, static_args=["lr"])
    assert "gradtx.inject_hyperparams" in str(err.value)
    assert "static_args" in str(err.value)
    assert "'lr'" in str(err.value)
    with pytest.raises(
        TypeError, match=r"gradtx\.inject_hyperparams: hyperparam_dtype"
    ):
        gradtx.inject_hyperparams(gradtx.sgd, hyperparam_dtype=jnp.int32)


def test_inject_bad_value_is_still_validated_by_the_inner_factory():
    with pytest.raises(gradtx.HyperparameterError, match="b2"):
        gradtx.inject_hyperparams(gradtx.adam)(0.1, b2=1.5).init(jnp.zeros(1))


# --- structure, scan, eval_shape, extra args ---


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_inject_state_structure_and_dtypes_unchanged(jit, dtype):
    params = make_params(jnp.dtype(dtype))
    tx = gradtx.inject_hyperparams(gradtx.adamw)(
        learning_rate=lambda n: 0.1 / (1.0 + n.astype(jnp.float32)), b1=0.8
    )
    state0 = tx.init(params)
    for _, s, _ in _run(tx, make_grads(3, jnp.dtype(dtype)), params, jit):
        assert jax.tree.structure(s) == jax.tree.structure(state0)
        assert avals(s) == avals(state0)


def test_inject_lax_scan_over_20_steps_equals_a_python_loop():
    params, grads = make_params(), make_grads(20)
    tx = gradtx.inject_hyperparams(gradtx.adam)(
        learning_rate=lambda n: 0.1 * 0.95 ** n.astype(jnp.float32)
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
    chex.assert_trees_all_close(p_scan, out[-1][2], rtol=1e-6)
    assert int(s_scan.count) == 20
    chex.assert_trees_all_close(s_scan.hyperparams, out[-1][1].hyperparams, rtol=1e-6)


def test_inject_init_under_eval_shape():
    tx = gradtx.inject_hyperparams(gradtx.adam)(lambda n: 0.1 * n.astype(jnp.float32))
    params = make_params(jnp.bfloat16)
    assert avals(jax.eval_shape(tx.init, params)) == avals(tx.init(params))


def test_inject_forwards_extra_args_to_the_inner_transform():
    seen = []

    def factory(learning_rate):
        def update(updates, state, params=None, **extra_args):
            seen.append(sorted(extra_args))
            return jax.tree.map(lambda u: u * learning_rate, updates), state

        return gradtx.GradientTransformation(lambda p: (), update)

    tx = gradtx.inject_hyperparams(factory)(learning_rate=3.0)
    u, _ = tx.update(jnp.ones(1), tx.init(jnp.ones(1)), None, value=jnp.float32(1.0))
    chex.assert_trees_all_equal(u, 3 * jnp.ones(1))
    assert seen == [["value"]]
