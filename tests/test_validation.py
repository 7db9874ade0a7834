# SPDX-License-Identifier: Apache-2.0
"""Bad concrete hyperparameters fail at construction, naming function, argument, value.

Cases are generated from each public factory's signature: every parameter is either
a numeric hyperparameter with a known allowed range, a dtype, a callable, or one of
the listed non-numeric switches, so a new parameter cannot go unchecked.
"""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import REGISTRY, make_grads, make_params, merged

import gradtx

NAMES = sorted({e.name for e in REGISTRY})
FACTORIES = {n: getattr(gradtx, n) for n in NAMES}

# Values needed to call a factory whose parameter has no default.
REQUIRED = {
    "learning_rate": 0.1,
    "step_size": 1.0,
    "decay": 0.9,
    "max_delta": 1.0,
    "max_norm": 1.0,
    "threshold": 1.0,
    "step_size_fn": lambda count: 1.0,
}
NAN, INF = float("nan"), float("inf")
DECAY_BAD = [-0.1, 1.0, 1.5, NAN, INF]
NONNEG_BAD = [-1e-3, -1.0, NAN, INF, -INF]
# Allowed range of every numeric hyperparameter: (bad values, allowed edge values).
NUMERIC = {
    "learning_rate": (
        [-1.0, NAN, INF, np.float32(-1.0), jnp.asarray(-0.5)],
        [0.0, 0, np.float32(0.0), jnp.asarray(0.0)],
    ),
    "step_size": ([NAN, INF, -INF], [0.0, -1.0]),  # a negative scale flips the sign
    "b1": (DECAY_BAD, [0.0]),
    "b2": (DECAY_BAD, [0.0]),
    "decay": (DECAY_BAD, [0.0]),
    "momentum": (DECAY_BAD, [0.0]),
    "beta": (DECAY_BAD, [0.0]),
    "eps": (NONNEG_BAD, [0.0]),
    "eps_root": (NONNEG_BAD, [0.0]),
    "weight_decay": (NONNEG_BAD, [0.0]),
    "initial_scale": (NONNEG_BAD, [0.0]),
    "initial_accumulator_value": (NONNEG_BAD, [0.0]),
    "max_norm": (NONNEG_BAD, [0.0]),
    "max_delta": (NONNEG_BAD, [0.0]),
    "threshold": (NONNEG_BAD, [0.0]),
}
# `ema` documents decay in [0, 1]: decay 1 freezes the average (optax allows it).
OVERRIDES = {("ema", "decay"): ([-0.1, 1.5, NAN, INF], [0.0, 1.0])}
DTYPES = {"mu_dtype", "nu_dtype", "accumulator_dtype"}
# sgd builds its accumulator (and so checks its dtype) only when momentum is set.
DTYPE_CONTEXT = {"sgd": {"momentum": 0.9}}
CALLABLES = {"step_size_fn"}
# Switches and structure arguments: no numeric range to check.
NON_NUMERIC = {
    "nesterov",
    "flip_sign",
    "debias",
    "eps_in_sqrt",
    "centered",
    "bias_correction",
    "bias_correction_mu",
    "bias_correction_nu",
    "mask",
}
SCHEDULABLE = {"learning_rate", "weight_decay"}

# Each area of the catalogue classifies its own parameters (see _registry_base.py).
REQUIRED = merged("REQUIRED", REQUIRED)
NUMERIC = merged("NUMERIC", NUMERIC)
OVERRIDES = merged("OVERRIDES", OVERRIDES)
DTYPES = merged("DTYPES", DTYPES)
DTYPE_CONTEXT = merged("DTYPE_CONTEXT", DTYPE_CONTEXT)
CALLABLES = merged("CALLABLES", CALLABLES)
NON_NUMERIC = merged("NON_NUMERIC", NON_NUMERIC)
SCHEDULABLE = merged("SCHEDULABLE", SCHEDULABLE)


def _call(name, **kwargs):
    fn = FACTORIES[name]
    for p in inspect.signature(fn).parameters.values():
        if p.default is inspect.Parameter.empty and p.name not in kwargs:
            kwargs[p.name] = REQUIRED[p.name]
    return fn(**kwargs)


def _ranges(name, arg):
    return OVERRIDES.get((name, arg), NUMERIC[arg])


def _pairs(kinds):
    return [
        (n, a)
        for n in NAMES
        for a in inspect.signature(FACTORIES[n]).parameters
        if a in kinds
    ]


def _bad_cases():
    return [
        pytest.param(n, a, v, id=f"{n}-{a}={v!r}")
        for n, a in _pairs(NUMERIC)
        for v in _ranges(n, a)[0]
    ]


def _edge_cases():
    return [
        pytest.param(n, a, v, id=f"{n}-{a}={v!r}")
        for n, a in _pairs(NUMERIC)
        for v in _ranges(n, a)[1]
    ]


def _ids(pairs):
    return [pytest.param(n, a, id=f"{n}-{a}") for n, a in pairs]


def test_every_parameter_is_classified():
    known = set(NUMERIC) | DTYPES | CALLABLES | NON_NUMERIC
    unknown = [
        f"{n}({a})"
        for n in NAMES
        for a in inspect.signature(FACTORIES[n]).parameters
        if a not in known
    ]
    assert not unknown, "classify these parameters in test_validation.py"


@pytest.mark.parametrize(("name", "arg", "value"), _bad_cases())
def test_bad_concrete_value_raises_naming_function_argument_and_value(name, arg, value):
    with pytest.raises(gradtx.HyperparameterError) as info:
        _call(name, **{arg: value})
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert f"gradtx.{name}:" in message
    assert f" {arg} " in message
    assert repr(value) in message


@pytest.mark.parametrize(("name", "arg", "value"), _edge_cases())
def test_edge_of_allowed_range_is_accepted(name, arg, value):
    tx = _call(name, **{arg: value})
    assert isinstance(tx, gradtx.GradientTransformation)


@pytest.mark.parametrize(("name", "arg"), _ids(_pairs(DTYPES)))
@pytest.mark.parametrize("dtype", [jnp.int32, np.bool_, "not-a-dtype"])
def test_bad_dtype_raises_type_error(name, arg, dtype):
    with pytest.raises(TypeError, match=rf"gradtx\.{name}: {arg} .*floating"):
        _call(name, **{arg: dtype}, **DTYPE_CONTEXT.get(name, {}))


@pytest.mark.parametrize(("name", "arg"), _ids(_pairs(DTYPES)))
def test_floating_dtype_is_accepted(name, arg):
    tx = _call(name, **{arg: jnp.bfloat16}, **DTYPE_CONTEXT.get(name, {}))
    state = tx.init(make_params())
    assert jnp.dtype(jnp.bfloat16) in {x.dtype for x in jax.tree.leaves(state)}


def test_step_size_fn_must_be_callable():
    with pytest.raises(TypeError, match=r"gradtx\.scale_by_schedule: step_size_fn"):
        gradtx.scale_by_schedule(0.1)


@pytest.mark.parametrize(("name", "arg"), _ids(_pairs(NUMERIC)))
def test_traced_values_are_not_checked(name, arg):
    # A traced value cannot be inspected at construction: even a bad one passes,
    # and the transform traces through init and update.
    bad = _ranges(name, arg)[0][0]
    params = make_params()
    (g,) = make_grads(1)

    def run(x):
        tx = _call(name, **{arg: x})
        return tx.update(g, tx.init(params), params)

    jaxpr = jax.make_jaxpr(run)(jnp.float32(bad))
    assert jaxpr.out_avals


@pytest.mark.parametrize(("name", "arg"), _ids(_pairs(SCHEDULABLE)))
def test_schedules_are_not_checked_at_construction(name, arg):
    tx = _call(name, **{arg: lambda count: -1.0})
    params = make_params()
    updates, _ = tx.update(make_grads(1)[0], tx.init(params), params)
    assert all(math.isfinite(float(jnp.max(u))) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize(
    "name",
    [n for n in NAMES if "learning_rate" in inspect.signature(FACTORIES[n]).parameters],
)
def test_zero_learning_rate_gives_zero_updates(name):
    tx = _call(name, learning_rate=0.0)
    params = make_params()
    updates, _ = tx.update(make_grads(1)[0], tx.init(params), params)
    for u in jax.tree.leaves(updates):
        np.testing.assert_array_equal(u, np.zeros_like(u))


def test_unknown_constructor_keyword_is_a_type_error():
    with pytest.raises(TypeError):
        gradtx.adam(0.1, beta1=0.9)
