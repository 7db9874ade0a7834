# SPDX-License-Identifier: Apache-2.0
"""`gradtx.transforms` mirrors `optax.transforms`, and its per-example clips."""

import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.transforms
import pytest

import gradtx
import gradtx.transforms as T
from gradtx._types import ConditionFn

OPTAX_NAMES = sorted(n for n in dir(optax.transforms) if not n.startswith("_"))


def test_transforms_all_is_sorted_and_equals_optax_public_names():
    assert sorted(T.__all__) == T.__all__
    assert T.__all__ == OPTAX_NAMES


@pytest.mark.parametrize("name", OPTAX_NAMES, ids=OPTAX_NAMES)
def test_transforms_name_is_the_top_level_object(name):
    obj = getattr(T, name)
    if hasattr(gradtx, name):
        assert obj is getattr(gradtx, name)
    else:
        # optax keeps ConditionFn in optax.transforms only, and so does gradtx.
        assert not hasattr(optax, name)
        assert obj is ConditionFn


def test_transforms_public_dir_is_exactly_all():
    public = [n for n in dir(T) if not n.startswith("_")]
    assert sorted(public) == T.__all__


def test_transforms_imported_first_has_no_import_cycle():
    code = (
        "import gradtx.transforms as T, gradtx; "
        "assert all(getattr(T, n) is getattr(gradtx, n) "
        "for n in T.__all__ if n != 'ConditionFn'); print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "ok"


def test_condition_fn_drives_conditionally_transform():
    def every_other(step: jax.Array, **extra_args) -> jax.Array:
        del extra_args
        return step % 2 == 0

    fn: ConditionFn = every_other
    tx = T.conditionally_transform(T.clip(0.5), fn)
    u = jnp.array([2.0, -2.0])
    state = tx.init(u)
    first, state = tx.update(u, state)
    second, _ = tx.update(u, state)
    chex.assert_trees_all_equal(first, jnp.array([0.5, -0.5]))
    chex.assert_trees_all_equal(second, u)


# --- per-example clipping: float64 references written from the definitions ---


def _ref_global_clip(leaves, c):
    leaves = [np.asarray(x, np.float64) for x in leaves]
    batch = leaves[0].shape[0]
    norms = np.sqrt(sum((x.reshape(batch, -1) ** 2).sum(1) for x in leaves))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(norms == 0, 1.0, np.minimum(c / norms, 1.0))
    ratio = np.where(np.isnan(ratio), 1.0, ratio)
    sums = [np.tensordot(ratio, x, axes=1) for x in leaves]
    return sums, int((ratio < 1).sum())


def _ref_layer_clip(leaves, c, uniform):
    sizes = [np.asarray(x)[0].size for x in leaves]
    if uniform:
        limits = [c / np.sqrt(len(leaves))] * len(leaves)
    else:
        limits = [c * np.sqrt(s / sum(sizes)) for s in sizes]
    out = [_ref_global_clip([x], lim) for x, lim in zip(leaves, limits, strict=True)]
    return [s[0] for s, _ in out], [n for _, n in out]


def _grads():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3, 2)).astype(np.float32)
    b = rng.normal(size=(5, 4)).astype(np.float32)
    w[1] = 0.0  # an all-zero example: its norm is 0, never clipped
    b[1] = 0.0
    b[3] *= 1e-3
    w[3] *= 1e-3
    return [jnp.asarray(w), jnp.asarray(b)]


CLIPS = [0.0, 0.5, 2.0, float("inf")]


@pytest.mark.parametrize("c", CLIPS, ids=[f"c={c}" for c in CLIPS])
def test_per_example_global_norm_clip_matches_reference_and_optax(c, jit):
    grads = _grads()
    fn = jit(lambda g: T.per_example_global_norm_clip(g, c))
    sums, count = fn(grads)
    ref_sums, ref_count = _ref_global_clip(grads, c)
    chex.assert_trees_all_close(sums, ref_sums, rtol=1e-5, atol=1e-6)
    assert int(count) == ref_count
    assert count.dtype == jnp.int32
    want_sums, want_count = optax.per_example_global_norm_clip(grads, c)
    chex.assert_trees_all_close(sums, want_sums, rtol=1e-6, atol=1e-7)
    assert int(count) == int(want_count)


@pytest.mark.parametrize("uniform", [True, False], ids=["uniform", "by_size"])
@pytest.mark.parametrize("c", CLIPS[::2] + CLIPS[-1:], ids=["c=0.0", "c=2.0", "c=inf"])
def test_per_example_layer_norm_clip_matches_reference_and_optax(c, uniform, jit):
    grads = _grads()
    fn = jit(lambda g: T.per_example_layer_norm_clip(g, c, uniform))
    sums, counts = fn(grads)
    ref_sums, ref_counts = _ref_layer_clip(grads, c, uniform)
    chex.assert_trees_all_close(sums, ref_sums, rtol=1e-5, atol=1e-6)
    assert [int(n) for n in counts] == ref_counts
    want_sums, want_counts = optax.per_example_layer_norm_clip(grads, c, uniform)
    chex.assert_trees_all_close(sums, want_sums, rtol=1e-6, atol=1e-7)
    assert [int(n) for n in counts] == [int(n) for n in want_counts]


def test_per_example_global_norm_clip_rejects_negative_clip():
    with pytest.raises(gradtx.HyperparameterError, match="l2_norm_clip"):
        T.per_example_global_norm_clip(_grads(), -1.0)


def test_per_example_global_norm_clip_needs_a_shared_batch_axis():
    with pytest.raises(ValueError, match="batch"):
        T.per_example_global_norm_clip([jnp.ones((3, 2)), jnp.ones((4,))], 1.0)
