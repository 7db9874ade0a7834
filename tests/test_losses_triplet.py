# SPDX-License-Identifier: Apache-2.0
"""`losses.triplet_margin_loss` against a float64 reference and optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx.losses import triplet_margin_loss

RNG = np.random.default_rng(7)
A, P, N = (RNG.standard_normal((6, 5)).astype(np.float32) for _ in range(3))


def _reference(a, p, n, axis=-1, degree=2.0, margin=1.0, eps=1e-6):
    a, p, n = (np.asarray(x, np.float64) for x in (a, p, n))
    dist = lambda x, y: (np.sum(np.abs(x - y) ** degree, axis) + eps) ** (1 / degree)
    return np.maximum(dist(a, p) - dist(a, n) + margin, 0.0)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"norm_degree": 1}, {"norm_degree": 3, "margin": 3.0}, {"axis": 0}],
    ids=["default", "l1", "l3", "axis0"],
)
def test_triplet_margin_loss_matches_the_reference(kwargs, jit):
    fn = jax.jit(triplet_margin_loss, static_argnames="axis") if jit else None
    fn = fn or triplet_margin_loss
    got = fn(A, P, N, **kwargs)
    ref_kwargs = {"degree": kwargs.get("norm_degree", 2.0), **kwargs}
    ref_kwargs.pop("norm_degree", None)
    np.testing.assert_allclose(got, _reference(A, P, N, **ref_kwargs), rtol=1e-5)
    assert got.dtype == jnp.float32


@pytest.mark.parametrize("degree", [2, 4])
def test_triplet_margin_loss_equals_optax_for_even_degrees(degree):
    ours = triplet_margin_loss(A, P, N, norm_degree=degree, margin=2.0)
    theirs = optax.losses.triplet_margin_loss(A, P, N, norm_degree=degree, margin=2.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_odd_degrees_are_true_norms_where_optax_is_not():
    # optax sums signed powers: a signed l1 "distance" and NaN for degree 3.
    ours = triplet_margin_loss(A, P, N, norm_degree=3, margin=3.0)
    theirs = optax.losses.triplet_margin_loss(A, P, N, norm_degree=3, margin=3.0)
    assert np.isfinite(ours).all()
    assert np.isnan(theirs).any()


def test_gradient_is_finite_when_embeddings_coincide():
    grad = jax.grad(lambda a: triplet_margin_loss(a, a, N[:1]).sum())(A[:1])
    assert np.isfinite(grad).all()


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"norm_degree": 0.0}, "norm_degree"),
        ({"margin": float("nan")}, "margin"),
        ({"eps": -1.0}, "eps"),
        ({"axis": 2}, "axis"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, pattern):
    with pytest.raises(
        gradtx.HyperparameterError, match=f"triplet_margin_loss: {pattern}"
    ):
        triplet_margin_loss(A, P, N, **kwargs)


def test_integer_embeddings_raise_type_error():
    with pytest.raises(TypeError, match="anchors"):
        triplet_margin_loss(np.zeros((2, 2), np.int32), P[:2, :2], N[:2, :2])
