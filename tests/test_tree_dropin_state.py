"""gradtx.tree dtypes, casts, random trees, map_params, NamedTupleKey paths vs optax."""

import copy
import pickle

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import tree_utils

TREE = {
    "w": jnp.ones((2, 3), jnp.float32),
    "b": jnp.zeros(3, jnp.bfloat16),
    "n": jnp.array([1, 2], jnp.int32),
}
SAME = {"a": jnp.zeros(2), "b": [jnp.ones(()), jnp.ones(3)]}

# --- dtype, cast, cast_like ---


def test_tree_dtype_of_a_uniform_tree_and_of_an_empty_one():
    assert gradtx.tree.dtype(SAME) == jnp.float32
    assert gradtx.tree.dtype({}) == optax.tree.dtype({}) == jnp.float32
    assert gradtx.tree.dtype({"x": 1.0}) == optax.tree.dtype({"x": 1.0})


@pytest.mark.parametrize("handler", ["promote", "highest", "lowest"], ids=str)
def test_tree_dtype_mixed_handlers_match_optax(handler, standard_promotion):
    tree = {"h": jnp.zeros(1, jnp.float16), "f": jnp.zeros(1), "i": jnp.zeros(1, int)}
    assert gradtx.tree.dtype(tree, handler) == optax.tree.dtype(tree, handler)
    expected = {"promote": jnp.float32, "highest": jnp.float32, "lowest": jnp.int32}
    assert gradtx.tree.dtype(tree, handler) == expected[handler]


def test_tree_dtype_errors_name_the_leaf_and_the_argument():
    with pytest.raises(
        ValueError, match=r"first is bfloat16; \['n'\] is int32, \['w'\] is float32"
    ):
        gradtx.tree.dtype(TREE)
    # bfloat16 and float16 both promote to float32, neither to the other.
    unordered = {"h": jnp.zeros(1, jnp.float16), "b": jnp.zeros(1, jnp.bfloat16)}
    with jax.numpy_dtype_promotion("standard"):
        assert optax.tree.dtype(unordered, "promote") == jnp.float32
        with pytest.raises(ValueError, match="Cannot compare"):
            optax.tree.dtype(unordered, "lowest")
    assert gradtx.tree.dtype(unordered, "promote") == jnp.float32
    with pytest.raises(ValueError, match="no order"):
        gradtx.tree.dtype(unordered, "highest")
    with pytest.raises(
        gradtx.HyperparameterError, match=r"mixed_dtype_handler must be.*'max'"
    ):
        gradtx.tree.dtype(SAME, "max")


def test_tree_cast_and_cast_like(jit):
    cast = jit(gradtx.tree.cast, static_argnums=1)(TREE, jnp.bfloat16)
    assert {x.dtype for x in jax.tree.leaves(cast)} == {jnp.dtype(jnp.bfloat16)}
    assert gradtx.tree.cast(TREE, None) is TREE
    like = jit(gradtx.tree.cast_like)(cast, TREE)
    chex.assert_trees_all_equal_dtypes(like, TREE)
    chex.assert_trees_all_equal(like, optax.tree.cast_like(cast, TREE))
    # Leaves of the reference without a dtype (Python scalars) leave the leaf alone.
    mixed = gradtx.tree.cast_like({"a": jnp.ones(2, jnp.bfloat16)}, {"a": 1.0})
    assert mixed["a"].dtype == jnp.bfloat16


# --- keys and random trees ---

KEYS = {
    "typed": lambda: jax.random.key(3),
    "raw": lambda: jax.random.PRNGKey(3),
}


@pytest.mark.parametrize("kind", list(KEYS), ids=str)
def test_tree_split_key_like_matches_optax_and_gives_distinct_keys(kind, jit):
    key = KEYS[kind]()
    got = jit(gradtx.tree.split_key_like)(key, TREE)
    assert jax.tree.structure(got) == jax.tree.structure(TREE)
    data = [
        np.asarray(jax.random.key_data(k) if kind == "typed" else k)
        for k in jax.tree.leaves(got)
    ]
    assert len({d.tobytes() for d in data}) == 3
    want = optax.tree.split_key_like(key, TREE)
    chex.assert_trees_all_equal(
        gradtx.tree.unwrap_random_key_data(got), optax.tree.unwrap_random_key_data(want)
    )
    assert gradtx.tree.split_key_like(key, {}) == {}


@pytest.mark.parametrize("kind", list(KEYS), ids=str)
def test_tree_random_like_matches_optax_and_follows_dtypes(kind, jit):
    key = KEYS[kind]()
    target = {"w": TREE["w"], "b": TREE["b"]}
    got = jit(gradtx.tree.random_like)(key, target)
    chex.assert_trees_all_equal(got, optax.tree.random_like(key, target))
    chex.assert_trees_all_equal_dtypes(got, target)
    assert float(jnp.std(got["w"])) > 0.1  # samples, not a constant
    assert float(got["w"][0, 0]) != float(got["b"][0])
    f32 = gradtx.tree.random_like(key, target, dtype=jnp.float32)
    assert {x.dtype for x in jax.tree.leaves(f32)} == {jnp.dtype(jnp.float32)}


def test_tree_random_like_accepts_samplers_without_out_sharding():
    key = jax.random.key(0)
    uniform = lambda k, shape, dtype: jax.random.uniform(k, shape, dtype, 2.0, 3.0)
    got = gradtx.tree.random_like(key, {"w": jnp.zeros(50)}, sampler=uniform)
    assert bool(jnp.all((got["w"] >= 2.0) & (got["w"] < 3.0)))
    signs = gradtx.tree.random_like(
        key, {"s": jnp.zeros(50, jnp.int32)}, sampler=jax.random.rademacher
    )
    assert set(np.unique(signs["s"]).tolist()) == {-1, 1}
    chex.assert_trees_all_equal(
        signs,
        optax.tree.random_like(
            key, {"s": jnp.zeros(50, jnp.int32)}, sampler=jax.random.rademacher
        ),
    )


def test_tree_unwrap_random_key_data_leaves_other_leaves_alone():
    tree = {"k": jax.random.key(1), "x": jnp.ones(2), "raw": jax.random.PRNGKey(1)}
    out = gradtx.tree.unwrap_random_key_data(tree)
    assert out["k"].dtype == jnp.uint32
    np.testing.assert_array_equal(out["k"], out["raw"])
    assert out["x"] is tree["x"]
    chex.assert_trees_all_equal(out, optax.tree.unwrap_random_key_data(tree))


# --- map_params ---

PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}


def _marked(lib, make, initable_of=lambda tx: tx):
    tx = make(lib)
    state = tx.init(PARAMS)
    out = lib.tree_map_params(
        initable_of(tx), lambda x: "P", state, transform_non_params=lambda _: None
    )
    return jax.tree.leaves(out, is_leaf=lambda x: x is None)


OPTIMIZERS = {
    "adam": lambda lib: lib.adam(1e-3),
    "sgd_momentum": lambda lib: lib.sgd(0.1, momentum=0.9),
    "chain_clip_adamw": lambda lib: lib.chain(lib.clip(1.0), lib.adamw(1e-3)),
    "adafactor": lambda lib: lib.adafactor(1e-3),
    "lion": lambda lib: lib.lion(1e-4),
    "inject": lambda lib: lib.inject_hyperparams(lib.adam)(learning_rate=1e-3),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS), ids=str)
def test_tree_map_params_marks_the_same_leaves_as_optax(name):
    make = OPTIMIZERS[name]
    ours, theirs = _marked(gradtx, make), _marked(optax, make)
    assert ours == theirs
    assert "P" in ours or name == "adafactor"
    # An init function works as well as the transformation.
    assert _marked(gradtx, make, lambda tx: tx.init) == ours


def test_tree_map_params_passes_rest_and_keeps_non_params():
    tx = gradtx.adam(1e-3)
    state = tx.init(PARAMS)
    specs = {"w": "row", "b": "col"}
    out = gradtx.tree.map_params(tx, lambda _, spec: spec, state, specs)
    assert out[0].mu == specs
    assert out[0].nu == specs
    assert out[0].count is state[0].count
    shifted = gradtx.tree.map_params(tx, lambda x, y: x + y, state, PARAMS)
    chex.assert_trees_all_equal(shifted[0].nu, PARAMS)


def test_tree_map_params_is_leaf_reaches_f():
    params = {"pair": (jnp.ones(2), jnp.zeros(2)), "v": jnp.ones(3)}
    pair = lambda x: isinstance(x, tuple)
    f = lambda x: len(x) if isinstance(x, tuple) else x.size
    results = []
    for lib in (gradtx, optax):
        tx = lib.sgd(0.1, momentum=0.9)
        out = lib.tree.map_params(tx, f, tx.init(params), is_leaf=pair)
        results.append(jax.tree.leaves(out))
    assert results[0] == results[1] == [2, 3]


# --- NamedTupleKey paths ---


def _chain(lib):
    return lib.chain(lib.clip_by_global_norm(1.0), lib.adam(1e-3), lib.ema(0.9))


def test_tree_paths_use_named_tuple_keys_like_optax():
    filt = lambda path, _: (
        isinstance(path[-1], tree_utils.NamedTupleKey)
        and path[-1].tuple_name == "ScaleByAdamState"
    )
    state = _chain(gradtx).init(PARAMS)
    found = gradtx.tree.get_all_with_path(state, "count", filt)
    assert len(found) == 1
    assert found[0][0][-1] == tree_utils.NamedTupleKey("ScaleByAdamState", "count")
    theirs = optax.tree_utils.NamedTupleKey
    optax_filt = lambda path, _: (
        isinstance(path[-1], theirs) and path[-1].tuple_name == "ScaleByAdamState"
    )
    optax_state = _chain(optax).init(PARAMS)
    assert int(gradtx.tree.get(state, "count", filtering=filt)) == int(
        optax.tree.get(optax_state, "count", filtering=optax_filt)
    )
    new = gradtx.tree_utils.tree_set(state, filt, count=jnp.int32(5))
    assert [int(v) for _, v in gradtx.tree.get_all_with_path(new, "count")] == [5, 0]


def test_named_tuple_key_fields_equality_copy_and_keystr():
    key = tree_utils.NamedTupleKey("ScaleByAdamState", "mu")
    assert (key.tuple_name, key.name) == ("ScaleByAdamState", "mu")
    assert key != tree_utils.NamedTupleKey("EmaState", "mu")
    assert {key: 1}[tree_utils.NamedTupleKey("ScaleByAdamState", "mu")] == 1
    assert copy.deepcopy(key) == key
    assert pickle.loads(pickle.dumps(key)) == key
    assert "tuple_name='ScaleByAdamState'" in repr(key)
    # A GetAttrKey too: keystr renders `.mu` (optax: `ScaleByAdamState.mu`).
    assert isinstance(key, jax.tree_util.GetAttrKey)
    assert jax.tree_util.keystr((jax.tree_util.SequenceKey(0), key)) == "[0].mu"


def test_import_gradtx_as_optax_runs_optax_tree_utils_code():
    import gradtx as optax_like  # the drop-in spelling

    params = {"w": jnp.array([1.0, -2.0])}
    grads = optax_like.tree_utils.tree_scale(2.0, params)
    tx = optax_like.adam(1e-2)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    mu = optax_like.tree_utils.tree_get(state, "mu")
    np.testing.assert_allclose(mu["w"], [0.2, -0.4], rtol=1e-6)
    count = optax_like.tree_utils.tree_get(state, "count")
    corrected = optax_like.tree_utils.tree_bias_correction(mu, 0.9, count)
    np.testing.assert_allclose(corrected["w"], [2.0, -4.0], rtol=1e-5)
    norm = optax_like.tree_utils.tree_norm(updates, ord="inf")
    assert float(norm) == pytest.approx(1e-2, rel=1e-4)
