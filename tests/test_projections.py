# SPDX-License-Identifier: Apache-2.0
"""gradtx.projections against float64 NumPy references and optax.projections.

The simplex reference finds the threshold by bisection in float64, a different
algorithm from the sort-based one under test, so agreement checks the algorithm.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import projections as P

RTOL = 1e-5


ZERO = {"a": jnp.zeros(3), "b": jnp.zeros(())}


def _tree(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    shapes = {"w": (4, 3), "b": (5,), "s": ()}
    return {
        k: jnp.asarray(scale * rng.standard_normal(s), jnp.float32)
        for k, s in shapes.items()
    }


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(tree[k], np.float64)) for k in tree])


def _unflat(flat, like):
    out, i = {}, 0
    for k, v in like.items():
        n = int(np.size(v))
        out[k] = flat[i : i + n].reshape(np.shape(v))
        i += n
    return out


def ref_simplex(x, s=1.0):
    """argmin ||p - x|| on {p >= 0, sum p = s}: p = max(x - theta, 0), bisection."""
    if s == 0:
        return np.zeros_like(x)
    lo, hi = np.min(x) - s / x.size - 1.0, np.max(x)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.sum(np.maximum(x - mid, 0)) > s else (lo, mid)
    return np.maximum(x - (lo + hi) / 2, 0)


def ref_l1_sphere(x, s=1.0):
    return np.sign(x) * ref_simplex(np.abs(x), s)


def ref_l1_ball(x, s=1.0):
    return x if np.sum(np.abs(x)) <= s else ref_l1_sphere(x, s)


def ref_l2_ball(x, s=1.0):
    n = np.linalg.norm(x)
    return x if n <= s else x * s / n


A = _tree(11)
FLAT_REFS = {
    "projection_non_negative": ({}, lambda x: np.maximum(x, 0)),
    "projection_hypercube": ({"scale": 0.7}, lambda x: np.clip(x, 0, 0.7)),
    "projection_linf_ball": ({"scale": 0.5}, lambda x: np.clip(x, -0.5, 0.5)),
    "projection_simplex": ({"scale": 2.0}, lambda x: ref_simplex(x, 2.0)),
    "projection_l1_sphere": ({"scale": 3.0}, lambda x: ref_l1_sphere(x, 3.0)),
    "projection_l1_ball": ({"scale": 3.0}, lambda x: ref_l1_ball(x, 3.0)),
    "projection_l1_ball-inside": ({"scale": 100.0}, lambda x: x),
    "projection_l2_sphere": ({"scale": 2.0}, lambda x: 2 * x / np.linalg.norm(x)),
    "projection_l2_ball": ({"scale": 2.0}, lambda x: ref_l2_ball(x, 2.0)),
    "projection_l2_ball-inside": ({"scale": 100.0}, lambda x: x),
    "projection_vector": (
        {"a": A},
        lambda x: (x @ _flat(A)) / (_flat(A) @ _flat(A)) * _flat(A),
    ),
    "projection_hyperplane": (
        {"a": A, "b": 0.5},
        lambda x: x + (0.5 - x @ _flat(A)) / (_flat(A) @ _flat(A)) * _flat(A),
    ),
    "projection_halfspace": (
        {"a": A, "b": -1.0},
        lambda x: x + min((-1.0 - x @ _flat(A)) / (_flat(A) @ _flat(A)), 0) * _flat(A),
    ),
}


def _call(case, lib, x):
    name = case.split("-")[0]
    kwargs, _ = FLAT_REFS[case]
    return getattr(lib, name)(x, **kwargs)


@pytest.mark.parametrize("case", list(FLAT_REFS))
def test_matches_float64_reference(case, jit):
    x = _tree(0, scale=2.0)
    got = jit(lambda t: _call(case, P, t))(x)
    expected = _unflat(FLAT_REFS[case][1](_flat(x)), x)
    chex.assert_trees_all_equal_shapes_and_dtypes(got, x)
    for k in x:
        np.testing.assert_allclose(got[k], expected[k], RTOL, RTOL * 2, err_msg=k)


@pytest.mark.parametrize("case", list(FLAT_REFS))
def test_matches_optax(case, jit, standard_promotion):
    x = _tree(5, scale=2.0)
    if case == "projection_hypercube":  # optax's fails on multi-leaf trees (below)
        x = x["w"]
    ours = jit(lambda t: _call(case, P, t))(x)
    theirs = jit(lambda t: _call(case, optax.projections, t))(x)
    chex.assert_trees_all_close(ours, theirs, rtol=RTOL, atol=RTOL)


def test_box_matches_reference_and_optax_with_tree_bounds(standard_promotion):
    x = _tree(2, scale=2.0)
    lower = jax.tree.map(lambda v: jnp.full(v.shape, -0.3), x)
    upper = {"w": 1.0, "b": 0.2, "s": 0.5}
    got = P.projection_box(x, lower, upper)
    for k in x:
        np.testing.assert_array_equal(got[k], np.clip(x[k], -0.3, upper[k]))
    chex.assert_trees_all_equal(got, optax.projections.projection_box(x, lower, upper))


def test_box_and_hypercube_accept_scalar_bounds_on_a_tree(standard_promotion):
    # optax's docstring allows a scalar bound, but jax.tree.map then fails.
    x = _tree(3, scale=2.0)
    got = P.projection_box(x, -0.5, 0.5)
    chex.assert_trees_all_equal(got, P.projection_linf_ball(x, 0.5))
    with pytest.raises(ValueError, match="pytree"):
        optax.projections.projection_hypercube(x)
    cube = P.projection_hypercube(x)
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in cube.values())


@pytest.mark.parametrize("seed", range(12))
def test_simplex_and_l1_sort_algorithm_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    x = rng.standard_normal(n) * rng.choice([0.01, 1.0, 100.0])
    if seed % 3 == 0:  # ties and repeated values
        x = np.round(x, 1)
    s = float(rng.choice([0.5, 1.0, 7.0]))
    got = np.asarray(jax.jit(P.projection_simplex)(jnp.asarray(x, jnp.float32), s))
    expected = ref_simplex(x.astype(np.float32).astype(np.float64), s)
    tol = 1e-5 * max(1.0, np.max(np.abs(x)))
    np.testing.assert_allclose(got, expected, atol=tol)
    assert got.min() >= 0
    assert abs(got.sum() - s) <= 1e-5 * max(s, np.abs(x).sum())
    got_l1 = np.asarray(jax.jit(P.projection_l1_ball)(jnp.asarray(x, jnp.float32), s))
    np.testing.assert_allclose(got_l1, ref_l1_ball(x, s), atol=tol)


def test_simplex_is_optimal_against_random_feasible_points():
    # Variational inequality of a projection: <x - p, y - p> <= 0 for y in the set.
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20)
    p = np.asarray(P.projection_simplex(jnp.asarray(x, jnp.float32)), np.float64)
    for _ in range(50):
        y = rng.dirichlet(np.ones(20))
        assert (x - p) @ (y - p) <= 1e-5


def test_vmap_equals_a_loop():
    xs = jnp.asarray(np.random.default_rng(1).standard_normal((6, 9)), jnp.float32)
    for fn in (P.projection_simplex, P.projection_l1_ball, P.projection_l2_sphere):
        one = jax.jit(fn)
        batched = jax.jit(jax.vmap(fn))(xs)
        looped = jnp.stack([one(x) for x in xs])
        chex.assert_trees_all_close(batched, looped, rtol=1e-6, atol=1e-7)


def test_simplex_jacobian_matches_optax(standard_promotion):
    x = jnp.asarray([0.9, 0.2, -0.3, 0.45, 0.1], jnp.float32)
    ours = jax.jit(jax.jacobian(P.projection_simplex))(x)
    theirs = jax.jit(jax.jacobian(optax.projections.projection_simplex))(x)
    chex.assert_trees_all_close(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("name", P.__all__)
def test_low_precision_inputs_keep_their_dtype(name, dtype):
    x = jax.tree.map(lambda v: v.astype(dtype), _tree(4))
    extra = {
        "projection_box": {"lower": -0.5, "upper": 0.5},
        "projection_vector": {"a": x},
        "projection_hyperplane": {"a": x, "b": 1.0},
        "projection_halfspace": {"a": x, "b": -1.0},
    }.get(name, {})
    out = getattr(P, name)(x, **extra)
    chex.assert_trees_all_equal_shapes_and_dtypes(out, x)
    chex.assert_tree_all_finite(out)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("projection_l2_ball", (ZERO, 0.0), ZERO),
        ("projection_simplex", (_tree(0), 0.0), jax.tree.map(jnp.zeros_like, _tree(0))),
        ("projection_l1_ball", (_tree(0), 0.0), jax.tree.map(jnp.zeros_like, _tree(0))),
        ("projection_vector", (_tree(0), jax.tree.map(jnp.zeros_like, _tree(0))), None),
        (
            "projection_hyperplane",
            (_tree(0), jax.tree.map(jnp.zeros_like, _tree(0)), 0.0),
            "x",
        ),
        (
            "projection_halfspace",
            (_tree(0), jax.tree.map(jnp.zeros_like, _tree(0)), 0.0),
            "x",
        ),
        # 4 elements: the point with equal elements 2 / sqrt(4) = 1.
        ("projection_l2_sphere", (ZERO, 2.0), {"a": jnp.ones(3), "b": jnp.ones(())}),
    ],
)
def test_degenerate_inputs_give_defined_points_where_optax_gives_nan(
    name, args, expected, standard_promotion
):
    got = getattr(P, name)(*args)
    chex.assert_tree_all_finite(got)
    if expected is None:  # the span of a = 0 is the origin
        expected = jax.tree.map(jnp.zeros_like, args[0])
    elif isinstance(expected, str):
        expected = args[0]
    chex.assert_trees_all_close(got, expected, atol=1e-6)
    theirs = getattr(optax.projections, name)(*args)
    assert not all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(theirs))


def test_all_matches_optax_projections():
    names = {n for n in dir(optax.projections) if n.startswith("projection_")}
    assert set(P.__all__) == names
    assert gradtx.projections is P
