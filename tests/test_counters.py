# SPDX-License-Identifier: Apache-2.0
"""Step counters saturate at the int32 maximum, never wrap (RELIABILITY.md C4)."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import pytest
from _registry import (
    WITH_COUNT,
    Trajectory,
    jitted,
    make_grads,
    make_params,
    state_to_reference,
    to_f64,
)

import gradtx

INT32_MAX = 2**31 - 1


def _counts(state):
    return [v for _, v in gradtx.tree.get_all_with_path(state, "count")]


@pytest.mark.parametrize("entry", WITH_COUNT)
def test_count_saturates_at_int32_max(entry):
    tx, step, _ = jitted(entry.id)
    params = make_params()
    g1, g2, g3 = make_grads(3)
    params, state, _ = step(params, tx.init(params), g1)
    state = gradtx.tree.set(state, count=jnp.asarray(INT32_MAX, jnp.int32))
    for g in (g2, g3):
        params, state, updates = step(params, state, g)
        counts = _counts(state)
        assert counts
        for c in counts:
            assert c.dtype == jnp.int32
            assert int(c) == INT32_MAX
        chex.assert_tree_all_finite(updates)
        chex.assert_tree_all_finite(state)


@pytest.mark.parametrize("entry", WITH_COUNT)
def test_update_at_int32_max_matches_reference(entry):
    # Bias corrections are ~1 there (b**(2**31 - 1) == 0); the float64 reference,
    # resumed from the same state, says what the update must be.
    tx, step, _ = jitted(entry.id)
    r = entry.reference()
    params = make_params()
    g1, g2 = make_grads(2)
    params, state, _ = step(params, tx.init(params), g1)
    state = gradtx.tree.set(state, count=jnp.asarray(INT32_MAX, jnp.int32))
    rstate = state_to_reference(state, r.init(to_f64(params)))
    expected, rstate = r.update(to_f64(g2), rstate, to_f64(params))
    _, state, updates = step(params, state, g2)
    trajectory = Trajectory()
    trajectory.add_tree("updates", updates, expected, 1e-5)
    trajectory.add_state(state, rstate, entry.state_rtol)
    trajectory.check()
