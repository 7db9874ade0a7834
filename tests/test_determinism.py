"""RELIABILITY.md C9 for the wrappers: repeatable, order-free, vmappable."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _params(order=("enc", "head")):
    values = {"enc": {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}, "head": jnp.ones(5)}
    return {k: values[k] for k in order}


def _grads(i, params):
    rng = np.random.default_rng(i)
    return jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params
    )


WRAPPERS = {
    "masked": lambda: gradtx.masked(gradtx.adam(1e-2), {"enc": True, "head": False}),
    "partition": lambda: gradtx.partition(
        {"a": gradtx.adam(1e-2), "s": gradtx.sgd(1e-2, momentum=0.9)},
        {"enc": "a", "head": "s"},
    ),
    "multisteps": lambda: gradtx.MultiSteps(gradtx.adamw(1e-2), 2),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.adam(1e-2), 2),
    "inject_hyperparams": lambda: gradtx.inject_hyperparams(gradtx.adamw)(1e-2),
    "loss_scaling": lambda: gradtx.with_loss_scaling(
        gradtx.adam(1e-2), growth_interval=2
    ),
    "reduce_on_plateau": lambda: gradtx.chain(
        gradtx.adam(1e-2), gradtx.reduce_on_plateau(patience=1)
    ),
    "ema_params": lambda: gradtx.chain(gradtx.sgd(1e-2), gradtx.ema_params(0.9)),
}


def _as_tx(tx):
    return tx.gradient_transformation() if isinstance(tx, gradtx.MultiSteps) else tx


def _run(tx, params, steps=6):
    tx = _as_tx(tx)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for i in range(steps):
        grads = _grads(i, params)
        value = jnp.float32(10.0 - i % 3)
        updates, state = update(grads, state, params, value=value)
        params = gradtx.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize("name", list(WRAPPERS), ids=list(WRAPPERS))
def test_wrapper_two_runs_are_bitwise_identical(name):
    chex.assert_trees_all_equal(
        _run(WRAPPERS[name](), _params()), _run(WRAPPERS[name](), _params())
    )


@pytest.mark.parametrize("name", list(WRAPPERS), ids=list(WRAPPERS))
def test_wrapper_results_do_not_depend_on_dict_insertion_order(name):
    forward = _run(WRAPPERS[name](), _params(("enc", "head")))
    backward = _run(WRAPPERS[name](), _params(("head", "enc")))
    chex.assert_trees_all_equal(forward[0], backward[0])


@pytest.mark.parametrize("name", ["multisteps", "loss_scaling", "inject_hyperparams"])
def test_wrapper_vmap_over_stacked_states_equals_a_loop(name):
    tx = _as_tx(WRAPPERS[name]())
    members = [jax.tree.map(lambda x, i=i: x * (1.0 + i), _params()) for i in range(3)]
    grads = [_grads(i, members[0]) for i in range(3)]
    states = [tx.init(p) for p in members]
    stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
    batched = jax.vmap(lambda g, s, p: tx.update(g, s, p))(
        stack(grads), stack(states), stack(members)
    )
    looped = stack(
        [tx.update(g, s, p) for g, s, p in zip(grads, states, members, strict=True)]
    )
    chex.assert_trees_all_close(batched, looped, rtol=1e-6, atol=1e-7)
