import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

BF16 = jnp.bfloat16


def _params():
    return {"w": jnp.ones((3, 2)), "b": jnp.zeros(2), "s": jnp.asarray(1.5)}


def _grads(i):
    rng = np.random.default_rng(i)
    return jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), _params()
    )


def _run(tx, jit, steps=5):
    params = _params()
    state = tx.init(params)
    update = jit(tx.update)
    for i in range(steps):
        updates, state = update(_grads(i), state, params)
        params = gradtx.apply_updates(params, updates)
    return params, state


def _dtypes(tree):
    return jax.tree.map(lambda x: x.dtype, tree)


CASES = {
    "adam_mu_nu": (
        lambda: gradtx.adam(1e-2),
        {"mu": BF16, "nu": BF16},
        lambda: gradtx.adam(1e-2, mu_dtype=BF16, nu_dtype=BF16),
    ),
    "sgd_trace": (
        lambda: gradtx.sgd(1e-2, momentum=0.9),
        {"trace": BF16},
        lambda: gradtx.sgd(1e-2, momentum=0.9, accumulator_dtype=BF16),
    ),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_with_state_dtypes_equals_the_blocks_own_dtype_arguments(name, jit):
    inner, dtypes, direct = CASES[name]
    wrapped = _run(gradtx.with_state_dtypes(inner(), dtypes), jit)
    chex.assert_trees_all_equal(wrapped, _run(direct(), jit))


def test_with_state_dtypes_casts_only_floating_leaves_of_named_fields():
    tx = gradtx.with_state_dtypes(gradtx.rmsprop(1e-2, centered=True), {"nu": BF16})
    state = tx.init(_params())
    inner = state[0]
    assert all(x.dtype == BF16 for x in jax.tree.leaves(inner.nu))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(inner.mu))
    counted = gradtx.with_state_dtypes(gradtx.adam(1e-2), {"count": BF16})
    assert gradtx.tree.get(counted.init(_params()), "count").dtype == jnp.int32


def test_with_state_dtypes_keeps_dtypes_stable_across_updates(jit):
    tx = gradtx.with_state_dtypes(
        gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-2)),
        {"mu": BF16, "nu": jnp.float16},
    )
    before = _dtypes(tx.init(_params()))
    _, state = _run(tx, jit)
    assert _dtypes(state) == before


def test_with_state_dtypes_casts_a_foreign_state_back(standard_promotion):
    tx = gradtx.with_state_dtypes(optax.adam(1e-2), {"mu": BF16})
    params = _params()
    state = tx.init(params)
    _, new_state = jax.jit(tx.update)(_grads(0), state, params)
    assert _dtypes(new_state) == _dtypes(state)
    assert all(x.dtype == BF16 for x in jax.tree.leaves(new_state[0].mu))


def test_with_state_dtypes_rejects_unknown_fields_and_non_float_dtypes():
    tx = gradtx.with_state_dtypes(gradtx.sgd(0.1), {"mu": BF16})
    with pytest.raises(
        gradtx.HyperparameterError, match=r"with_state_dtypes.*\['mu'\]"
    ):
        tx.init(_params())
    with pytest.raises(TypeError, match="with_state_dtypes"):
        gradtx.with_state_dtypes(gradtx.adam(0.1), {"mu": jnp.int32})


def test_with_state_dtypes_init_works_under_eval_shape():
    tx = gradtx.with_state_dtypes(gradtx.adam(1e-2), {"mu": BF16})
    shapes = jax.eval_shape(tx.init, _params())
    assert all(x.dtype == BF16 for x in jax.tree.leaves(shapes[0].mu))
