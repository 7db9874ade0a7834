# SPDX-License-Identifier: Apache-2.0
"""SAM (both modes), normalize (B5) and lookahead: float64 references and optax."""

from __future__ import annotations

import _reference
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import adam, sgd
from _reference_contrib_b import Normalize
from _registry_base import make_grads, make_params
from test_contrib_b_harness import Lookahead, Sam, close, run_both, run_reference

import gradtx


def _adv(rho=0.1):
    return gradtx.chain(gradtx.normalize(), gradtx.sgd(rho))


def _ref_adv(rho=0.1):
    return _reference.Chain(Normalize(), sgd(rho))


def _optax_adv(rho=0.1):
    return optax.chain(optax.contrib.normalize(), optax.sgd(rho))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_normalize_zero_gradient_gives_zero_not_nan(dtype):
    # RELIABILITY.md B5: optax divides by the zero norm (0/0 = NaN).
    zeros = jax.tree.map(jnp.zeros_like, make_params(jnp.dtype(dtype)))
    tx = gradtx.normalize()
    out, _ = jax.jit(tx.update)(zeros, tx.init(zeros))
    for leaf in jax.tree.leaves(out):
        assert leaf.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(leaf, np.float32), 0.0)


def test_normalize_differs_from_optax_only_at_zero(standard_promotion):
    zeros = jax.tree.map(jnp.zeros_like, make_params())
    theirs, _ = optax.contrib.normalize().update(zeros, optax.EmptyState())
    assert np.isnan(np.asarray(theirs["w"])).all()


def test_sam_zero_gradient_step_stays_finite():
    params = make_params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    tx = gradtx.sam(gradtx.sgd(0.1), _adv())
    state = tx.init(params)
    for _ in range(4):
        updates, state = tx.update(zeros, state, params)
        chex.assert_tree_all_finite((updates, state))


SAM_CONFIGS = {
    "default": {},
    "period3-keep-state": {"sync_period": 3, "reset_state": False},
    "period1": {"sync_period": 1},
}


@pytest.mark.parametrize("kw", SAM_CONFIGS.values(), ids=SAM_CONFIGS.keys())
def test_sam_transparent_matches_reference(kw, jit):
    tx = gradtx.sam(gradtx.adam(0.01), _adv(), **kw)
    ref = Sam(adam(0.01), _ref_adv(), **kw)
    steps = 12 if jit is jax.jit else 4
    run_reference(tx, ref, make_params(), make_grads(steps), jit)


def _grad_fns():
    gx = lambda p, i: jax.tree.map(lambda x: jnp.sin(x) * (i + 1), p)
    ref = lambda p, i: {k: np.sin(v) * (i + 1) for k, v in p.items()}
    return lambda is_ref: {"grad_fn": ref if is_ref else gx}


@pytest.mark.parametrize("period", [2, 3])
def test_sam_opaque_matches_reference(period, jit):
    tx = gradtx.sam(gradtx.adam(0.01), _adv(), sync_period=period, opaque_mode=True)
    ref = Sam(adam(0.01), _ref_adv(), sync_period=period, opaque_mode=True)
    steps = 10 if jit is jax.jit else 3
    run_reference(tx, ref, make_params(), make_grads(steps), jit, extra=_grad_fns())


@pytest.mark.parametrize("kw", [*SAM_CONFIGS.values(), {"opaque_mode": True}])
def test_sam_matches_optax(kw, standard_promotion):
    tx = gradtx.sam(gradtx.adam(0.01), _adv(), **kw)
    otx = optax.contrib.sam(optax.adam(0.01), _optax_adv(), **kw)
    extra = _grad_fns()(False) if kw.get("opaque_mode") else None
    run_both(tx, otx, make_params(), make_grads(8), extra)


def test_sam_opaque_without_grad_fn_raises():
    tx = gradtx.sam(gradtx.sgd(0.1), _adv(), opaque_mode=True)
    params = make_params()
    with pytest.raises(ValueError, match=r"gradtx\.sam: .*grad_fn"):
        tx.update(params, tx.init(params), params)


def test_sam_bf16_updates_keep_dtype_under_jit():
    params = make_params(jnp.bfloat16)
    tx = gradtx.sam(gradtx.adam(0.01), _adv())
    state, step = tx.init(params), jax.jit(tx.update)
    for g in make_grads(3, jnp.bfloat16):
        updates, state = step(g, state, params)
        assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(jnp.bfloat16)}
        params = gradtx.apply_updates(params, updates)


@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_sam_and_lookahead_reject_bad_sync_period(value):
    with pytest.raises(gradtx.HyperparameterError, match=r"gradtx\.sam: sync_period"):
        gradtx.sam(gradtx.sgd(0.1), _adv(), sync_period=value)
    with pytest.raises(gradtx.HyperparameterError, match=r"lookahead: sync_period"):
        gradtx.lookahead(gradtx.sgd(0.1), value, 0.5)


LOOKAHEAD_CONFIGS = {"period3": (3, 0.5, False), "reset": (2, 0.3, True)}


@pytest.mark.parametrize(
    "cfg", LOOKAHEAD_CONFIGS.values(), ids=LOOKAHEAD_CONFIGS.keys()
)
def test_lookahead_matches_reference(cfg, jit):
    k, a, reset = cfg
    tx = gradtx.lookahead(gradtx.adam(0.01), k, a, reset_state=reset)
    ref = Lookahead(adam(0.01), k, a, reset_state=reset)
    params = gradtx.LookaheadParams.init_synced(make_params())
    steps = 12 if jit is jax.jit else 4
    run_reference(tx, ref, params, make_grads(steps), jit)


@pytest.mark.parametrize(
    "cfg", LOOKAHEAD_CONFIGS.values(), ids=LOOKAHEAD_CONFIGS.keys()
)
def test_lookahead_matches_optax(cfg, standard_promotion):
    k, a, reset = cfg
    tx = gradtx.lookahead(gradtx.adam(0.01), k, a, reset_state=reset)
    otx = optax.lookahead(optax.adam(0.01), k, a, reset_state=reset)
    params = gradtx.LookaheadParams.init_synced(make_params())
    oparams = optax.LookaheadParams.init_synced(make_params())
    run_both(tx, otx, params, make_grads(8), oparams=oparams)


def test_lookahead_slow_params_follow_the_paper_after_a_sync():
    # Two fast SGD steps of -1 from 0, then slow = 0 + 0.5 * (-2 - 0) = -1 = fast.
    tx = gradtx.lookahead(gradtx.sgd(1.0), sync_period=2, slow_step_size=0.5)
    p = gradtx.LookaheadParams.init_synced(jnp.zeros(2))
    state = tx.init(p)
    for _ in range(2):
        u, state = tx.update(jnp.ones(2), state, p)
        p = gradtx.apply_updates(p, u)
    close(p.slow, np.full(2, -1.0), "slow")
    close(p.fast, np.full(2, -1.0), "fast")
    assert int(state.steps_since_sync) == 0


def test_lookahead_needs_lookahead_params():
    tx = gradtx.lookahead(gradtx.sgd(1.0), 2, 0.5)
    with pytest.raises(ValueError, match=r"gradtx\.lookahead: params must be"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)), jnp.ones(2))
