# SPDX-License-Identifier: Apache-2.0
"""Per-example clips, unit-wise norms, and zero-norm safety of the geometry blocks.

The per-example clips take grads with a leading batch axis and return sums, so they
live here rather than in the registry: float64 references (McMahan et al., 2017;
Brock et al., 2021), eager and jit, and optax parity.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

RTOL = 1e-5


def _batch(seed=0, n=6, dtype=jnp.float32, scale=1.0):
    rng = np.random.default_rng(seed)
    shapes = {"w": (n, 4, 3), "b": (n, 5), "s": (n,)}
    tree = {k: scale * rng.standard_normal(s) for k, s in shapes.items()}
    tree["b"][0] = 0.0  # one example with a zero leaf
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


def _example_norms(leaves):
    return np.sqrt(sum(np.sum(np.square(x).reshape(len(x), -1), 1) for x in leaves))


def ref_global_clip(grads, c):
    """Abadi et al., 2016: g_i · min(1, c / ||g_i||), summed over examples."""
    g = {k: np.asarray(v, np.float64) for k, v in grads.items()}
    norms = _example_norms(list(g.values()))
    f = np.where(norms <= c, 1.0, c / np.where(norms == 0, 1, norms))
    return {k: np.tensordot(f, v, axes=1) for k, v in g.items()}, int(np.sum(f < 1))


def ref_layer_clip(grads, c, uniform=True):
    """Per-leaf limits c / sqrt(K), or c sqrt(D_i / D) (McMahan et al., 2017)."""
    total = sum(np.size(v[0]) for v in grads.values())
    sums, counts = {}, {}
    for k, v in grads.items():
        share = 1 / len(grads) if uniform else np.size(v[0]) / total
        s, counts[k] = ref_global_clip({k: v}, c * np.sqrt(share))
        sums[k] = s[k]
    return sums, counts


@pytest.mark.parametrize("c", [0.0, 2.0, 4.5, 1e6])
def test_per_example_global_norm_clip_matches_reference(c, jit):
    grads = _batch()
    sums, clipped = jit(gradtx.per_example_global_norm_clip)(grads, c)
    expected, n = ref_global_clip(grads, c)
    assert clipped.dtype == jnp.int32
    assert int(clipped) == n
    for k in grads:
        np.testing.assert_allclose(sums[k], expected[k], RTOL, RTOL * 10, err_msg=k)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("c", [0.0, 3.0, 1e6])
def test_per_example_layer_norm_clip_matches_reference(c, uniform, jit):
    grads = _batch(1)
    fn = lambda g: gradtx.per_example_layer_norm_clip(g, c, uniform)
    sums, counts = jit(fn)(grads)
    expected, n = ref_layer_clip(grads, c, uniform)
    for k in grads:
        np.testing.assert_allclose(sums[k], expected[k], RTOL, RTOL * 10, err_msg=k)
        assert int(counts[k]) == n[k], k


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("c", [0.0, 3.0])
def test_per_example_clips_match_optax(c, uniform, jit, standard_promotion):
    grads = _batch(2)
    ours = jit(gradtx.per_example_global_norm_clip)(grads, c)
    theirs = jit(optax.per_example_global_norm_clip)(grads, c)
    chex.assert_trees_all_close(ours, theirs, rtol=RTOL, atol=1e-5)
    layer = lambda lib: jit(lambda g: lib.per_example_layer_norm_clip(g, c, uniform))
    chex.assert_trees_all_close(
        layer(gradtx)(grads), layer(optax)(grads), rtol=RTOL, atol=1e-5
    )


def test_per_example_clips_keep_dtype_and_sum_in_float32():
    # optax returns float32 sums for bf16 grads; gradtx keeps the grads' dtype and
    # sums in float32, so the result is the float32 sum rounded once.
    grads = _batch(3, dtype=jnp.bfloat16, n=64)
    sums, _ = gradtx.per_example_global_norm_clip(grads, 2.0)
    f32, _ = gradtx.per_example_global_norm_clip(
        jax.tree.map(lambda x: x.astype(jnp.float32), grads), 2.0
    )
    for k in grads:
        assert sums[k].dtype == jnp.bfloat16
        np.testing.assert_array_equal(sums[k], f32[k].astype(jnp.bfloat16))


def test_per_example_clips_need_a_shared_batch_axis():
    with pytest.raises(gradtx.TreeMismatchError, match="batch"):
        gradtx.per_example_global_norm_clip({"a": jnp.ones(3), "b": jnp.ones(())}, 1.0)
    with pytest.raises(gradtx.TreeMismatchError, match="batch"):
        gradtx.per_example_layer_norm_clip([jnp.ones((2, 3)), jnp.ones((3, 3))], 1.0)
    with pytest.raises(gradtx.HyperparameterError, match="l2_norm_clip"):
        gradtx.per_example_global_norm_clip([jnp.ones((2, 3))], -1.0)


SHAPES = [(7,), (4, 3), (2, 4, 3), (3, 3, 2, 4), (2, 2, 2, 3, 4), (1, 5)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_unitwise_norm_matches_optax_and_reference(shape, standard_promotion):
    x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
    ours = gradtx.unitwise_norm(x)
    chex.assert_trees_all_close(ours, optax.transforms.unitwise_norm(x), rtol=RTOL)
    axes = {1: None, 2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}[len(shape)]
    if shape == (1, 5):
        axes = None  # squeezes to a vector: the whole array is one unit
    x64 = np.asarray(x, np.float64)
    expected = np.sqrt(np.sum(x64**2, axis=axes, keepdims=True))
    np.testing.assert_allclose(ours, np.broadcast_to(expected, shape), RTOL)
    explicit = gradtx.unitwise_norm(x, axis=-1)
    np.testing.assert_allclose(
        explicit,
        np.broadcast_to(np.sqrt(np.sum(x64**2, -1, keepdims=True)), shape),
        RTOL,
    )


def test_unitwise_norm_rejects_rank_6_without_axis():
    with pytest.raises(ValueError, match="axis"):
        gradtx.unitwise_norm(jnp.ones((2,) * 6))
    with pytest.raises(ValueError, match="shape"):
        gradtx.unitwise_clip(jnp.ones(2), jnp.ones(3), jnp.ones(2))


@pytest.mark.parametrize("axis", [None, (0, 1), -1])
def test_adaptive_grad_clip_on_conv_kernels_matches_optax(
    axis, jit, standard_promotion
):
    rng = np.random.default_rng(4)
    params = {"k": jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.float32)}
    grads = {"k": jnp.asarray(2 * rng.standard_normal((3, 3, 2, 4)), jnp.float32)}
    ours = gradtx.adaptive_grad_clip(0.3, axis=axis)
    theirs = optax.adaptive_grad_clip(0.3, axis=axis)
    u = jit(lambda g, p: ours.update(g, ours.init(p), p)[0])(grads, params)
    ou = jit(lambda g, p: theirs.update(g, theirs.init(p), p)[0])(grads, params)
    chex.assert_trees_all_close(u, ou, rtol=RTOL, atol=1e-6)


# --- zero norms: finite results in every dtype (RELIABILITY.md B1-B5 class) ---

SAFE = {
    "trust_ratio": lambda: gradtx.scale_by_trust_ratio(),
    "trust_ratio-eps": lambda: gradtx.scale_by_trust_ratio(0.0, 1.0, 1e-3),
    "param_block_norm": lambda: gradtx.scale_by_param_block_norm(0.0),
    "param_block_rms": lambda: gradtx.scale_by_param_block_rms(0.0),
    "normalize_by_update_norm": lambda: gradtx.normalize_by_update_norm(eps=0.0),
    "agc": lambda: gradtx.adaptive_grad_clip(0.0),
    "agc-eps0": lambda: gradtx.adaptive_grad_clip(0.1, eps=0.0),
    "lamb": lambda: gradtx.lamb(0.1, weight_decay=0.1),
    "lars": lambda: gradtx.lars(0.1, weight_decay=0.1),
    "fromage": lambda: gradtx.fromage(0.1),
    "lion": lambda: gradtx.lion(0.1),
}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("zero", ["params", "grads", "both"])
@pytest.mark.parametrize("name", list(SAFE))
def test_zero_params_or_grads_give_finite_updates(name, zero, dtype):
    tx = SAFE[name]()
    tree = {"w": jnp.ones((4, 3)), "b": jnp.full((5,), -2.0), "s": jnp.asarray(0.5)}
    tree = jax.tree.map(lambda x: x.astype(dtype), tree)
    zeros = jax.tree.map(jnp.zeros_like, tree)
    params = zeros if zero in ("params", "both") else tree
    grads = zeros if zero in ("grads", "both") else tree
    updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    chex.assert_tree_all_finite(updates)
    chex.assert_tree_all_finite(state)
    assert all(u.dtype == jnp.dtype(dtype) for u in jax.tree.leaves(updates))
    if zero != "params" and name not in ("lamb", "lars", "fromage", "lion"):
        for u in jax.tree.leaves(updates):  # no decay term: zero grads, zero updates
            np.testing.assert_array_equal(u, np.zeros_like(u))


@pytest.mark.parametrize("name", ["trust_ratio", "normalize_by_update_norm", "agc"])
def test_gradient_through_zero_norm_is_finite(name):
    tx = SAFE[name]()
    params = {"w": jnp.zeros((2, 2))}

    def loss(g):
        u, _ = tx.update(g, tx.init(params), params)
        return jnp.sum(u["w"])

    chex.assert_tree_all_finite(jax.grad(loss)({"w": jnp.zeros((2, 2))}))


def test_normalize_by_update_norm_without_eps_is_zero_where_optax_is_nan(
    standard_promotion,
):
    g = {"w": jnp.zeros(3)}
    ours = gradtx.normalize_by_update_norm(eps=0.0)
    theirs = optax.normalize_by_update_norm(eps=0.0)
    np.testing.assert_array_equal(ours.update(g, ours.init(g))[0]["w"], np.zeros(3))
    assert bool(jnp.isnan(theirs.update(g, theirs.init(g))[0]["w"]).all())


def test_float16_norms_do_not_overflow(standard_promotion):
    # 300² · 12 > 65504: a float16 sum of squares is inf, and optax's trust ratio
    # becomes ||p|| / inf = 0, silently zeroing the update.
    grads = {"w": jnp.full((4, 3), 300.0, jnp.float16)}
    params = {"w": jnp.ones((4, 3), jnp.float16)}
    tx, otx = gradtx.scale_by_trust_ratio(), optax.scale_by_trust_ratio()
    u = tx.update(grads, tx.init(params), params)[0]["w"]
    ou = otx.update(grads, otx.init(params), params)[0]["w"]
    np.testing.assert_allclose(np.asarray(u, np.float32), np.ones((4, 3)), rtol=1e-3)
    np.testing.assert_array_equal(ou, np.zeros((4, 3)))


def test_lion_mode_is_checked_at_construction():
    with pytest.raises(gradtx.HyperparameterError, match="mode"):
        gradtx.scale_by_lion(mode="soft")  # type: ignore[arg-type]
