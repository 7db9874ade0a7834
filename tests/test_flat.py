import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _params():
    return {
        "w": jnp.arange(12.0, dtype=jnp.float32).reshape(4, 3),
        "b": jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float32),
        "scale": jnp.asarray(2.0, jnp.float32),
        "h": jnp.ones((2, 2), jnp.bfloat16),
        "empty": jnp.zeros((0, 3), jnp.float32),
    }


def test_flat_ravel_unravel_round_trip_is_exact(jit):
    params = _params()
    layout = gradtx.flat.layout(params)
    flat = jit(layout.ravel)(params)
    assert set(flat) == {"float32", "bfloat16"}
    assert flat["float32"].shape == (12 + 5 + 1,)
    assert flat["bfloat16"].dtype == jnp.bfloat16
    chex.assert_trees_all_equal(jit(layout.unravel)(flat), params)


def test_flat_layout_from_shape_dtype_structs_equals_layout_from_arrays():
    params = _params()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    assert gradtx.flat.layout(abstract) == gradtx.flat.layout(params)
    assert hash(gradtx.flat.layout(abstract)) == hash(gradtx.flat.layout(params))


def test_flat_gradient_through_unravel_is_the_raveled_tree_gradient():
    params = _params()
    layout = gradtx.flat.layout(params)

    def loss(tree):
        return jnp.sum(tree["w"] ** 2) + jnp.sum(jnp.sin(tree["b"])) * tree["scale"]

    tree_grads = jax.grad(loss)(dict(params))
    flat_grads = jax.grad(lambda f: loss(layout.unravel(f)))(layout.ravel(params))
    chex.assert_trees_all_close(flat_grads, layout.ravel(tree_grads), rtol=1e-6)


def _canonical(lib_mask=None):
    schedule = gradtx.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 20)
    return gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.scale_by_adam(),
        gradtx.add_decayed_weights(1e-2, mask=lib_mask),
        gradtx.scale_by_learning_rate(schedule),
    )


def test_flat_canonical_chain_on_buffers_equals_chain_on_tree():
    params = {k: v for k, v in _params().items() if v.dtype == jnp.float32}
    layout = gradtx.flat.layout(params)
    mask = {"w": True, "b": False, "scale": False, "empty": True}
    tree_tx, flat_tx = _canonical(mask), _canonical(layout.ravel_mask(mask))
    flat = layout.ravel(params)
    tree_state, flat_state = tree_tx.init(params), flat_tx.init(flat)
    rng = np.random.default_rng(0)
    for _ in range(10):
        grads = jax.tree.map(
            lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params
        )
        u, tree_state = jax.jit(tree_tx.update)(grads, tree_state, params)
        params = gradtx.apply_updates(params, u)
        fu, flat_state = jax.jit(flat_tx.update)(layout.ravel(grads), flat_state, flat)
        flat = gradtx.apply_updates(flat, fu)
    chex.assert_trees_all_close(layout.unravel(flat), params, rtol=1e-6, atol=1e-7)


def test_flat_ravel_mask_accepts_prefix_and_callable():
    params = {"enc": {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}, "head": jnp.ones(3)}
    layout = gradtx.flat.layout(params)
    prefix = layout.ravel_mask({"enc": False, "head": True})["float32"]
    assert prefix.tolist() == [False] * 6 + [True] * 3
    by_ndim = layout.ravel_mask(lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
    assert by_ndim["float32"].tolist() == [False] * 2 + [True] * 4 + [False] * 3


def test_flat_unravel_without_a_buffer_raises_key_error():
    layout = gradtx.flat.layout(_params())
    with pytest.raises(KeyError, match="bfloat16"):
        layout.unravel({"float32": jnp.zeros(18)})


def test_flat_ravel_of_a_different_tree_raises_tree_mismatch():
    layout = gradtx.flat.layout(_params())
    with pytest.raises(gradtx.TreeMismatchError, match=r"flat\.Layout\.ravel"):
        layout.ravel({"w": jnp.zeros((4, 3))})


def test_flat_layout_of_empty_tree_has_no_buffers():
    layout = gradtx.flat.layout({})
    assert layout.ravel({}) == {}
    assert layout.unravel({}) == {}
