# SPDX-License-Identifier: Apache-2.0
"""GaLore, Sophia with Hutchinson, DP-SGD and complex splitting: references, optax."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference import adam
from _reference_contrib_b import (
    DpAggregate,
    ScaleByGalore,
    dpsgd,
    galore,
    sophia,
    split_real_and_imaginary,
)
from _registry_base import make_grads, make_params
from test_contrib_b_harness import close, run_both, run_reference

import gradtx

contrib = gradtx.contrib

# --- GaLore ---

GALORE = {
    "rank2": {"rank": 2},
    "rank2-gap3-wd": {
        "rank": 2,
        "update_proj_gap": 3,
        "weight_decay": 0.1,
        "scale": 0.5,
    },
}


@pytest.mark.parametrize("kw", GALORE.values(), ids=GALORE.keys())
def test_galore_matches_reference(kw, jit):
    # The state is left out: the SVD fixes each singular vector only up to its sign,
    # and the projected moments flip with it; the updates do not.
    steps = 12 if jit is jax.jit else 4
    tx = gradtx.galore(0.05, **kw)
    ref = galore(0.05, **kw)
    run_reference(tx, ref, make_params(), make_grads(steps), jit, check_state=False)


def test_galore_projector_spans_the_top_singular_subspace():
    g = make_grads(1)[0]
    tx = gradtx.scale_by_galore(rank=2)
    _, state = tx.update(g, tx.init(make_params()), None)
    ref = ScaleByGalore(rank=2)
    _, rstate = ref.update(jax.tree.map(np.float64, g), ref.init(make_params()))
    p, rp = np.asarray(state.projector["w"], np.float64), rstate["projector"]["w"]
    close(p @ p.T, rp @ rp.T, "P Pᵀ")
    assert state.projector["b"].shape == (0, 0)


@pytest.mark.parametrize("kw", GALORE.values(), ids=GALORE.keys())
def test_galore_matches_optax(kw, standard_promotion):
    run_both(
        gradtx.galore(0.05, **kw),
        optax.contrib.galore(0.05, **kw),
        make_params(),
        make_grads(5),
    )


def test_galore_dimension_numbers_project_a_3d_weight(standard_promotion):
    params = {
        "t": jnp.asarray(
            np.random.default_rng(0).standard_normal((4, 2, 3)), jnp.float32
        )
    }
    grads = [
        jax.tree.map(lambda x, i=i: jnp.sin(x * (i + 1)), params) for i in range(4)
    ]
    dims = {"t": gradtx.GaLoreDimensionNumbers(0, (1, 2))}
    odims = {"t": optax.contrib.GaLoreDimensionNumbers(0, (1, 2))}
    run_both(
        gradtx.galore(0.05, rank=2, weight_dimension_numbers=dims),
        optax.contrib.galore(0.05, rank=2, weight_dimension_numbers=odims),
        params,
        grads,
    )


@pytest.mark.parametrize(
    ("kw", "arg"),
    [
        ({"rank": 0}, "rank"),
        ({"rank": 2.5}, "rank"),
        ({"update_proj_gap": 0}, "update_proj_gap"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"scale": float("inf")}, "scale"),
    ],
)
def test_galore_bad_hyperparameters_raise(kw, arg):
    with pytest.raises(gradtx.HyperparameterError, match=rf"gradtx\.galore: {arg} "):
        gradtx.galore(0.1, **kw)


# --- Sophia and Hutchinson's estimator ---

A = {
    "w": 1.0 + np.arange(12.0).reshape(4, 3) / 4,
    "b": np.linspace(0.5, 2, 5),
    "s": 3.0,
}


def _obj(p):
    return 0.5 * sum(jnp.sum(jnp.asarray(A[k], jnp.float32) * p[k] ** 2) for k in p)


def _sophia_extra(is_ref):
    # A diagonal quadratic: z (H z) = A exactly for every Rademacher z.
    return {} if is_ref else {"obj_fn": _obj}


SOPHIA = {
    "default": {},
    "interval3-noclip": {
        "update_interval": 3,
        "clip_threshold": None,
        "gamma": 0.05,
        "weight_decay": 0.1,
    },
}


@pytest.mark.parametrize("kw", SOPHIA.values(), ids=SOPHIA.keys())
def test_sophia_matches_reference(kw, jit):
    steps = 12 if jit is jax.jit else 2
    ref = sophia(0.05, hessian_diag=lambda p: {k: A[k] + 0 * p[k] for k in p}, **kw)
    run_reference(
        contrib.sophia(0.05, **kw),
        ref,
        make_params(),
        make_grads(steps),
        jit,
        extra=_sophia_extra,
        check_state=False,
    )


def _nonquadratic(p):
    # Off-diagonal Hessian entries 0.02 keep every Hutchinson estimate positive.
    return _obj(p) + 0.01 * sum(jnp.sum(x) for x in jax.tree.leaves(p)) ** 2


@pytest.mark.parametrize("kw", SOPHIA.values(), ids=SOPHIA.keys())
def test_sophia_matches_optax(kw, standard_promotion):
    run_both(
        contrib.sophia(0.05, **kw),
        optax.contrib.sophia(0.05, **kw),
        make_params(),
        make_grads(7),
        {"obj_fn": _nonquadratic},
        jit=True,
    )


def test_hutchinson_estimate_is_z_times_hessian_times_z(standard_promotion):
    params = make_params()
    tx = gradtx.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(7))
    est, state = tx.update(None, tx.init(params), params, obj_fn=_nonquadratic)
    key, sub = jax.random.split(jax.random.PRNGKey(7))
    leaves, treedef = jax.tree.flatten(params)
    z = treedef.unflatten(
        [
            jax.random.rademacher(k, x.shape, jnp.float32)
            for k, x in zip(jax.random.split(sub, len(leaves)), leaves, strict=True)
        ]
    )
    hz = jax.jvp(jax.grad(_nonquadratic), (params,), (z,))[1]
    close(est, jax.tree.map(lambda h, r: np.float64(h) * np.float64(r), hz, z), "zHz")
    np.testing.assert_array_equal(state.key, key)
    otx = optax.contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(7))
    theirs, _ = otx.update(None, otx.init(params), params, obj_fn=_nonquadratic)
    close(est, jax.tree.map(np.asarray, theirs), "optax")


def test_sophia_needs_obj_fn_and_checks_hyperparameters():
    tx = contrib.sophia(0.1)
    params = make_params()
    with pytest.raises(ValueError, match="obj_fn"):
        tx.update(params, tx.init(params), params)
    for kw, arg in [
        ({"b2": 1.0}, "b2"),
        ({"gamma": -1.0}, "gamma"),
        ({"update_interval": 0}, "update_interval"),
    ]:
        with pytest.raises(gradtx.HyperparameterError, match=rf"sophia: {arg} "):
            contrib.sophia(0.1, **kw)


# --- DP-SGD ---


def _per_example(n_steps, batch=4, seed=5):
    rng = np.random.default_rng(seed)
    shapes = {k: np.shape(v) for k, v in make_params().items()}
    return [
        {
            k: jnp.asarray(3 * rng.standard_normal((batch, *s)), jnp.float32)
            for k, s in shapes.items()
        }
        for _ in range(n_steps)
    ]


def test_dp_aggregate_matches_reference(jit):
    tx = contrib.differentially_private_aggregate(1.5, 0.7, key=3)
    ref = DpAggregate(1.5, 0.7, jax.random.key(3))
    run_reference(tx, ref, make_params(), _per_example(3), jit)


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9, "nesterov": True}])
def test_dpsgd_matches_reference_and_optax(kw, jit, standard_promotion):
    args = (0.1, 1.0, 0.5, 11)
    run_reference(
        contrib.dpsgd(*args, **kw),
        dpsgd(*args, **kw),
        make_params(),
        _per_example(3),
        jit,
    )
    with pytest.warns(DeprecationWarning, match="seed"):  # optax's dpsgd uses it
        otx = optax.contrib.dpsgd(*args, **kw)
    run_both(contrib.dpsgd(*args, **kw), otx, make_params(), _per_example(3))


def test_dp_aggregate_clips_zero_and_huge_examples():
    tx = contrib.differentially_private_aggregate(1.0, 0.0, key=0)
    g = jnp.array([[0.0, 0.0], [300.0, 400.0]])
    out, _ = tx.update(g, tx.init(None))
    close(out, np.array([0.3, 0.4]), "mean of the clipped examples")
    out16, _ = tx.update(g.astype(jnp.float16), tx.init(None))
    chex.assert_tree_all_finite(out16)
    assert out16.dtype == jnp.float16


def test_dp_noise_advances_the_key():
    tx = contrib.differentially_private_aggregate(1.0, 1.0, key=0)
    g = _per_example(1)[0]
    a, s1 = tx.update(g, tx.init(None))
    b, _ = tx.update(g, s1)
    assert not np.allclose(a["w"], b["w"])
    with pytest.raises(gradtx.HyperparameterError, match="key or seed"):
        contrib.differentially_private_aggregate(1.0, 1.0, key=0, seed=1)


# --- complex params ---


def _complex(seed, n=None):
    rng = np.random.default_rng(seed)
    draw = lambda: {
        "c": jnp.asarray(
            rng.standard_normal((4, 3)) + 1j * rng.standard_normal((4, 3)),
            jnp.complex64,
        ),
        "r": jnp.asarray(rng.standard_normal(5), jnp.float32),
    }
    return draw() if n is None else [draw() for _ in range(n)]


def test_split_real_and_imaginary_matches_reference(jit):
    tx = gradtx.split_real_and_imaginary(gradtx.adam(0.01))
    ref = split_real_and_imaginary(adam(0.01))
    run_reference(tx, ref, _complex(0), _complex(1, 8), jit, check_state=False)


def test_split_equals_the_optimizer_on_the_real_view():
    tx, real = gradtx.split_real_and_imaginary(gradtx.adam(0.01)), gradtx.adam(0.01)
    view = lambda t: {"re": jnp.real(t["c"]), "im": jnp.imag(t["c"]), "r": t["r"]}
    p = _complex(0)
    s, rs = tx.init(p), real.init(view(p))
    for g in _complex(1, 5):
        u, s = tx.update(g, s, p)
        ru, rs = real.update(view(g), rs, view(p))
        chex.assert_trees_all_equal(view(u), ru)
        assert u["c"].dtype == jnp.complex64


def test_split_real_and_imaginary_matches_optax(standard_promotion):
    run_both(
        gradtx.split_real_and_imaginary(gradtx.adam(0.01)),
        optax.contrib.split_real_and_imaginary(optax.adam(0.01)),
        _complex(0),
        _complex(1, 5),
    )
