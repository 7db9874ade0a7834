# SPDX-License-Identifier: Apache-2.0
"""Wrappers with dtype-sensitive control flow: conditionals, flatten, bf16 params.

The wrappers' optax parity, nesting and structure errors are in
test_wrappers_masking.py; this file checks that mixed dtypes never reach a `lax.cond`
with disagreeing branches (optax#377, #1038) and the conditional wrappers' counters.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

EVEN = lambda step: step % 3 != 1  # skips steps 1, 4, 7, ...
MASK_FN = lambda p: jax.tree.map(lambda x: x.ndim == 2, p)
LABELS_FN = lambda p: jax.tree.map(lambda x: "a" if x.ndim == 2 else "b", p)


def make_tree(dtype=jnp.float32, seed=0):
    """A nested mixed pytree: a matrix and a vector in a dict, a list, a None leaf."""
    rng = np.random.default_rng(seed)
    a = lambda *s: jnp.asarray(rng.standard_normal(s).astype(np.float32), dtype)
    return {"layer": {"w": a(3, 4), "b": a(4)}, "head": [a(2, 2), a()], "frozen": None}


def _grads(n, dtype=jnp.float32):
    return [make_tree(dtype, seed=i + 1) for i in range(n)]


# --- dtypes ---


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: gradtx.masked(gradtx.adamw(0.1), MASK_FN), id="masked"),
        pytest.param(
            lambda: gradtx.partition(
                {
                    "a": gradtx.adamw(0.1),
                    "b": gradtx.conditionally_transform(gradtx.sgd(0.1), EVEN),
                },
                LABELS_FN,
            ),
            id="partition-with-conditional",
        ),
        pytest.param(
            lambda: gradtx.masked(
                gradtx.conditionally_mask(optax.scale_by_adam(), EVEN), MASK_FN
            ),
            id="masked-optax-inner-changing-state-dtype",
        ),
    ],
)
@pytest.mark.usefixtures("standard_promotion")  # for the optax inner
def test_bf16_params_with_f32_grads_keep_dtypes(make, jit):
    tx, params = make(), make_tree(jnp.bfloat16)
    state = tx.init(params)
    step = jit(tx.update)
    for g in _grads(3):
        updates, new_state = step(g, state, params)
        chex.assert_trees_all_equal_shapes_and_dtypes(updates, g)
        chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
        chex.assert_tree_all_finite(updates)
        state = new_state


@pytest.mark.usefixtures("standard_promotion")
def test_conditional_casts_an_inner_that_changes_the_update_dtype(jit):
    # optax's lax.cond raises "branches must have equal output types" here.
    to_f32 = gradtx.stateless(
        lambda u, p: jax.tree.map(lambda x: x.astype(jnp.float32), u)
    )
    g = _grads(1, jnp.bfloat16)[0]
    for tx in (
        gradtx.conditionally_transform(to_f32, EVEN),
        gradtx.conditionally_mask(to_f32, EVEN),
    ):
        updates, _ = jit(tx.update)(g, tx.init(g))
        chex.assert_trees_all_equal(updates, g)
    with pytest.raises(TypeError, match="branches"):
        optax.conditionally_mask(to_f32, EVEN).update(
            g, optax.conditionally_mask(to_f32, EVEN).init(g)
        )


def test_flatten_keeps_each_leaf_dtype_and_works_on_empty_trees(jit):
    tx = gradtx.flatten(gradtx.sgd(0.5, momentum=0.9))
    g = {"a": jnp.ones((2, 2), jnp.bfloat16), "b": jnp.full((3,), 2.0), "c": None}
    updates, state = jit(tx.update)(g, tx.init(g))
    chex.assert_trees_all_equal(
        updates,
        {
            "a": jnp.full((2, 2), -0.5, jnp.bfloat16),
            "b": jnp.full((3,), -1.0),
            "c": None,
        },
    )
    assert jax.tree.leaves(state)[0].shape == (7,)
    empty = gradtx.flatten(gradtx.adam(0.1))
    assert jit(empty.update)({}, empty.init({}))[0] == {}


# --- conditional wrappers ---


@pytest.mark.parametrize("wrapper", ["conditionally_transform", "conditionally_mask"])
def test_conditional_skips_the_inner_state_and_counts_every_step(wrapper, jit):
    tx = getattr(gradtx, wrapper)(gradtx.sgd(0.1, momentum=0.9), EVEN)
    params, grads = make_tree(), _grads(4)
    state = tx.init(params)
    for i, g in enumerate(grads):
        updates, new_state = jit(tx.update)(g, state, params)
        assert int(new_state.step) == i + 1
        if EVEN(i):
            assert not jnp.array_equal(
                new_state.inner_state[0].trace["layer"]["b"],
                state.inner_state[0].trace["layer"]["b"],
            )
        else:
            chex.assert_trees_all_equal(new_state.inner_state, state.inner_state)
            skipped = (
                g
                if wrapper == "conditionally_transform"
                else jax.tree.map(jnp.zeros_like, g)
            )
            chex.assert_trees_all_equal(updates, skipped)
        state = new_state


def test_conditional_forwards_extra_args_to_the_condition_only_on_request(jit):
    seen = []

    def cond(step, **kw):
        seen.append(set(kw))
        return kw.get("go", jnp.asarray(True))

    g = _grads(1)[0]
    for forward in (True, False):
        tx = gradtx.conditionally_mask(
            gradtx.scale(2.0), cond, forward_extra_args=forward
        )
        updates, _ = jit(tx.update)(g, tx.init(g), go=jnp.asarray(False))
        want = jax.tree.map(jnp.zeros_like if forward else lambda x: 2.0 * x, g)
        chex.assert_trees_all_equal(updates, want)
    assert seen == [{"go"}, set()]


def test_conditional_non_scalar_condition_raises():
    tx = gradtx.conditionally_transform(gradtx.identity(), lambda s: jnp.ones(2, bool))
    with pytest.raises(
        TypeError, match=r"gradtx\.conditionally_transform: should_transform_fn"
    ):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
