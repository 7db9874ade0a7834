import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _tree():
    return {"w": jnp.ones((8, 4)), "b": jnp.zeros(4)}


def _canonical():
    return gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.scale_by_adam(),
        gradtx.add_decayed_weights(1e-4),
        gradtx.scale_by_learning_rate(
            gradtx.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 100)
        ),
    )


def test_make_step_donates_params_and_state():
    tx = gradtx.adamw(1e-3)
    params = _tree()
    state = tx.init(params)
    step = gradtx.make_step(tx)
    new_params, new_state = step(params, state, _tree())
    assert all(x.is_deleted() for x in jax.tree.leaves((params, state)))
    assert not any(x.is_deleted() for x in jax.tree.leaves((new_params, new_state)))


def test_make_step_without_donation_keeps_inputs():
    tx = gradtx.adamw(1e-3)
    params = _tree()
    state = tx.init(params)
    gradtx.make_step(tx, donate=False)(params, state, _tree())
    assert not any(x.is_deleted() for x in jax.tree.leaves((params, state)))


_STEP_TXS = {
    "adamw": lambda: gradtx.adamw(1e-3),
    "canonical": _canonical,
    # Regression: the update once used the unrounded moments, so XLA copied every
    # old bf16 moment aside (a leaf-sized temporary per moment per step).
    "adamw_bf16_moments": lambda: gradtx.adamw(
        1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16
    ),
    "sgd_bf16_momentum": lambda: gradtx.sgd(
        1e-3, momentum=0.9, accumulator_dtype=jnp.bfloat16
    ),
}


@pytest.mark.parametrize("name", list(_STEP_TXS), ids=list(_STEP_TXS))
def test_make_step_aliases_every_buffer_and_needs_no_leaf_sized_temporary(name):
    tx = _STEP_TXS[name]()
    params = {f"l{i}": jnp.ones((64, 64)) for i in range(4)}
    state = tx.init(params)
    compiled = gradtx.make_step(tx).lower(params, state, params).compile()
    memory = compiled.memory_analysis()
    if memory is None:
        pytest.skip("this backend reports no memory analysis")
    donated = sum(x.nbytes for x in jax.tree.leaves((params, state)))
    assert memory.alias_size_in_bytes == donated
    # Scalars only (norms, bias corrections): far below one 64x64 f32 leaf.
    assert memory.temp_size_in_bytes < 64 * 64 * 4 // 4


def test_make_step_with_loss_fn_equals_manual_step():
    tx = gradtx.adam(0.1)
    x = jnp.linspace(-1.0, 1.0, 4)

    def loss(p, x):
        return jnp.sum((p["w"] @ jnp.ones(4) - x[:1]) ** 2) + jnp.sum(p["b"] ** 2)

    params = _tree()
    manual_state = tx.init(params)
    grads = jax.grad(loss)(params, x)
    updates, manual_state = tx.update(grads, manual_state, params)
    expected = gradtx.apply_updates(params, updates)

    step = gradtx.make_step(tx, loss)
    new, state, value = step(_tree(), tx.init(_tree()), x)
    chex.assert_trees_all_close(new, expected, rtol=1e-6)
    chex.assert_trees_all_close(state, manual_state, rtol=1e-6)
    np.testing.assert_allclose(value, loss(_tree(), x), rtol=1e-6)


def test_make_step_has_aux_returns_loss_and_aux():
    tx = gradtx.sgd(0.1)

    def loss(p):
        return jnp.sum(p**2), {"norm": jnp.linalg.norm(p)}

    step = gradtx.make_step(tx, loss, has_aux=True)
    params, _, (value, aux) = step(jnp.ones(3), tx.init(jnp.ones(3)))
    np.testing.assert_allclose(value, 3.0)
    np.testing.assert_allclose(aux["norm"], np.sqrt(3.0), rtol=1e-6)
    np.testing.assert_allclose(params, 0.8 * np.ones(3), rtol=1e-6)


def test_make_step_compiles_once_for_repeated_steps():
    tx = _canonical()
    step = gradtx.make_step(tx)
    params = _tree()
    state = tx.init(params)
    for _ in range(3):
        params, state = step(params, state, _tree())
    assert step._cache_size() == 1


def test_traced_learning_rate_changes_without_recompiling():
    # Hyperparameters are never coerced with float(), so an optimizer built inside
    # the jitted function from traced arguments compiles once for every value
    # (optax #577 is about the opposite: a constant lr baked into the program).
    traces = []

    @jax.jit
    def step(params, grads, lr, weight_decay):
        traces.append(None)
        tx = gradtx.adamw(lr, weight_decay=weight_decay)
        updates, _ = tx.update(grads, tx.init(params), params)
        return gradtx.apply_updates(params, updates)

    params, grads = jnp.ones(3), jnp.full(3, 0.5)
    out = [step(params, grads, jnp.float32(lr), jnp.float32(0.1)) for lr in (0.1, 0.2)]
    assert len(traces) == 1
    # One Adam step moves each param by lr * (1 + wd * p).
    np.testing.assert_allclose(1.0 - out[0], 0.1 * 1.1, rtol=1e-5)
    np.testing.assert_allclose(1.0 - out[1], 0.2 * 1.1, rtol=1e-5)
