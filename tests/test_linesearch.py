# SPDX-License-Identifier: Apache-2.0
"""Line searches: Armijo reference, optax parity, failure flags, extra arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference_linesearch import (
    PROBLEMS,
    problem,
    scale_by_backtracking_linesearch,
    trajectory,
)

import gradtx

RTOL = 1e-5
STEPS = 30


# sgd(1) on Rosenbrock tries points where f overflows float32 (not float64), so
# there the stepsize is capped.
@pytest.mark.parametrize(
    ("name", "cap"),
    [("quadratic", {}), ("logistic", {}), ("rosenbrock", {"max_learning_rate": 1e-3})],
    ids=["quadratic", "logistic", "rosenbrock-capped"],
)
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"increase_factor": 1.0, "decrease_factor": 0.5, "rtol": 0.1, "atol": 1e-3}],
    ids=["default", "halving-slack"],
)
def test_backtracking_matches_float64_armijo_reference(name, cap, kwargs, jit):
    # sgd(1) then the search, as optax's example; the reference gets gradtx's params
    # each step (both start every search from the same point).
    f, w = problem(name, jnp, jnp.float32)
    f64, _ = problem(name, np, np.float64)
    rf = lambda p: float(f64(p))
    kwargs = {**kwargs, **cap}
    tx = gradtx.chain(
        gradtx.sgd(1.0), gradtx.scale_by_backtracking_linesearch(15, **kwargs)
    )
    ref = scale_by_backtracking_linesearch(15, **kwargs)
    update = jit(lambda g, s, w, v: tx.update(g, s, w, value=v, grad=g, value_fn=f))
    state = tx.init(w)
    rstate = ref.init(w)
    for _ in range(10 if jit is jax.jit else 3):  # eager recompiles the while_loop
        v, g = jax.value_and_grad(f)(w)
        u, state = update(g, state, w, v)
        rw, rg = (jax.tree.map(lambda x: np.asarray(x, np.float64), t) for t in (w, g))
        ru, rstate = ref.update(
            jax.tree.map(np.negative, rg),
            rstate,
            rw,
            value=rf(rw),
            grad=rg,
            value_fn=rf,
        )
        ls = state[1]
        assert (
            int(ls.info.num_linesearch_steps) == rstate["info"]["num_linesearch_steps"]
        )
        np.testing.assert_allclose(ls.learning_rate, rstate["learning_rate"], rtol=RTOL)
        np.testing.assert_allclose(ls.value, rstate["value"], rtol=RTOL, atol=1e-7)
        for k in u:
            np.testing.assert_allclose(u[k], ru[k], rtol=RTOL, atol=RTOL)
        w = gradtx.apply_updates(w, u)


def _sgd_run(lib, search, name, use_jit, steps=STEPS):
    tx = lib.chain(lib.sgd(1.0), search)
    out = trajectory(lib, tx, name, use_jit, steps, reuse=False)
    return [(w, state[1].learning_rate) for w, state in out]


SEARCHES = {
    "backtracking": lambda lib: lib.scale_by_backtracking_linesearch(15),
    "zoom-keep": lambda lib: lib.scale_by_zoom_linesearch(15),
    "zoom-one-capped": lambda lib: lib.scale_by_zoom_linesearch(
        10, max_learning_rate=0.5, initial_guess_strategy="one", approx_dec_rtol=None
    ),
}


def _assert_same(ours, theirs):
    for (a, lr_a), (b, lr_b) in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(lr_a, lr_b, rtol=RTOL)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("name", PROBLEMS)
@pytest.mark.parametrize("which", list(SEARCHES))
def test_line_search_with_sgd_matches_optax_over_30_jitted_steps(
    name, which, standard_promotion
):
    ours = _sgd_run(gradtx, SEARCHES[which](gradtx), name, True)
    _assert_same(ours, _sgd_run(optax, SEARCHES[which](optax), name, True))


@pytest.mark.parametrize("which", list(SEARCHES))
def test_line_search_with_sgd_eager_matches_optax(which, standard_promotion):
    # eager recompiles the while_loop at every call (optax too): 3 steps
    ours = _sgd_run(gradtx, SEARCHES[which](gradtx), "logistic", False, 3)
    _assert_same(ours, _sgd_run(optax, SEARCHES[which](optax), "logistic", False, 3))


def _ascent_step(search):
    # updates = +grad: not a descent direction, no stepsize can decrease f
    f = lambda w: jnp.sum(w**2)
    tx = gradtx.chain(gradtx.scale(1.0), search)
    w = jnp.array([1.0, -2.0])
    v, g = jax.value_and_grad(f)(w)
    return tx.update(g, tx.init(w), w, value=v, grad=g, value_fn=f)


def test_backtracking_that_exhausts_its_steps_flags_it():
    _u, state = _ascent_step(gradtx.scale_by_backtracking_linesearch(4))
    info = state[1].info
    assert int(info.num_linesearch_steps) == 5
    assert float(info.decrease_error) > 0.0  # the failure flag


def test_zoom_that_exhausts_its_steps_flags_it():
    _u, state = _ascent_step(gradtx.scale_by_zoom_linesearch(6))
    info = state[1].info
    assert int(info.num_linesearch_steps) == 6
    assert float(info.decrease_error) > 0.0


@pytest.mark.parametrize(
    "search",
    [
        gradtx.scale_by_backtracking_linesearch(5, store_grad=True),
        gradtx.scale_by_zoom_linesearch(5),
    ],
    ids=["backtracking", "zoom"],
)
def test_nan_everywhere_but_here_gives_no_step_and_an_infinite_flag(search):
    f = lambda w: jnp.where(jnp.all(w == 1.0), jnp.sum(w**2), jnp.nan)
    tx = gradtx.chain(gradtx.sgd(1.0), search)
    w = jnp.ones(2)
    v, g = jax.value_and_grad(lambda w: jnp.sum(w**2))(w)
    u, state = tx.update(g, tx.init(w), w, value=v, grad=g, value_fn=f)
    np.testing.assert_array_equal(u, jnp.zeros(2))
    assert float(state[1].learning_rate) == 0.0
    assert float(state[1].info.decrease_error) == np.inf
    # the state holds the value and gradient at the (unchanged) point
    np.testing.assert_array_equal(state[1].value, v)
    np.testing.assert_array_equal(state[1].grad, g)


def test_backtracking_restarts_after_a_failed_search_optax_stays_at_zero(
    standard_promotion,
):
    # value_fn is NaN beyond `bound` (a data argument); the first search fails (no
    # step, stepsize 0). optax then starts every search at 1.5 * 0 = 0, accepts it
    # (f(w) <= f(w)) and never moves again, with decrease_error 0: silently stuck.
    def f(w, bound):
        return jnp.where(jnp.all(jnp.abs(w) <= bound), jnp.sum(w**2), jnp.nan)

    def run(lib):
        tx = lib.chain(lib.sgd(1.0), lib.scale_by_backtracking_linesearch(3))
        w = jnp.array([1.0])
        state = tx.init(w)
        for bound in (0.1, 2.0, 2.0):
            v, g = jax.value_and_grad(f)(w, bound)
            u, state = tx.update(g, state, w, value=v, grad=g, value_fn=f, bound=bound)
            w = lib.apply_updates(w, u)
        return w, state[1]

    w_optax, s_optax = run(optax)
    w_ours, s_ours = run(gradtx)
    assert float(w_optax[0]) == 1.0
    assert float(s_optax.info.decrease_error) == 0.0
    assert abs(float(w_ours[0])) < 0.5
    assert float(s_ours.learning_rate) > 0.0


def test_value_fn_gets_only_the_keywords_it_takes():
    def f(w, x, y):
        return jnp.sum((x @ w - y) ** 2)

    x, y = jnp.eye(2), jnp.array([1.0, 2.0])
    tx = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_zoom_linesearch(10))
    w = jnp.zeros(2)
    v, g = jax.value_and_grad(f)(w, x, y)
    # `other` is meant for another transform of the chain: ignored (optax raises)
    u, _ = tx.update(g, tx.init(w), w, value=v, grad=g, value_fn=f, x=x, y=y, other=1)
    np.testing.assert_allclose(gradtx.apply_updates(w, u), y, rtol=1e-6)


@pytest.mark.parametrize(
    "search",
    [gradtx.scale_by_backtracking_linesearch(5), gradtx.scale_by_zoom_linesearch(5)],
    ids=["backtracking", "zoom"],
)
@pytest.mark.parametrize("missing", ["value", "grad", "value_fn"])
def test_missing_update_argument_raises_naming_it(search, missing):
    f = lambda w: jnp.sum(w**2)
    w = jnp.ones(2)
    kwargs = {"value": f(w), "grad": 2 * w, "value_fn": f}
    del kwargs[missing]
    with pytest.raises(
        gradtx.MissingValueError, match=rf"gradtx\.scale_by_.*{missing}="
    ):
        search.update(w, search.init(w), w, **kwargs)


def test_value_and_grad_from_state_reuses_the_stored_point():
    # A value_fn that differs from the stored values by a marker shows which was
    # returned: the stored value and grad when finite, a fresh evaluation otherwise.
    f = lambda w: jnp.sum(w**2)
    tx = gradtx.lbfgs()
    w = jnp.array([1.0, -2.0])
    vg = gradtx.value_and_grad_from_state(lambda w: f(w) + 100.0)
    state = tx.init(w)
    v, g = vg(w, state=state)  # the initial state's value is inf: computed
    assert float(v) == float(f(w)) + 100.0
    u, state = tx.update(g, state, w, value=f(w), grad=2 * w, value_fn=f)
    v2, g2 = vg(gradtx.apply_updates(w, u), state=state)
    assert float(v2) == float(gradtx.tree.get(state, "value")) < 100.0
    np.testing.assert_array_equal(g2, gradtx.tree.get(state, "grad"))


def test_value_and_grad_from_state_needs_a_stored_grad():
    tx = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_backtracking_linesearch(5))
    w = jnp.ones(2)
    with pytest.raises(ValueError, match="store_grad=True"):
        gradtx.value_and_grad_from_state(lambda w: jnp.sum(w))(w, state=tx.init(w))


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (gradtx.scale_by_backtracking_linesearch(3, verbose=True), "no stepsize"),
        (gradtx.scale_by_zoom_linesearch(4, verbose=True), "search failed"),
    ],
    ids=["backtracking", "zoom"],
)
def test_verbose_search_reports_its_failure_under_jit(search, message, capfd):
    f = lambda w: jnp.sum(w**2)
    tx = gradtx.chain(gradtx.scale(1.0), search)  # an ascent direction: fails
    w = jnp.array([1.0, -2.0])

    @jax.jit
    def step(w, state):
        v, g = jax.value_and_grad(f)(w)
        return tx.update(g, state, w, value=v, grad=g, value_fn=f)

    _, state = step(w, tx.init(w))
    jax.effects_barrier()
    assert message in capfd.readouterr().out
    assert float(state[1].info.decrease_error) > 0.0
