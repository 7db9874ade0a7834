# SPDX-License-Identifier: Apache-2.0
"""Bad concrete hyperparameters of the L-BFGS, line-search and Polyak factories fail
at construction, naming the function, the argument and the value.

In the style of tests/test_validation.py, for the names the registry cannot hold
(their updates need `value=`, `grad=`, `value_fn=`). Every parameter of every name
is classified, so a new parameter cannot go unchecked.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

NAN, INF = float("nan"), float("inf")
NAMES = (
    "scale_by_lbfgs",
    "lbfgs",
    "scale_by_backtracking_linesearch",
    "scale_by_zoom_linesearch",
    "scale_by_polyak",
    "polyak_sgd",
)
REQUIRED = {"max_backtracking_steps": 10, "max_linesearch_steps": 10}
COUNT_BAD = [0.5, 2.0, True, "3", NAN]
# (name, arg): (bad values, allowed edge values)
CASES = {
    ("scale_by_lbfgs", "memory_size"): ([0, -1, *COUNT_BAD], [1, np.int32(3)]),
    ("lbfgs", "memory_size"): ([0, -1, *COUNT_BAD], [1]),
    ("lbfgs", "learning_rate"): ([-1.0, NAN, INF], [0.0, None]),
    ("lbfgs", "linesearch"): ([1.0, "zoom"], [None]),
    ("scale_by_backtracking_linesearch", "max_backtracking_steps"): (
        [-1, *COUNT_BAD],
        [0, jnp.asarray(3)],
    ),
    ("scale_by_backtracking_linesearch", "slope_rtol"): ([-0.1, 1.0, NAN], [0.0]),
    ("scale_by_backtracking_linesearch", "decrease_factor"): (
        [0.0, 1.0, -0.5, NAN],
        [0.01, 0.99],
    ),
    ("scale_by_backtracking_linesearch", "increase_factor"): (
        [0.5, -1.0, NAN],
        [1.0, INF],
    ),
    ("scale_by_backtracking_linesearch", "max_learning_rate"): (
        [0.0, -1.0, NAN, INF],
        [1e-8],
    ),
    ("scale_by_backtracking_linesearch", "atol"): ([-1e-3, NAN, INF], [0.0]),
    ("scale_by_backtracking_linesearch", "rtol"): ([-1e-3, NAN, INF], [0.0]),
    ("scale_by_zoom_linesearch", "max_linesearch_steps"): ([0, -2, *COUNT_BAD], [1]),
    ("scale_by_zoom_linesearch", "max_learning_rate"): (
        [0.0, -1.0, NAN, INF],
        [None, 1e-8],
    ),
    ("scale_by_zoom_linesearch", "tol"): ([-1e-3, NAN, INF], [0.0]),
    ("scale_by_zoom_linesearch", "increase_factor"): ([1.0, 0.5, NAN], [1.01, INF]),
    ("scale_by_zoom_linesearch", "slope_rtol"): ([-0.1, 1.0, NAN], [0.0]),
    ("scale_by_zoom_linesearch", "curv_rtol"): ([0.0, -0.5, NAN], [1e-3, INF]),
    ("scale_by_zoom_linesearch", "approx_dec_rtol"): ([-1e-6, NAN, INF], [None, 0.0]),
    ("scale_by_zoom_linesearch", "stepsize_precision"): ([-1e-5, NAN, INF], [0.0]),
    ("scale_by_zoom_linesearch", "initial_guess_strategy"): (["two", None, 1], ["one"]),
    ("scale_by_polyak", "f_min"): ([NAN, INF, -INF], [-1e3]),
    ("scale_by_polyak", "max_learning_rate"): ([-1.0, NAN, INF], [0.0]),
    ("scale_by_polyak", "eps"): ([-1e-3, NAN, INF], [0.0]),
    ("scale_by_polyak", "variant"): (["SPS", "sps-", None], ["sps+"]),
    ("polyak_sgd", "max_learning_rate"): ([-1.0, NAN, INF], [0.0]),
    ("polyak_sgd", "scaling"): ([-1.0, NAN, INF], [0.0]),
    ("polyak_sgd", "f_min"): ([NAN, INF], [-1e3]),
    ("polyak_sgd", "eps"): ([-1e-3, NAN, INF], [0.0]),
    ("polyak_sgd", "variant"): (["SPS", None], ["sps+"]),
}
# Switches and structure arguments: no range to check.
NON_NUMERIC = {
    ("lbfgs", "scale_init_precond"),
    ("scale_by_lbfgs", "scale_init_precond"),
    ("scale_by_backtracking_linesearch", "store_grad"),
    ("scale_by_backtracking_linesearch", "verbose"),
    ("scale_by_zoom_linesearch", "verbose"),
}


def _call(name, **kwargs):
    fn = getattr(gradtx, name)
    for p in inspect.signature(fn).parameters.values():
        if p.default is inspect.Parameter.empty and p.name not in kwargs:
            kwargs[p.name] = REQUIRED[p.name]
    return fn(**kwargs)


def test_every_parameter_is_classified():
    params = {
        (n, a) for n in NAMES for a in inspect.signature(getattr(gradtx, n)).parameters
    }
    assert params == set(CASES) | NON_NUMERIC


def _cases(which):
    return [
        pytest.param(n, a, v, id=f"{n}-{a}={v!r}")
        for (n, a), values in CASES.items()
        for v in values[which]
    ]


@pytest.mark.parametrize(("name", "arg", "value"), _cases(0))
def test_bad_concrete_value_raises_naming_function_argument_and_value(name, arg, value):
    with pytest.raises(gradtx.HyperparameterError) as info:
        _call(name, **{arg: value})
    message = str(info.value)
    assert f"gradtx.{name}:" in message
    assert f" {arg} " in message
    assert repr(value) in message


@pytest.mark.parametrize(("name", "arg", "value"), _cases(1))
def test_edge_of_allowed_range_is_accepted(name, arg, value):
    tx = _call(name, **{arg: value})
    assert isinstance(tx, gradtx.GradientTransformation)


@pytest.mark.parametrize(
    ("name", "arg"),
    [
        ("scale_by_backtracking_linesearch", "slope_rtol"),
        ("scale_by_zoom_linesearch", "curv_rtol"),
        ("scale_by_polyak", "max_learning_rate"),
    ],
)
def test_traced_values_are_not_checked(name, arg):
    # a traced value cannot be inspected at construction: even a bad one traces
    def build(x):
        tx = _call(name, **{arg: x})
        return tx, tx.init(jnp.zeros(2))

    jaxpr = jax.make_jaxpr(lambda x: build(x)[1])(jnp.float32(-1.0))
    assert len(jaxpr.out_avals) == len(jax.tree.leaves(build(0.5)[1]))
