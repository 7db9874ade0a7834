# SPDX-License-Identifier: Apache-2.0
"""The protocol: base transforms, combinators, update helpers and state-tree helpers."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _registry import ALL, MASK_TREE, make_grads, make_params

import gradtx

# --- identity, set_to_zero, stateless ---


def test_identity_returns_the_updates_unchanged(jit):
    g = make_grads(1)[0]
    tx = gradtx.identity()
    state = tx.init(g)
    assert state == gradtx.EmptyState()
    updates, new_state = jit(tx.update)(g, state)
    chex.assert_trees_all_equal(updates, g)
    assert new_state == state


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_set_to_zero_gives_zeros_of_the_same_shape_and_dtype(jit, dtype):
    g = make_grads(1, dtype)[0]
    tx = gradtx.set_to_zero()
    updates, _ = jit(tx.update)(g, tx.init(g))
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, g)
    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, g))


def test_stateless_passes_the_whole_trees_and_params():
    seen = []

    def f(updates, params):
        seen.append(params)
        return {k: u * 2 for k, u in updates.items()}

    tx = gradtx.stateless(f)
    g, p = make_grads(1)[0], make_params()
    assert tx.init(p) == gradtx.EmptyState()
    updates, _ = tx.update(g, tx.init(p), p, value=1.0)
    chex.assert_trees_all_equal(updates, {k: v * 2 for k, v in g.items()})
    tx.update(g, tx.init(p))
    assert seen[0] is p
    assert seen[1] is None


def test_stateless_with_tree_map_maps_each_leaf_with_its_param():
    tx = gradtx.stateless_with_tree_map(lambda u, p: u if p is None else u * p)
    g, p = make_grads(1)[0], make_params()
    with_params, _ = tx.update(g, tx.init(p), p)
    chex.assert_trees_all_equal(with_params, jax.tree.map(jnp.multiply, g, p))
    without, _ = tx.update(g, tx.init(p))
    chex.assert_trees_all_equal(without, g)


# --- apply_updates, incremental_update, periodic_update ---


def test_apply_updates_rounds_a_bf16_param_plus_f32_update_once(jit):
    # In bf16 the spacing at 1.0 is 2**-7. u = 2**-8 + 2**-17 is just over half of
    # it: the exact sum rounds up to 1 + 2**-7, whereas rounding u to bf16 first
    # (2**-8) would make a tie that rounds to even, i.e. back to 1.0.
    p = {"w": jnp.asarray([1.0, 2.0], jnp.bfloat16)}
    u = {"w": jnp.asarray([2.0**-8 + 2.0**-17, 0.25], jnp.float32)}
    new = jit(gradtx.apply_updates)(p, u)
    assert new["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(new["w"], np.float32), [1 + 2.0**-7, 2.25])
    expected = (p["w"].astype(jnp.float32) + u["w"]).astype(jnp.bfloat16)
    chex.assert_trees_all_equal(new["w"], expected)


def test_apply_updates_leaves_params_with_none_updates_unchanged():
    p = make_params()
    u = {"w": None, "b": jnp.ones(5), "s": None}
    new = gradtx.apply_updates(p, u)
    assert new["w"] is p["w"]
    assert new["s"] is p["s"]
    np.testing.assert_array_equal(new["b"], p["b"] + 1)


def test_incremental_update_is_polyak_averaging(jit):
    new, old = make_params(seed=1), make_params(seed=2)
    out = jit(gradtx.incremental_update)(new, old, 0.25)
    for k in new:
        np.testing.assert_allclose(out[k], 0.25 * new[k] + 0.75 * old[k], rtol=1e-6)
    low = jax.tree.map(lambda x: x.astype(jnp.bfloat16), new)
    out = gradtx.incremental_update(low, low, jnp.asarray(0.5, jnp.bfloat16))
    chex.assert_trees_all_equal_shapes_and_dtypes(out, low)


@pytest.mark.parametrize(("step", "take_new"), [(0, True), (3, False), (4, True)])
def test_periodic_update_takes_new_every_period(jit, step, take_new):
    new, old = make_params(seed=1), make_params(seed=2)
    out = jit(gradtx.periodic_update)(new, old, jnp.asarray(step, jnp.int32), 2)
    chex.assert_trees_all_equal(out, new if take_new else old)


# --- chain, named_chain ---


def test_chain_state_is_the_tuple_of_member_states():
    members = [gradtx.clip(1.0), gradtx.scale_by_adam(), gradtx.scale(-0.1)]
    tx = gradtx.chain(*members)
    p = make_params()
    state = tx.init(p)
    assert isinstance(state, tuple)
    assert len(state) == 3
    for s, m in zip(state, members, strict=True):
        chex.assert_trees_all_equal(s, m.init(p))
    g = make_grads(1)[0]
    u, _ = tx.update(g, state, p)
    expected = g
    for s, m in zip(state, members, strict=True):
        expected, _ = m.update(expected, s, p)
    chex.assert_trees_all_equal(u, expected)


def test_chain_of_nothing_is_the_identity():
    tx = gradtx.chain()
    g = make_grads(1)[0]
    assert tx.init(g) == ()
    chex.assert_trees_all_equal(tx.update(g, ())[0], g)


def test_chain_rejects_a_state_of_the_wrong_length():
    tx = gradtx.chain(gradtx.scale(1.0), gradtx.scale(2.0))
    other = gradtx.chain(gradtx.scale(1.0))
    p = make_params()
    with pytest.raises(ValueError, match=r"gradtx\.chain: the state has 1 entries"):
        tx.update(make_grads(1)[0], other.init(p), p)


def test_named_chain_state_is_keyed_by_name():
    tx = gradtx.named_chain(
        ("clip", gradtx.clip(0.1)), ("adam", gradtx.scale_by_adam())
    )
    p = make_params()
    state = tx.init(p)
    assert list(state) == ["clip", "adam"]
    assert isinstance(state["adam"], gradtx.ScaleByAdamState)
    g = make_grads(1)[0]
    u, state = tx.update(g, state, p, value=3.0)
    ref, _ = gradtx.chain(gradtx.clip(0.1), gradtx.scale_by_adam()).update(
        g, (gradtx.EmptyState(), gradtx.scale_by_adam().init(p)), p
    )
    chex.assert_trees_all_equal(u, ref)
    assert int(state["adam"].count) == 1


def test_named_chain_rejects_duplicate_names():
    with pytest.raises(ValueError, match="unique"):
        gradtx.named_chain(("a", gradtx.identity()), ("a", gradtx.identity()))


# --- safe_int32_increment and global_norm ---


def test_safe_int32_increment_saturates_and_accepts_optax_dtypes(jit):
    top = 2**31 - 1
    inc = jit(gradtx.safe_int32_increment)
    assert int(inc(jnp.asarray(0, jnp.int32))) == 1
    assert int(inc(jnp.asarray(top - 1, jnp.int32))) == top
    assert int(inc(jnp.asarray(top, jnp.int32))) == top
    assert inc(jnp.asarray(top, jnp.int32)).dtype == jnp.int32
    # optax's safe_int32_increment is its safe_increment: other dtypes saturate at
    # their own maximum.
    for count in (jnp.asarray(2.0, jnp.float32), jnp.asarray(127, jnp.int8)):
        ours, theirs = inc(count), optax.safe_int32_increment(count)
        assert ours.dtype == theirs.dtype == count.dtype
        assert float(ours) == float(theirs)
    with pytest.raises(gradtx.HyperparameterError, match="count"):
        gradtx.safe_int32_increment(jnp.asarray(True))


def test_global_norm_matches_numpy_and_accumulates_low_precision_in_f32(jit):
    g = make_grads(1)[0]
    expected = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in g.values()))
    np.testing.assert_allclose(jit(gradtx.global_norm)(g), expected, rtol=1e-6)
    # 300 * 30_000**2 overflows a float16 sum of squares (max 65504).
    big = {"w": jnp.full((300,), 3e4, jnp.float16)}
    norm = jit(gradtx.global_norm)(big)
    assert norm.dtype == jnp.float32
    np.testing.assert_allclose(norm, 3e4 * np.sqrt(300), rtol=1e-3)


def test_global_norm_gradient_at_zero_is_finite():
    grad = jax.grad(gradtx.global_norm)({"w": jnp.zeros(3), "s": jnp.zeros(())})
    chex.assert_tree_all_finite(grad)
    chex.assert_trees_all_equal(grad, {"w": jnp.zeros(3), "s": jnp.zeros(())})


# --- gradtx.tree: get, set, get_all_with_path ---


def _nested():
    tx = gradtx.chain(
        gradtx.named_chain(
            ("adam", gradtx.scale_by_adam()), ("mom", gradtx.trace(0.9))
        ),
        gradtx.ema(0.5),
    )
    return tx, tx.init(make_params())


def test_tree_get_all_with_path_finds_fields_in_nested_chains():
    _, state = _nested()
    found = gradtx.tree.get_all_with_path(state, "count")
    paths = [jax.tree_util.keystr(p) for p, _ in found]
    assert paths == ["[0]['adam'].count", "[1].count"]
    only_ema = gradtx.tree.get_all_with_path(
        state, "count", lambda path, value: "adam" not in jax.tree_util.keystr(path)
    )
    assert [jax.tree_util.keystr(p) for p, _ in only_ema] == ["[1].count"]


def test_tree_get_returns_the_unique_field_or_default():
    _, state = _nested()
    chex.assert_trees_all_equal(gradtx.tree.get(state, "trace"), state[0]["mom"].trace)
    assert gradtx.tree.get(state, "nu_max", default="absent") == "absent"
    with pytest.raises(KeyError, match="count"):
        gradtx.tree.get(state, "count")
    ema_only = lambda path, value: jax.tree_util.keystr(path) == "[1].count"
    assert int(gradtx.tree.get(state, "count", filtering=ema_only)) == 0


def test_tree_set_replaces_by_name_and_rejects_unknown_names():
    tx, state = _nested()
    new = gradtx.tree.set(state, count=jnp.asarray(7, jnp.int32))
    assert [int(v) for _, v in gradtx.tree.get_all_with_path(new, "count")] == [7, 7]
    bumped = gradtx.tree.set(new, lambda p, v: "adam" in str(p), count=lambda c: c + 1)
    assert [int(v) for _, v in gradtx.tree.get_all_with_path(bumped, "count")] == [8, 7]
    assert jax.tree.structure(bumped) == jax.tree.structure(state)
    tx.update(make_grads(1)[0], bumped, make_params())  # still a valid state
    with pytest.raises(KeyError, match="no_such_field"):
        gradtx.tree.set(state, no_such_field=1)


# --- structure errors ---


@pytest.mark.parametrize(
    ("name", "grads", "path"),
    [
        ("scale_by_adam", {"w": jnp.ones((4, 3)), "b": jnp.ones(5)}, "['s']"),
        ("scale_by_adam", {"b": jnp.ones(5), "s": jnp.ones(())}, "['w'] (only in"),
        ("trace", {**make_params(), "x": jnp.ones(())}, "['x'] (only in the updates)"),
        ("scale_by_rms", [jnp.ones((4, 3)), jnp.ones(5), jnp.ones(())], "['b'] vs [0]"),
    ],
    ids=["missing-key", "missing-last-key", "extra-key", "list-vs-dict"],
)
def test_grads_tree_mismatch_names_the_transform_and_a_key_path(name, grads, path):
    kwargs = {"decay": 0.9} if name == "trace" else {}
    tx = getattr(gradtx, name)(**kwargs)
    state = tx.init(make_params())
    with pytest.raises(gradtx.TreeMismatchError) as info:
        tx.update(grads, state)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith(f"gradtx.{name}:")
    assert f"first difference at {path}" in message


@pytest.mark.parametrize("name", ["add_decayed_weights", "adamw", "nadamw", "adamaxw"])
def test_transforms_that_need_params_say_so(name):
    kwargs = (
        {"weight_decay": 0.1}
        if name == "add_decayed_weights"
        else {"learning_rate": 0.1}
    )
    tx = getattr(gradtx, name)(**kwargs)
    p = make_params()
    with pytest.raises(gradtx.MissingParamsError, match="add_decayed_weights requires"):
        tx.update(make_grads(1)[0], tx.init(p))
    assert issubclass(gradtx.MissingParamsError, ValueError)


# --- None leaves, empty trees and zero-size leaves, for every registry entry ---

NO_MASK_TREE = [p for p in ALL if p.values[0].kwargs.get("mask") is not MASK_TREE]


@pytest.mark.parametrize("entry", NO_MASK_TREE)
def test_none_leaves_are_preserved(entry):
    # A frozen parameter appears as None in params and grads (the mask-tree entries
    # have no key for it, so they are left out).
    tx = entry.make()
    params = {**make_params(), "frozen": None}
    grads = {**make_grads(1)[0], "frozen": None}
    updates, state = tx.update(grads, tx.init(params), params)
    assert updates["frozen"] is None
    assert jax.tree.structure(updates) == jax.tree.structure(grads)
    chex.assert_tree_all_finite(state)


@pytest.mark.parametrize("entry", NO_MASK_TREE)
def test_empty_tree_works(entry):
    tx = entry.make()
    state = tx.init({})
    updates, new_state = tx.update({}, state, {})
    assert updates == {}
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


@pytest.mark.parametrize("entry", NO_MASK_TREE)
def test_zero_size_leaves_work(entry):
    tx = entry.make()
    params = {"z": jnp.zeros((0,)), "m": jnp.zeros((0, 3)), "s": jnp.ones(())}
    grads = {"z": jnp.zeros((0,)), "m": jnp.zeros((0, 3)), "s": jnp.full((), 0.5)}
    updates, state = tx.update(grads, tx.init(params), params)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, grads)
    chex.assert_tree_all_finite(updates)
    chex.assert_tree_all_finite(state)


# --- interop with optax's adapters ---


def test_with_extra_args_support_drops_kwargs_for_foreign_updates(standard_promotion):
    foreign = optax.scale(0.5)  # its update takes no **kwargs
    wrapped = gradtx.with_extra_args_support(foreign)
    g = make_grads(1)[0]
    u, _ = wrapped.update(g, wrapped.init(g), None, value=1.0, foo="bar")
    chex.assert_trees_all_close(u, jax.tree.map(lambda x: 0.5 * x, g))
    ours = gradtx.adam(0.1)
    same = gradtx.with_extra_args_support(ours)
    assert same.update is ours.update
    assert isinstance(same, gradtx.GradientTransformation)


def test_gradtx_transform_works_with_optax_wrappers(standard_promotion):
    tx = optax.MultiSteps(gradtx.adam(0.1), every_k_schedule=2)
    p = make_params()
    state = tx.init(p)
    g1, g2 = make_grads(2)
    u1, state = tx.update(g1, state, p)
    chex.assert_trees_all_equal(u1, jax.tree.map(jnp.zeros_like, g1))
    u2, _ = tx.update(g2, state, p)
    mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
    ref = gradtx.adam(0.1)
    expected, _ = ref.update(mean, ref.init(p), p)
    chex.assert_trees_all_close(u2, expected, rtol=1e-6)


def test_tree_get_and_set_match_dict_keys_and_class_names_like_optax():
    tx = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1)
    state = tx.init({"w": jnp.zeros(2)})
    assert float(gradtx.tree.get(state, "learning_rate")) == pytest.approx(0.1)
    state = gradtx.tree.set(state, learning_rate=jnp.float32(0.5))
    assert float(gradtx.tree.get(state, "learning_rate")) == 0.5
    adam_state = gradtx.tree.get(state, "ScaleByAdamState")
    assert isinstance(adam_state, gradtx.ScaleByAdamState)
    zeroed = gradtx.tree.set(
        state, ScaleByAdamState=lambda s: s._replace(count=jnp.int32(9))
    )
    assert int(gradtx.tree.get(zeroed, "ScaleByAdamState").count) == 9
