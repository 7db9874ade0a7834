# SPDX-License-Identifier: Apache-2.0
"""SM3 (`scale_by_sm3`, `sm3`): the shared checks, run here.

SM3's state holds a list of per-axis accumulators per leaf (optax's layout), which
the registry's element-wise Trajectory cannot stack, so these names are in
`NOT_IN_REGISTRY` and this module runs the same checks: float64 reference (eager and
jit), dtypes, retracing, `eval_shape`, optax parity, plus scalars (optax crashes).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference_adaptive import ScaleBySm3, sm3
from _reference_base import store
from _registry import make_grads, make_params, to_f64

import gradtx

CASES = {
    "scale_by_sm3": (lambda: gradtx.scale_by_sm3(), lambda: ScaleBySm3()),
    "scale_by_sm3-b2": (
        lambda: gradtx.scale_by_sm3(b1=0.5, b2=0.9, eps=1e-6),
        lambda: ScaleBySm3(b1=0.5, b2=0.9, eps=1e-6),
    ),
    "sm3": (lambda: gradtx.sm3(0.05), lambda: sm3(0.05)),
    "sm3-no-momentum": (
        lambda: gradtx.sm3(0.05, momentum=0.0),
        lambda: sm3(0.05, momentum=0.0),
    ),
}
RTOL = 1e-5


def _sm3_state(state):
    """The ScaleBySM3State of a block or of the `sm3` chain (first member)."""
    return state if isinstance(state, gradtx.ScaleBySM3State) else state[0]


def _ref_state(state):
    return state if "mu" in state else state[0]


def _close(actual, expected, what):
    actual, expected = jax.tree.leaves(actual), jax.tree.leaves(expected)
    assert len(actual) == len(expected), what
    scale = max(1.0, *(float(np.max(np.abs(e), initial=0.0)) for e in expected))
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(
            np.asarray(a, np.float64), e, rtol=RTOL, atol=RTOL * scale, err_msg=what
        )


@pytest.mark.parametrize("case", list(CASES))
def test_sm3_matches_float64_reference(case, jit):
    make, make_ref = CASES[case]
    tx, ref = make(), make_ref()
    n = 100 if jit is jax.jit else 10

    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return gradtx.apply_updates(params, updates), state, updates

    step = jit(step)
    params = make_params()
    state = tx.init(params)
    rparams = to_f64(params)
    rstate = ref.init(rparams)
    for i, g in enumerate(make_grads(n)):
        params, state, updates = step(params, state, g)
        rupdates, rstate = ref.update(to_f64(g), rstate, rparams)
        rparams = {k: store(rparams[k] + rupdates[k], np.float32) for k in rparams}
        _close(updates, rupdates, f"updates at step {i}")
        _close(params, rparams, f"params at step {i}")
        ss, rs = _sm3_state(state), _ref_state(rstate)
        _close(ss.mu, rs["mu"], f"mu at step {i}")
        _close(ss.nu, rs["nu"], f"nu at step {i}")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("case", ["scale_by_sm3", "sm3"])
def test_sm3_keeps_gradient_dtype_and_state_layout(case, dtype):
    tx = CASES[case][0]()
    params = make_params(jnp.dtype(dtype))
    state = tx.init(params)
    layout = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    step = jax.jit(tx.update)
    for g in make_grads(3, jnp.dtype(dtype)):
        updates, state = step(g, state, params)
        assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(dtype)}
        assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == layout
        chex.assert_tree_all_finite((updates, state))


def test_sm3_second_jitted_step_does_not_retrace():
    tx = gradtx.sm3(0.1)
    params = make_params()
    traces = []

    @jax.jit
    def step(state, g):
        traces.append(None)
        return tx.update(g, state, params)[1]

    state = tx.init(params)
    for g in make_grads(3):
        state = step(state, g)
    assert len(traces) == 1


def test_sm3_init_works_under_eval_shape():
    tx = gradtx.scale_by_sm3()
    params = make_params()
    concrete = jax.tree.map(lambda x: (x.shape, x.dtype), tx.init(params))
    abstract = jax.tree.map(
        lambda x: (x.shape, x.dtype), jax.eval_shape(tx.init, params)
    )
    assert abstract == concrete


@pytest.mark.parametrize("case", ["scale_by_sm3", "sm3"])
def test_sm3_matches_optax_without_scalar_leaves(case, standard_promotion):
    ours = gradtx.scale_by_sm3() if case == "scale_by_sm3" else gradtx.sm3(0.05)
    theirs = optax.scale_by_sm3() if case == "scale_by_sm3" else optax.sm3(0.05)
    params = {k: v for k, v in make_params().items() if v.ndim}
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for g in make_grads(30):
        g = {k: g[k] for k in params}
        u_ours, s_ours = ours.update(g, s_ours, params)
        u_theirs, s_theirs = theirs.update(g, s_theirs, params)
        chex.assert_trees_all_close(u_ours, u_theirs, rtol=RTOL, atol=1e-6)
        chex.assert_trees_all_close(
            jax.tree.leaves(s_ours), jax.tree.leaves(s_theirs), rtol=RTOL, atol=1e-6
        )


def test_sm3_handles_scalar_leaves_that_optax_rejects(standard_promotion):
    params = {"s": jnp.asarray(1.0)}
    theirs = optax.scale_by_sm3()
    with pytest.raises(IndexError):
        theirs.update(params, theirs.init(params))
    tx = gradtx.scale_by_sm3(b1=0.0, eps=0.0)
    state = tx.init(params)
    for g, expected in [(3.0, 1.0), (4.0, 4.0 / 5.0)]:  # g / sqrt(sum of g²)
        updates, state = tx.update({"s": jnp.asarray(g)}, state)
        np.testing.assert_allclose(updates["s"], expected, rtol=1e-6)


def test_sm3_schedule_learning_rate():
    params = make_params()
    tx, constant = gradtx.sm3(lambda count: 0.05), gradtx.sm3(0.05)
    (g,) = make_grads(1)
    chex.assert_trees_all_close(
        tx.update(g, tx.init(params))[0], constant.update(g, constant.init(params))[0]
    )
