# SPDX-License-Identifier: Apache-2.0
"""Muon: float64 Newton-Schulz reference (eager and jit), optax parity, robustness."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _reference_contrib_b import ScaleByMuon, muon
from _registry_base import make_grads, make_params
from test_contrib_b_harness import run_both, run_reference

import gradtx

SHAPES = {"w": (4, 3), "v": (3, 5), "t": (2, 3, 4)}
SPEC3 = gradtx.MuonDimensionNumbers(reduction_axis=1, output_axis=2)


def _tree(seed, n=None, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    draw = lambda: {
        k: jnp.asarray(rng.standard_normal(s).astype(np.float32), dtype)
        for k, s in SHAPES.items()
    }
    return draw() if n is None else [draw() for _ in range(n)]


def _dims(spec_cls):
    return {"w": spec_cls(), "v": spec_cls(), "t": spec_cls(1, 2)}


BLOCK_CONFIGS = {
    "default": {},
    "heavy-ball": {"nesterov": False},
    "adaptive": {"adaptive": True},
    "spectral": {"preconditioning": "spectral"},
    "aol": {"preconditioning": "aol"},
    "schatten": {"preconditioning": "schatten"},
    "dion-rows": {"ns_coeffs": gradtx.contrib._muon.NS_PRESETS["dion"]},
    "three-steps-beta": {"ns_steps": 3, "beta": 0.8},
}


@pytest.mark.parametrize("kw", BLOCK_CONFIGS.values(), ids=BLOCK_CONFIGS.keys())
def test_scale_by_muon_matches_float64_newton_schulz(kw, jit):
    tx = gradtx.scale_by_muon(
        weight_dimension_numbers=_dims(gradtx.MuonDimensionNumbers), **kw
    )
    ref = ScaleByMuon(weight_dimension_numbers={"t": (1, 2)}, **kw)
    steps = 6 if jit is jax.jit else 2
    # The quintic iteration amplifies float32 rounding (its slope at 0 is 3.4):
    # 2e-4 is the float32 vs float64 agreement of five iterations.
    run_reference(tx, ref, _tree(0), _tree(1, steps), jit, rtol=2e-4)


ALIAS_CONFIGS = {
    "default": {},
    "wd-consistent-rms": {"weight_decay": 0.1, "consistent_rms": 0.2},
    "heavy-ball-adam-wd": {"nesterov": False, "adam_weight_decay": 0.1},
}


@pytest.mark.parametrize("kw", ALIAS_CONFIGS.values(), ids=ALIAS_CONFIGS.keys())
def test_muon_matches_reference_on_the_mixed_tree(kw, jit):
    # The registry's tree: a matrix (Muon) plus a vector and a scalar (AdamW).
    params = make_params()
    steps = 6 if jit is jax.jit else 2
    tx = gradtx.muon(0.05, **kw)
    ref = muon(0.05, params=params, **kw)
    run_reference(tx, ref, params, make_grads(steps), jit, check_state=False, rtol=2e-4)


OPTAX_CONFIGS = [
    {},
    {"adaptive": True, "nesterov": False},
    {"preconditioning": "aol", "ns_coeffs": "dion"},
    {"preconditioning": "schatten", "weight_decay": 0.1, "consistent_rms": 0.2},
]


@pytest.mark.parametrize("kw", OPTAX_CONFIGS)
def test_muon_matches_optax(kw, standard_promotion):
    params, grads = make_params(), make_grads(5)
    run_both(gradtx.muon(0.05, **kw), optax.contrib.muon(0.05, **kw), params, grads)


def test_scale_by_muon_with_dimension_numbers_matches_optax(standard_promotion):
    tx = gradtx.scale_by_muon(
        weight_dimension_numbers=_dims(gradtx.MuonDimensionNumbers)
    )
    otx = optax.contrib.scale_by_muon(
        weight_dimension_numbers=_dims(optax.contrib.MuonDimensionNumbers)
    )
    run_both(tx, otx, _tree(0), _tree(1, 3))


def test_muon_callable_dimension_numbers_route_vectors_to_adam(standard_promotion):
    # optax 0.2.8 calls such a callable on the masked tree and fails on its
    # MaskedNode leaves; gradtx gives the same numbers as optax with the tree.
    fn = lambda p: {
        k: gradtx.MuonDimensionNumbers() if v.ndim == 2 else None for k, v in p.items()
    }
    tree = {"w": optax.contrib.MuonDimensionNumbers(), "b": None, "s": None}
    run_both(
        gradtx.muon(0.05, muon_weight_dimension_numbers=fn),
        optax.contrib.muon(0.05, muon_weight_dimension_numbers=tree),
        make_params(),
        make_grads(4),
    )


@pytest.mark.parametrize(
    ("how", "dtype"),
    [
        ("frobenius", "float32"),
        ("frobenius", "bfloat16"),
        ("spectral", "float16"),
        ("aol", "bfloat16"),
        ("schatten", "float16"),
    ],
)
def test_muon_zero_matrix_gradient_and_low_precision_stay_finite(how, dtype):
    dtype = jnp.dtype(dtype)
    params = make_params(dtype)
    tx = gradtx.muon(0.05, preconditioning=how)
    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    step = jax.jit(tx.update)
    for g in [zeros, make_grads(1, dtype)[0], zeros]:
        updates, state = step(g, state, params)
        chex.assert_tree_all_finite(updates)
        chex.assert_tree_all_finite(state)
        assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
    first, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(first["w"], np.float32), 0.0)


def test_muon_bf16_matches_float32_within_bf16_tolerance():
    p32, g32 = make_params(), make_grads(1)[0]
    to16 = lambda t: jax.tree.map(lambda x: x.astype(jnp.bfloat16), t)
    tx = gradtx.scale_by_muon()
    w32, _ = tx.update({"w": g32["w"]}, tx.init({"w": p32["w"]}))
    w16, _ = tx.update(to16({"w": g32["w"]}), tx.init(to16({"w": p32["w"]})))
    np.testing.assert_allclose(np.asarray(w16["w"], np.float32), w32["w"], 2e-2, 1e-2)


def test_scale_by_muon_rejects_vectors_without_dimension_numbers():
    tx = gradtx.scale_by_muon()
    with pytest.raises(
        ValueError, match=r"gradtx\.scale_by_muon: needs leaves of rank"
    ):
        tx.update(jnp.ones(3), tx.init(jnp.ones(3)))


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"beta": 1.0}, "beta"),
        ({"eps": -1.0}, "eps"),
        ({"ns_steps": -1}, "ns_steps"),
        ({"ns_coeffs": (1.0, 2.0)}, "ns_coeffs"),
        ({"ns_coeffs": "nope"}, "ns_coeffs"),
        ({"preconditioning": "svd"}, "preconditioning"),
        ({"adam_b2": 1.5}, "adam_b2"),
        ({"adam_learning_rate": -1.0}, "adam_learning_rate"),
        ({"consistent_rms": float("nan")}, "consistent_rms"),
    ],
)
def test_muon_bad_hyperparameters_raise_at_construction(kwargs, arg):
    with pytest.raises(gradtx.HyperparameterError, match=rf"gradtx\.muon: {arg} "):
        gradtx.muon(0.1, **kwargs)


def test_float16_zero_gradient_optax_nan_gradtx_zero(standard_promotion):
    # optax runs Newton-Schulz in float16, where eps=1e-8 is 0: 0/0 = NaN.
    params = {"w": jnp.ones((4, 3), jnp.float16)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    dims = {"w": optax.contrib.MuonDimensionNumbers()}
    otx = optax.contrib.scale_by_muon(weight_dimension_numbers=dims)
    theirs, _ = otx.update(zeros, otx.init(params))
    assert np.isnan(np.asarray(theirs["w"], np.float32)).all()
    tx = gradtx.scale_by_muon()
    ours, _ = tx.update(zeros, tx.init(params))
    np.testing.assert_array_equal(np.asarray(ours["w"], np.float32), 0.0)
