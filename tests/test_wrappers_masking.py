# SPDX-License-Identifier: Apache-2.0
"""Masking and partition wrappers: optax parity, nesting, structure errors, dtypes.

Covers `masked`, `freeze`, `partition`, `multi_transform`, `selective_transform`,
`flatten`, `conditionally_transform` and `conditionally_mask`. optax does not run
under strict dtype promotion, so tests that call it use `standard_promotion` and run
gradtx inside a `strict` context.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

STEPS = 10
# optax always runs jitted (its numbers do not depend on the mode); gradtx runs eagerly
# and jitted. Eager rounding differs from XLA's fused code by ~1e-9 absolute, which is
# more than rtol 1e-6 of a momentum that cancels to ~1e-4, hence RELIABILITY.md's
# implementation-parity atol.
RTOL, ATOL = 1e-6, 1e-7


def make_tree(dtype=jnp.float32, seed=0):
    """A nested mixed pytree: a matrix and a vector in a dict, a list, a None leaf."""
    rng = np.random.default_rng(seed)
    a = lambda *s: jnp.asarray(rng.standard_normal(s).astype(np.float32), dtype)
    return {"layer": {"w": a(3, 4), "b": a(4)}, "head": [a(2, 2), a()], "frozen": None}


MASK_TREE = {"layer": {"w": True, "b": False}, "head": [True, False], "frozen": None}
MASK_PREFIX = {"layer": True, "head": False, "frozen": True}
MASK_FN = lambda p: jax.tree.map(lambda x: x.ndim == 2, p)
LABELS_TREE = {"layer": {"w": "a", "b": "b"}, "head": ["a", "b"], "frozen": None}
LABELS_PREFIX = {"layer": "a", "head": "b", "frozen": "b"}
LABELS_FN = lambda p: jax.tree.map(lambda x: "a" if x.ndim == 2 else "b", p)
EVEN = lambda step: step % 3 != 1  # skips steps 1, 4, 7, ...


def _groups(lib, **extra):
    return {"a": lib.rmsprop(0.1), "b": lib.sgd(0.1, momentum=0.9), **extra}


# Each case builds the same wrapper from either library (`lib` is gradtx or optax).
CASES = {
    "masked-tree": lambda lib: lib.masked(lib.rmsprop(0.1), MASK_TREE),
    "masked-prefix": lambda lib: lib.masked(lib.rmsprop(0.1), MASK_PREFIX),
    "masked-callable": lambda lib: lib.masked(lib.rmsprop(0.1), MASK_FN),
    "masked-weight-decay": lambda lib: lib.masked(
        lib.add_decayed_weights(0.1), MASK_FN
    ),
    "masked-in-masked": lambda lib: lib.masked(
        lib.masked(lib.sgd(0.1, momentum=0.9), MASK_FN), MASK_TREE
    ),
    "partition-tree": lambda lib: lib.partition(_groups(lib), LABELS_TREE),
    "partition-prefix": lambda lib: lib.partition(_groups(lib), LABELS_PREFIX),
    "partition-callable": lambda lib: lib.partition(_groups(lib), LABELS_FN),
    "partition-unused-key": lambda lib: lib.partition(
        _groups(lib, unused=lib.adagrad(0.1)), LABELS_TREE
    ),
    "multi_transform": lambda lib: lib.multi_transform(_groups(lib), LABELS_FN),
    "partition-in-chain": lambda lib: lib.chain(
        lib.clip_by_global_norm(1.0), lib.partition(_groups(lib), LABELS_FN)
    ),
    "masked-in-partition": lambda lib: lib.partition(
        {"a": lib.masked(lib.adagrad(0.1), MASK_TREE), "b": lib.sgd(0.1)},
        LABELS_TREE,
    ),
    "freeze-tree": lambda lib: lib.freeze(MASK_TREE),
    "freeze-all": lambda lib: lib.freeze(True),
    "selective_transform": lambda lib: lib.selective_transform(
        lib.rmsprop(0.1), freeze_mask=MASK_PREFIX
    ),
    "flatten": lambda lib: lib.flatten(lib.rmsprop(0.1)),
    "conditionally_transform": lambda lib: lib.conditionally_transform(
        lib.rmsprop(0.1), EVEN
    ),
    "conditionally_mask": lambda lib: lib.conditionally_mask(lib.rmsprop(0.1), EVEN),
}
CASE_PARAMS = [pytest.param(make, id=name) for name, make in CASES.items()]


def _run(lib, tx, jit, params, grads):
    state = tx.init(params)
    step = jit(tx.update)
    updates = []
    for g in grads:
        u, state = step(g, state, params)
        params = lib.apply_updates(params, u)
        updates.append(u)
    return updates, state


def _grads(n, dtype=jnp.float32):
    return [make_tree(dtype, seed=i + 1) for i in range(n)]


# --- parity with optax ---


@pytest.mark.usefixtures("standard_promotion")
@pytest.mark.parametrize("make", CASE_PARAMS)
def test_wrapper_matches_optax_for_ten_steps(make, jit):
    params, grads = make_tree(), _grads(STEPS)
    with jax.numpy_dtype_promotion("strict"):
        ours, our_state = _run(gradtx, make(gradtx), jit, params, grads)
    theirs, their_state = _run(optax, make(optax), jax.jit, params, grads)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        chex.assert_trees_all_close(
            a, b, rtol=RTOL, atol=ATOL, custom_message=f"step {step}"
        )
    # State classes differ between the libraries; their leaves must not.
    ours_leaves, theirs_leaves = (
        jax.tree.leaves(our_state),
        jax.tree.leaves(their_state),
    )
    assert len(ours_leaves) == len(theirs_leaves)
    chex.assert_trees_all_close(ours_leaves, theirs_leaves, rtol=RTOL, atol=ATOL)


MIXED = [
    pytest.param(
        lambda: optax.masked(gradtx.rmsprop(0.1), MASK_FN),
        lambda: optax.masked(optax.rmsprop(0.1), MASK_FN),
        id="gradtx-in-optax-masked",
    ),
    pytest.param(
        lambda: gradtx.partition(
            {"a": optax.rmsprop(0.1), "b": gradtx.sgd(0.1)}, LABELS_FN
        ),
        lambda: optax.partition(
            {"a": optax.rmsprop(0.1), "b": optax.sgd(0.1)}, LABELS_FN
        ),
        id="optax-in-gradtx-partition",
    ),
    # The inner prefix meets optax.MaskedNode where the outer mask hid a subtree.
    pytest.param(
        lambda: optax.masked(gradtx.masked(gradtx.sgd(0.1), MASK_TREE), MASK_PREFIX),
        lambda: optax.masked(
            optax.sgd(0.1), {"layer": MASK_TREE["layer"], "head": False, "frozen": None}
        ),
        id="gradtx-masked-in-optax-masked",
    ),
    pytest.param(
        lambda: gradtx.conditionally_mask(optax.rmsprop(0.1), EVEN),
        lambda: optax.conditionally_mask(optax.rmsprop(0.1), EVEN),
        id="optax-in-gradtx-conditionally_mask",
    ),
]


@pytest.mark.usefixtures("standard_promotion")
@pytest.mark.parametrize(("ours", "theirs"), MIXED)
def test_wrapper_mixes_with_optax_in_both_directions(ours, theirs, jit):
    params, grads = make_tree(), _grads(STEPS)
    got, _ = _run(optax, ours(), jit, params, grads)
    want, _ = _run(optax, theirs(), jax.jit, params, grads)
    chex.assert_trees_all_close(got, want, rtol=RTOL, atol=ATOL)


# --- protocol checks on every case ---


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("make", CASE_PARAMS)
def test_wrapper_keeps_state_structure_dtypes_and_none_leaves(make, dtype, jit):
    tx, params = make(gradtx), make_tree(dtype)
    state = tx.init(params)
    step = jit(tx.update)
    for g in _grads(2, dtype):
        updates, new_state = step(g, state, params)
        assert jax.tree.structure(new_state) == jax.tree.structure(state)
        chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
        chex.assert_trees_all_equal_shapes_and_dtypes(updates, g)
        assert updates["frozen"] is None
        state = new_state


@pytest.mark.parametrize("make", CASE_PARAMS)
def test_wrapper_init_works_under_eval_shape(make):
    tx, params = make(gradtx), make_tree()
    shapes = jax.eval_shape(tx.init, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(shapes, tx.init(params))


@pytest.mark.parametrize("make", CASE_PARAMS)
def test_wrapper_ignores_unknown_extra_args(make, jit):
    tx, params, g = make(gradtx), make_tree(), _grads(1)[0]
    state = tx.init(params)
    plain = jit(tx.update)(g, state, params)
    with_extra = jit(tx.update)(
        g, state, params, value=jnp.ones(()), unknown=jnp.zeros(2)
    )
    chex.assert_trees_all_equal(plain, with_extra)


# --- nesting ---


def _spy(seen):
    """A stateless inner transform that records the trees it is given."""

    def f(updates, params):
        seen.append((updates, params))
        return updates

    return gradtx.stateless(f)


def test_nested_masked_inner_sees_the_params_tree_with_masked_nodes(jit):
    seen = []
    tx = gradtx.masked(gradtx.masked(_spy(seen), MASK_FN), MASK_TREE)
    params = make_tree()
    jit(tx.update)(_grads(1)[0], tx.init(params), params)
    node = gradtx.MaskedNode()
    x = jnp.zeros(())
    want = {"layer": {"w": x, "b": node}, "head": [x, node], "frozen": None}
    for tree in seen[-1]:
        assert jax.tree.structure(tree) == jax.tree.structure(want)


@pytest.mark.usefixtures("standard_promotion")  # optax, for the comparison
def test_nested_masked_accepts_a_prefix_where_the_outer_mask_hid_a_subtree(jit):
    # The inner mask has a subtree where the outer mask left a MaskedNode; gradtx
    # reads a MaskedNode as matching any part of a mask, optax raises.
    outer = {"layer": False, "head": True, "frozen": None}
    g = _grads(1)[0]
    with jax.numpy_dtype_promotion("strict"):
        tx = gradtx.masked(gradtx.masked(gradtx.scale(-1.0), MASK_TREE), outer)
        updates, _ = jit(tx.update)(g, tx.init(make_tree()))
    want = jax.tree.map(lambda x: x, g)
    want["head"][0] = -g["head"][0]
    chex.assert_trees_all_equal(updates, want)
    theirs = optax.masked(optax.masked(optax.scale(-1.0), MASK_TREE), outer)
    with pytest.raises(ValueError, match="pytree structure error"):
        theirs.init(make_tree())


def test_partition_inside_chain_state_is_addressable_by_name(jit):
    tx = gradtx.chain(gradtx.partition(_groups(gradtx), LABELS_FN), gradtx.scale(2.0))
    params = make_tree()
    _, state = jit(tx.update)(_grads(1)[0], tx.init(params), params)
    nu = gradtx.tree.get(state, "nu")
    assert set(nu["layer"]) == {"w", "b"}
    assert isinstance(nu["layer"]["b"], gradtx.MaskedNode)  # only "a" leaves: matrices
    assert nu["layer"]["w"].shape == (3, 4)
    assert isinstance(state[0], gradtx.PartitionState)
    assert gradtx.MultiTransformState is gradtx.PartitionState


# --- callable specs and extra args ---


def test_callable_mask_is_called_with_the_params_not_the_grads(jit):
    seen = []

    def mask(p):
        seen.append({x.dtype for x in jax.tree.leaves(p)})
        return MASK_FN(p)

    def labels(p):
        return jax.tree.map(lambda m: "a" if m else "b", mask(p))

    params, g = make_tree(jnp.bfloat16), _grads(1)[0]
    for tx in (
        gradtx.masked(gradtx.sgd(0.1), mask),
        gradtx.partition(_groups(gradtx), labels),
    ):
        jit(tx.update)(g, tx.init(params), params)
    assert seen
    assert all(s == {jnp.dtype(jnp.bfloat16)} for s in seen)
    seen.clear()
    tx = gradtx.masked(gradtx.scale(2.0), mask)
    jit(tx.update)(g, tx.init(params))  # no params: the mask sees the updates
    assert seen[-1] == {jnp.dtype(jnp.float32)}


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _CallableModel:
    """A callable pytree, like an Equinox module: a mask of this type is a tree."""

    w: object
    b: object

    def __call__(self, x):
        return x


def test_callable_pytree_mask_is_read_as_a_tree(jit):
    params = _CallableModel(w=jnp.ones(2), b=jnp.ones(1))
    tx = gradtx.masked(gradtx.scale(-1.0), _CallableModel(w=True, b=False))
    updates, _ = jit(tx.update)(params, tx.init(params))
    chex.assert_trees_all_equal(updates, _CallableModel(w=-jnp.ones(2), b=jnp.ones(1)))


@pytest.mark.parametrize(
    "compatible", [True, False], ids=["masked-extra", "plain-extra"]
)
@pytest.mark.parametrize("wrapper", ["masked", "partition"])
def test_extra_args_are_forwarded_and_masked_on_request(wrapper, compatible, jit):
    seen = []
    spy = gradtx.GradientTransformation(
        lambda p: gradtx.EmptyState(),
        lambda u, s, p=None, **kw: (seen.append(kw) or u, s),
    )
    if wrapper == "masked":
        tx = gradtx.masked(spy, MASK_TREE, mask_compatible_extra_args=compatible)
    else:
        groups = {"a": spy, "b": gradtx.identity()}
        tx = gradtx.partition(
            groups, LABELS_TREE, mask_compatible_extra_args=compatible
        )
    params, tags = make_tree(), _grads(1)[0]
    jit(tx.update)(_grads(1)[0], tx.init(params), params, tags=tags, value=jnp.ones(()))
    kw = seen[-1]
    assert set(kw) == {"tags", "value"}
    is_masked = isinstance(kw["tags"]["layer"]["b"], gradtx.MaskedNode)
    assert is_masked == compatible
    assert kw["tags"]["layer"]["w"].shape == (3, 4)


def test_foreign_inner_without_kwargs_accepts_extra_args(jit):
    plain = optax.GradientTransformation(
        lambda p: optax.EmptyState(), lambda u, s, p=None: (u, s)
    )
    params, g = make_tree(), _grads(1)[0]
    for tx in (
        gradtx.masked(plain, MASK_FN),
        gradtx.partition({"a": plain, "b": plain}, LABELS_FN),
        gradtx.flatten(plain),
        gradtx.conditionally_transform(plain, EVEN),
    ):
        updates, _ = jit(tx.update)(g, tx.init(params), params, value=jnp.ones(()))
        chex.assert_trees_all_equal(updates, g)


# --- structure and hyperparameter errors ---

_DICT_MASK_MISSING = {"layer": True, "head": False}
_NESTED_KEY = {"layer": {"w": True, "x": False}, "head": True, "frozen": None}
_TUPLE_HEAD = {"layer": True, "head": (True, False), "frozen": None}
_MISMATCHES = [
    ("masked", lambda m: gradtx.masked(gradtx.sgd(0.1), m), "mask"),
    ("freeze", gradtx.freeze, "mask"),
    (
        "selective_transform",
        lambda m: gradtx.selective_transform(gradtx.sgd(0.1), freeze_mask=m),
        "freeze_mask",
    ),
    (
        "partition",
        lambda m: gradtx.partition(
            {True: gradtx.sgd(0.1), False: gradtx.identity()}, m
        ),
        "param_labels",
    ),
    (
        "multi_transform",
        lambda m: gradtx.multi_transform(
            {True: gradtx.sgd(0.1), False: gradtx.identity()}, m
        ),
        "param_labels",
    ),
]
_SPECS = [
    pytest.param(_DICT_MASK_MISSING, "['frozen'] (only in params)", id="missing-key"),
    pytest.param({**MASK_PREFIX, "extra": True}, "['extra'] (only in", id="extra-key"),
    pytest.param(_NESTED_KEY, "['layer']['b'] (only in params)", id="nested-key"),
    pytest.param(_TUPLE_HEAD, "['head'] (a tuple in", id="tuple-vs-list"),
]


@pytest.mark.parametrize("as_callable", [False, True], ids=["tree", "callable"])
@pytest.mark.parametrize(("spec", "where"), _SPECS)
@pytest.mark.parametrize(
    ("fn", "build", "arg"), [pytest.param(*m, id=m[0]) for m in _MISMATCHES]
)
def test_spec_not_a_prefix_raises_tree_mismatch_with_key_path(
    fn, build, arg, spec, where, as_callable
):
    tx = build((lambda p: spec) if as_callable else spec)
    with pytest.raises(gradtx.TreeMismatchError) as err:
        tx.init(make_tree())
    msg = str(err.value)
    assert f"gradtx.{fn}: {arg} must be a prefix of the params" in msg
    assert f"first difference at {where}" in msg


def test_grads_tree_not_matching_the_mask_raises_at_trace_time():
    tx = gradtx.masked(gradtx.sgd(0.1), MASK_TREE)
    state = tx.init(make_tree())
    g = _grads(1)[0]
    g["layer"]["extra"] = g["layer"].pop("b")
    with pytest.raises(
        gradtx.TreeMismatchError, match=r"\['layer'\]\['b'\] \(only in mask"
    ):
        jax.jit(tx.update)(g, state)


def test_partition_label_missing_from_transforms_raises_early():
    labels = {**LABELS_TREE, "head": ["a", "c"]}
    with pytest.raises(
        gradtx.HyperparameterError, match=r"label 'c' at \['head'\]\[1\]"
    ):
        gradtx.partition(_groups(gradtx), labels)  # a tree: at construction
    tx = gradtx.partition(_groups(gradtx), lambda p: labels)
    with pytest.raises(
        gradtx.HyperparameterError, match=r"gradtx\.partition: param_labels"
    ):
        tx.init(make_tree())  # a callable: at init


@pytest.mark.parametrize(
    "leaf",
    [1, "yes", 0, jnp.ones(2, bool), np.float32(1.0)],
    ids=["int", "str", "zero", "vector", "float"],
)
def test_mask_leaf_that_is_not_a_static_bool_raises(leaf):
    mask = {**MASK_PREFIX, "head": leaf}
    with pytest.raises(
        gradtx.HyperparameterError, match=r"gradtx.masked: mask .* at \['head'\]"
    ):
        gradtx.masked(gradtx.sgd(0.1), mask)


def test_mask_callable_returning_a_traced_bool_raises():
    tx = gradtx.freeze(lambda p: {**MASK_PREFIX, "head": jnp.any(p["head"][0] > 0)})
    tx.init(make_tree())  # eagerly the bool is concrete
    with pytest.raises(gradtx.HyperparameterError, match=r"gradtx\.freeze: mask"):
        jax.jit(tx.init)(make_tree())  # a traced bool cannot choose a tree structure


@pytest.mark.parametrize(
    "build",
    [
        lambda: gradtx.masked(gradtx.sgd, MASK_TREE),  # the factory, not a transform
        lambda: gradtx.partition({"a": None}, LABELS_TREE),
        lambda: gradtx.partition([gradtx.sgd(0.1)], LABELS_TREE),
        lambda: gradtx.flatten(lambda u: u),
        lambda: gradtx.conditionally_transform(gradtx.identity(), True),
        lambda: gradtx.conditionally_mask(
            gradtx.identity(), EVEN, forward_extra_args=1
        ),
        lambda: gradtx.masked(
            gradtx.identity(), MASK_TREE, mask_compatible_extra_args="y"
        ),
    ],
    ids=[
        "factory",
        "none-transform",
        "list",
        "function",
        "bool-fn",
        "int-flag",
        "str-flag",
    ],
)
def test_wrong_argument_types_raise_at_construction(build):
    with pytest.raises(TypeError, match=r"gradtx\.\w+: \w+"):
        build()
