# SPDX-License-Identifier: Apache-2.0
"""States survive a NumPy `.npz` round trip bit for bit (RELIABILITY.md C7)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import ALL, jitted, make_grads, make_params

import gradtx


def _save(path, state):
    np.savez(path, *[np.asarray(x) for x in jax.tree.leaves(state)])


def _restore(path, template):
    """Rebuilds a state from its leaves and the structure of `template` (from init)."""
    leaves = jax.tree.leaves(template)
    with np.load(path) as data:
        loaded = [data[f"arr_{i}"] for i in range(len(data.files))]
    assert len(loaded) == len(leaves), "checkpoint does not match the template"
    # NumPy stores bfloat16 as raw 2-byte records; the template knows the dtype.
    arrays = [
        jnp.asarray(x.view(t.dtype) if x.dtype != t.dtype else x)
        for x, t in zip(loaded, leaves, strict=True)
    ]
    return jax.tree.unflatten(jax.tree.structure(template), arrays)


def _bits(x):
    x = np.asarray(x)
    return x.view(f"u{x.dtype.itemsize}") if x.dtype.itemsize in (1, 2, 4, 8) else x


def _assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        assert x.shape == y.shape
        np.testing.assert_array_equal(_bits(x), _bits(y))


@pytest.mark.parametrize("entry", ALL)
def test_state_round_trip_is_bitwise_and_resumes_identically(entry, tmp_path):
    tx, step, _ = jitted(entry.id)
    params = make_params()
    template = tx.init(params)
    grads = make_grads(20)
    state = template
    for g in grads[:10]:
        params, state, _ = step(params, state, g)

    path = tmp_path / "state.npz"
    _save(path, state)
    restored = _restore(path, template)

    _assert_bitwise_equal(restored, state)
    for c in (v for _, v in gradtx.tree.get_all_with_path(restored, "count")):
        assert c.dtype == jnp.int32
    chex.assert_trees_all_equal_shapes_and_dtypes(restored, template)

    p_saved, p_fresh = params, params
    for g in grads[10:]:
        p_saved, restored, u_saved = step(p_saved, restored, g)
        p_fresh, state, u_fresh = step(p_fresh, state, g)
        _assert_bitwise_equal(u_saved, u_fresh)
        _assert_bitwise_equal(restored, state)
    _assert_bitwise_equal(p_saved, p_fresh)
