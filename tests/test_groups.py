# SPDX-License-Identifier: Apache-2.0
"""Parameter groups, layer-wise learning-rate decay and the default decay mask."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import ParamGroup as G


def _params():
    """A flax-like tree: Embed, Dense and LayerNorm in a backbone, and a head."""
    shapes = {
        "embed": {"embedding": (5, 3)},
        "backbone": {
            "Dense_0": {"kernel": (3, 3), "bias": (3,)},
            "LayerNorm_0": {"scale": (3,), "bias": (3,)},
        },
        "head": {"kernel": (3, 2), "bias": (2,)},
    }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.key(0), len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)]
    )


# The typical recipe: embeddings frozen, head at 1e-3, backbone at 1e-4, and no weight
# decay on biases and norm scales (first match wins, so head biases come first).
RULES = [
    G("embed", "^embed/", frozen=True),
    G("head_no_wd", "^head/.*bias$", learning_rate=1e-3, weight_decay=0.0),
    G("head", "^head/", learning_rate=1e-3),
    G("no_wd", lambda path, leaf: leaf.ndim < 2, weight_decay=0.0),
]
LABELS = {
    "embed": {"embedding": "embed"},
    "backbone": {
        "Dense_0": {"kernel": "backbone", "bias": "no_wd"},
        "LayerNorm_0": {"scale": "no_wd", "bias": "no_wd"},
    },
    "head": {"kernel": "head", "bias": "head_no_wd"},
}


def _recipe():
    return gradtx.param_groups(
        gradtx.adamw, RULES, default="backbone", learning_rate=1e-4, weight_decay=0.1
    )


def _run(tx, params, jit, steps=3):
    state = tx.init(params)
    step = jit(tx.update)
    outs = []
    for i in range(steps):
        grads = jax.tree.map(lambda p, i=i: jnp.cos(p * (i + 1)), params)
        updates, state = step(grads, state, params)
        params = jax.tree.map(jnp.add, params, updates)
        outs.append(updates)
    return outs, state


def test_param_groups_equals_hand_built_partition(jit):
    hand = gradtx.partition(
        {
            "embed": gradtx.set_to_zero(),
            "head_no_wd": gradtx.adamw(1e-3, weight_decay=0.0),
            "head": gradtx.adamw(1e-3, weight_decay=0.1),
            "no_wd": gradtx.adamw(1e-4, weight_decay=0.0),
            "backbone": gradtx.adamw(1e-4, weight_decay=0.1),
        },
        LABELS,
    )
    steps = 3 if jit is jax.jit else 1  # eager dispatch is slow; the code is the same
    got, got_state = _run(_recipe(), _params(), jit, steps)
    want, want_state = _run(hand, _params(), jit, steps)
    chex.assert_trees_all_close(got, want, rtol=0, atol=0)
    chex.assert_trees_all_close(got_state, want_state, rtol=0, atol=0)


def test_param_groups_equals_optax_multi_transform(standard_promotion):
    # optax.adam's float32 bias correction is off by ~7e-6 relative at step 1, so the
    # inner optimizer is decayed momentum SGD, which both libraries compute alike.
    def ours(learning_rate, weight_decay):
        return gradtx.chain(
            gradtx.add_decayed_weights(weight_decay), gradtx.sgd(learning_rate, 0.9)
        )

    def theirs(learning_rate, weight_decay):
        return optax.chain(
            optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, 0.9)
        )

    txs = {
        "embed": optax.set_to_zero(),
        "head_no_wd": theirs(1e-3, 0.0),
        "head": theirs(1e-3, 0.1),
        "no_wd": theirs(1e-4, 0.0),
        "backbone": theirs(1e-4, 0.1),
    }
    tx = gradtx.param_groups(
        ours, RULES, default="backbone", learning_rate=1e-4, weight_decay=0.1
    )
    got, _ = _run(tx, _params(), jax.jit)
    want, _ = _run(optax.multi_transform(txs, LABELS), _params(), jax.jit)
    chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-12)


def test_param_groups_report_names_each_leaf_group():
    report = gradtx.param_group_report(RULES, _params(), default="backbone")
    assert report == {
        "backbone/Dense_0/bias": "no_wd",
        "backbone/Dense_0/kernel": "backbone",
        "backbone/LayerNorm_0/bias": "no_wd",
        "backbone/LayerNorm_0/scale": "no_wd",
        "embed/embedding": "embed",
        "head/bias": "head_no_wd",
        "head/kernel": "head",
    }
    table = str(report)
    assert table.splitlines()[0].split() == ["path", "group", "shape"]
    assert "embed/embedding" in table
    assert "(5, 3)" in table


def test_param_groups_first_matching_rule_wins():
    rules = [G("a", "kernel", learning_rate=1.0), G("b", "^head/", learning_rate=2.0)]
    params = {"head": {"kernel": jnp.ones(1), "bias": jnp.ones(1)}}
    tx = gradtx.param_groups(gradtx.sgd, rules)
    updates, _ = tx.update(params, tx.init(params))
    chex.assert_trees_all_close(
        updates, {"head": {"kernel": -jnp.ones(1), "bias": -2 * jnp.ones(1)}}
    )


@pytest.mark.parametrize("jitted", [False, True], ids=["eager", "jit"])
def test_param_groups_frozen_group_gets_exact_zeros_and_no_state(jitted):
    tx = _recipe()
    params = _params()
    state = tx.init(params)
    update = jax.jit(tx.update) if jitted else tx.update
    updates, _ = update(jax.tree.map(lambda p: p + 1e3, params), state, params)
    assert np.all(np.asarray(updates["embed"]["embedding"]) == 0.0)
    assert state.inner_states["embed"].inner_state == gradtx.EmptyState()


@pytest.mark.parametrize(
    ("rules", "default", "missing"),
    [
        ([G("head", "^head/")], None, ["backbone/Dense_0/bias", "embed/embedding"]),
        ([G("k", "kernel$")], None, ["head/bias", "backbone/LayerNorm_0/scale"]),
    ],
    ids=["no-default", "only-kernels"],
)
def test_param_groups_uncovered_leaves_raise_with_paths(rules, default, missing):
    tx = gradtx.param_groups(gradtx.sgd, rules, default=default, learning_rate=0.1)
    with pytest.raises(gradtx.HyperparameterError, match=r"gradtx\.param_groups") as e:
        tx.init(_params())
    for path in missing:
        assert repr(path) in str(e.value)
    with pytest.raises(gradtx.HyperparameterError, match="param_group_report"):
        gradtx.param_group_report(rules, _params(), default=default)


def test_param_groups_rule_matching_nothing_raises_unless_allowed():
    rules = [G("head", "^head/"), G("typo", "^haed/"), G("shadowed", "^head/bias")]
    kw = {"default": "rest", "learning_rate": 0.1}
    with pytest.raises(gradtx.HyperparameterError, match=r"\['typo', 'shadowed'\]"):
        gradtx.param_groups(gradtx.sgd, rules, **kw).init(_params())
    tx = gradtx.param_groups(gradtx.sgd, rules, allow_unused=True, **kw)
    assert set(tx.init(_params()).inner_states) == {"head", "typo", "shadowed", "rest"}


def test_param_groups_lr_scale_equals_explicit_learning_rate(jit):
    sched = gradtx.linear_schedule(1.0, 0.5, 3)
    params = _params()
    scaled = gradtx.param_groups(
        gradtx.sgd, [G("h", "^head/", lr_scale=0.1)], default="r", learning_rate=sched
    )
    explicit = gradtx.param_groups(
        gradtx.sgd,
        [G("h", "^head/", learning_rate=lambda c: sched(c) * 0.1)],
        default="r",
        learning_rate=sched,
    )
    chex.assert_trees_all_close(
        _run(scaled, params, jit)[0], _run(explicit, params, jit)[0]
    )


def test_param_groups_state_keeps_structure_and_eval_shape_init():
    tx, params = _recipe(), _params()
    state = tx.init(params)
    _, new_state = jax.jit(tx.update)(params, state, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    assert jax.tree.structure(state) == jax.tree.structure(new_state)
    shapes = jax.eval_shape(tx.init, params)
    assert jax.tree.structure(shapes) == jax.tree.structure(state)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: G("a", "(["), gradtx.HyperparameterError, "valid regular"),
        (lambda: G("", "a"), gradtx.HyperparameterError, "non-empty str"),
        (lambda: G("a", 3), TypeError, "match of group 'a'"),
        (lambda: G("a", "x", learning_rate=-1.0), gradtx.HyperparameterError, "-1.0"),
        (lambda: G("a", "x", frozen=True, weight_decay=0.1), ValueError, "ignored"),
        (
            lambda: gradtx.param_groups(gradtx.sgd, [G("a", "x"), G("a", "y")]),
            gradtx.HyperparameterError,
            "unique",
        ),
        (
            lambda: gradtx.param_groups(gradtx.sgd(0.1), [G("a", "x")]),
            TypeError,
            "factory",
        ),
        (
            lambda: gradtx.param_groups(gradtx.sgd, G("a", "x")),
            TypeError,
            "sequence",
        ),
        (
            lambda: gradtx.param_groups(
                gradtx.sgd, [G("a", "x", weight_decay=0.1)], learning_rate=0.1
            ),
            TypeError,
            "group 'a'",
        ),
        (
            lambda: gradtx.param_groups(gradtx.sgd, [G("a", "x", lr_scale=2.0)]),
            gradtx.HyperparameterError,
            "no learning_rate",
        ),
    ],
    ids=[
        "bad-regex",
        "empty-name",
        "bad-match",
        "negative-lr",
        "frozen-override",
        "duplicate-names",
        "not-factory",
        "not-sequence",
        "unknown-kwarg",
        "scale-without-lr",
    ],
)
def test_param_groups_bad_construction_raises(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_layer_decay_matches_hand_computation(jit):
    decay, lr, n = 0.8, 0.1, 3
    params = {
        "embeddings": jnp.ones((2, 2)),
        "encoder": [{"w": jnp.ones(2)}, {"w": jnp.ones(2)}],
        "head": jnp.ones(2),
    }
    layer_of = lambda path: (
        0
        if path.startswith("embeddings")
        else 1 + int(path.split("/")[1])
        if path.startswith("encoder")
        else None
    )
    tx = gradtx.chain(
        gradtx.sgd(lr),
        gradtx.scale_by_layer_decay(decay, n, layer_of, default_layer=n),
    )
    grads = jax.tree.map(lambda p: 2.0 * p, params)
    updates, _ = jit(tx.update)(grads, tx.init(params))
    want = {
        "embeddings": -lr * 2.0 * decay**3 * np.ones((2, 2)),
        "encoder": [
            {"w": -lr * 2.0 * decay**2 * np.ones(2)},
            {"w": -lr * 2.0 * decay * np.ones(2)},
        ],
        "head": -lr * 2.0 * np.ones(2),
    }
    chex.assert_trees_all_close(updates, want, rtol=1e-6)


def test_layer_decay_regex_and_errors():
    params = {"layer_0": jnp.ones(1), "layer_2": jnp.ones(1), "head": jnp.ones(1)}
    tx = gradtx.scale_by_layer_decay(0.5, 2, r"layer_(\d+)", default_layer=2)
    updates, _ = tx.update(params, tx.init(params))
    chex.assert_trees_all_close(
        updates,
        {"layer_0": 0.25 * jnp.ones(1), "layer_2": jnp.ones(1), "head": jnp.ones(1)},
    )
    with pytest.raises(gradtx.HyperparameterError, match="'head'"):
        gradtx.scale_by_layer_decay(0.5, 2, r"layer_(\d+)").init(params)
    with pytest.raises(gradtx.HyperparameterError, match=r"'layer_2'.*\[0, 1\]"):
        gradtx.scale_by_layer_decay(0.5, 1, r"layer_(\d+)", default_layer=1).init(
            params
        )
    with pytest.raises(gradtx.HyperparameterError, match="decay"):
        gradtx.scale_by_layer_decay(1.5, 2, r"layer_(\d+)")
    with pytest.raises(gradtx.HyperparameterError, match="capturing group"):
        gradtx.scale_by_layer_decay(0.5, 2, r"layer_\d+")


def test_decay_mask_on_a_flax_like_tree():
    params = _params()
    params["backbone"]["ln_f"] = {"scale": jnp.ones((1, 3))}
    params["haiku"] = {"w": jnp.ones((2, 2)), "b": jnp.ones((1, 2)), "skip": None}
    assert gradtx.decay_mask(params) == {
        "embed": {"embedding": True},
        "backbone": {
            "Dense_0": {"kernel": True, "bias": False},
            "LayerNorm_0": {"scale": False, "bias": False},
            "ln_f": {"scale": False},
        },
        "head": {"kernel": True, "bias": False},
        "haiku": {"w": True, "b": False, "skip": None},
    }


def test_decay_mask_as_adamw_mask_inside_param_groups(jit):
    params = _params()
    explicit = jax.tree.map(lambda p: p.ndim >= 2, params)
    explicit["backbone"]["LayerNorm_0"] = {"scale": False, "bias": False}
    make = lambda mask: gradtx.param_groups(
        gradtx.adamw,
        [G("head", "^head/", learning_rate=1e-2)],
        default="rest",
        learning_rate=1e-3,
        weight_decay=0.5,
        mask=mask,
    )
    got, _ = _run(make(gradtx.decay_mask), params, jit, steps=2)
    want, _ = _run(make(explicit), params, jit, steps=2)
    chex.assert_trees_all_close(got, want, rtol=0, atol=0)
