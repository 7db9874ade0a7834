# SPDX-License-Identifier: Apache-2.0
"""The 8-bit aliases against their float32 runs (RELIABILITY.md C10, bnb's method).

Each step runs the 8-bit optimizer and its float32 alias from the same params and
the same (dequantized) state, compares the new dequantized state elementwise (atol
3e-3, rtol 1e-3, fewer than 20 mismatches per leaf) and the params (mean abs error
< 6e-5, mean relative error < 6e-4), then re-syncs the float32 run to the 8-bit one.
On top of bnb's figures, every dequantized element must be within the code map's
rounding bound of the float32 value (half the widest gap times the block's absmax).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx.precision import _quantize_map as qm

WD = 0.1  # non-zero weight decay where it applies (C10)

# name -> (8-bit factory, float32 factory); same hyperparameters on both sides.
ALIASES = {
    "adam8bit": (
        lambda **q: gradtx.adam8bit(1e-3, **q),
        lambda: gradtx.adam(1e-3),
    ),
    "adam8bit-nesterov": (
        lambda **q: gradtx.adam8bit(1e-3, nesterov=True, **q),
        lambda: gradtx.adam(1e-3, nesterov=True),
    ),
    "adamw8bit": (
        lambda **q: gradtx.adamw8bit(1e-3, weight_decay=WD, **q),
        lambda: gradtx.adamw(1e-3, weight_decay=WD),
    ),
    "sgd8bit": (
        lambda **q: gradtx.sgd8bit(1e-2, momentum=0.9, **q),
        lambda: gradtx.sgd(1e-2, momentum=0.9),
    ),
    "rmsprop8bit": (
        lambda **q: gradtx.rmsprop8bit(1e-3, **q),
        lambda: gradtx.rmsprop(1e-3),
    ),
    "rmsprop8bit-centered-momentum": (
        lambda **q: gradtx.rmsprop8bit(1e-3, centered=True, momentum=0.9, **q),
        lambda: gradtx.rmsprop(1e-3, centered=True, momentum=0.9),
    ),
}


def _bound(signed: bool) -> float:
    """Largest |x/absmax - nearest code| over [-1, 1] (or [0, 1])."""
    table = qm.dynamic_map(signed)
    edge = 1.0 + float(table.min()) if signed else 0.0  # -1 has no code
    return max(float(np.diff(table).max()) / 2, edge) * (1 + 1e-5)


def _step(tx):
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return gradtx.apply_updates(p, u), s

    return jax.jit(step)


def _quantized_leaves(state8, state32, block_size):
    """(path, QuantizedArray, float32 leaf) for each quantized leaf."""
    is_q = lambda x: isinstance(x, gradtx.QuantizedArray)
    q_leaves = jax.tree_util.tree_flatten_with_path(state8, is_leaf=is_q)[0]
    f_leaves = jax.tree.structure(state8, is_leaf=is_q).flatten_up_to(state32)
    return [
        (jax.tree_util.keystr(path), q, f)
        for (path, q), f in zip(q_leaves, f_leaves, strict=True)
        if is_q(q)
    ]


def _check_against_float32(name, shape, steps=50, block_size=256):
    make8, make32 = ALIASES[name]
    tx8, tx32 = make8(block_size=block_size), make32()
    step8, step32 = _step(tx8), _step(tx32)
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal(shape), jnp.float32)}
    state8 = tx8.init(params)
    state32 = gradtx.dequantize_state(state8, block_size)
    n_quantized = 0
    for _ in range(steps):
        g = {"w": jnp.asarray(rng.standard_normal(shape) * 0.01, jnp.float32)}
        p8, state8 = step8(params, state8, g)
        p32, state32 = step32(params, state32, g)
        leaves = _quantized_leaves(state8, state32, block_size)
        n_quantized = len(leaves)
        for path, q, f32 in leaves:
            deq = np.asarray(qm.dequantize(q.codes, q.absmax, block_size))
            f32 = np.asarray(f32)
            assert np.all(np.isfinite(deq)), path
            bad = ~np.isclose(deq, f32, atol=3e-3, rtol=1e-3)
            assert bad.sum() < 20, (path, int(bad.sum()))
            limit = _bound(q.codes.dtype == jnp.int8) * np.repeat(
                np.asarray(q.absmax), block_size
            )[: f32.size].reshape(f32.shape)
            # + a few float32 ulps: the two compiled steps may round differently.
            assert np.all(np.abs(deq - f32) <= limit + 1e-6 * np.abs(f32)), path
        err = np.abs(np.asarray(p8["w"]) - np.asarray(p32["w"]))
        assert err.mean() < 6e-5
        assert (err / (np.abs(np.asarray(p32["w"])) + 1e-9)).mean() < 6e-4
        # Re-sync: the float32 run continues from the 8-bit params and state.
        params, state32 = p8, gradtx.dequantize_state(state8, block_size)
    assert n_quantized >= 1


@pytest.mark.parametrize("name", list(ALIASES))
@pytest.mark.parametrize(
    "shape", [(1024, 32), (129, 67)], ids=["1024x32", "129x67-partial-block"]
)
def test_eightbit_states_track_the_float32_run(name, shape):
    _check_against_float32(name, shape, steps=50 if shape == (1024, 32) else 20)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adam8bit", "adamw8bit", "sgd8bit", "rmsprop8bit"])
@pytest.mark.parametrize("shape", [(1024, 1024), (1024, 4097)], ids=["1024", "4097"])
def test_eightbit_states_track_the_float32_run_at_bnb_sizes(name, shape):
    _check_against_float32(name, shape)


def test_eightbit_small_block_size_tracks_too():
    _check_against_float32("adamw8bit", (64, 100), steps=10, block_size=64)


@pytest.mark.parametrize(
    ("alias", "chain"),
    [
        (
            lambda: gradtx.adamw8bit(0.01, weight_decay=WD, min_size=0, block_size=64),
            lambda: gradtx.chain(
                gradtx.quantize_state(
                    gradtx.scale_by_adam(), block_size=64, min_size=0
                ),
                gradtx.add_decayed_weights(WD),
                gradtx.scale_by_learning_rate(0.01),
            ),
        ),
        (
            lambda: gradtx.sgd8bit(0.01, momentum=0.9, min_size=0),
            lambda: gradtx.chain(
                gradtx.quantize_state(gradtx.trace(0.9), min_size=0),
                gradtx.scale_by_learning_rate(0.01),
            ),
        ),
    ],
    ids=["adamw8bit", "sgd8bit"],
)
def test_eightbit_alias_equals_its_chain(alias, chain):
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((40, 30)), jnp.float32)}
    a, b = _step(alias()), _step(chain())
    sa, sb = alias().init(params), chain().init(params)
    pa = pb = params
    for _ in range(5):
        g = {"w": jnp.asarray(rng.standard_normal((40, 30)), jnp.float32)}
        (pa, sa), (pb, sb) = a(pa, sa, g), b(pb, sb, g)
    chex.assert_trees_all_equal((pa, sa), (pb, sb))


def test_sgd8bit_without_momentum_is_sgd():
    tx, plain = gradtx.sgd8bit(0.1), gradtx.sgd(0.1)
    params = {"w": jnp.ones(5000)}
    chex.assert_trees_all_equal(tx.init(params), plain.init(params))
    u, _ = tx.update({"w": jnp.ones(5000)}, tx.init(params))
    np.testing.assert_array_equal(np.asarray(u["w"]), np.float32(-0.1))


def test_eightbit_zero_gradients_give_zero_updates_and_finite_state():
    # Blocks of zeros have absmax 0: no 0/0 anywhere (bnb #1382 class of bug).
    for tx in (
        gradtx.adamw8bit(1e-3, weight_decay=0.0),
        gradtx.rmsprop8bit(1e-3, centered=True),
    ):
        params = {"w": jnp.ones(8192)}
        g = {"w": jnp.zeros(8192).at[:300].set(0.01)}  # blocks 2.. are all zero
        state = tx.init(params)
        for _ in range(3):
            u, state = jax.jit(tx.update)(g, state, params)
        chex.assert_tree_all_finite((u, gradtx.dequantize_state(state)))
        np.testing.assert_array_equal(np.asarray(u["w"][512:]), 0.0)


def test_eightbit_bf16_params_keep_their_dtype():
    tx = gradtx.adamw8bit(1e-3)
    params = {"w": jnp.ones((64, 128), jnp.bfloat16)}
    state = tx.init(params)
    g = {"w": jnp.full((64, 128), 0.01, jnp.bfloat16)}
    u, new_state = jax.jit(tx.update)(g, state, params)
    assert u["w"].dtype == jnp.bfloat16
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)


def test_lion8bit_tracks_the_float32_lion():
    ALIASES["lion8bit"] = (
        lambda **q: gradtx.lion8bit(1e-4, weight_decay=WD, **q),
        lambda: gradtx.lion(1e-4, weight_decay=WD),
    )
    try:
        _check_against_float32("lion8bit", (1024, 32))
    finally:
        del ALIASES["lion8bit"]


def test_eightbit_memory_is_about_a_quarter_of_float32():
    params = {"w": jax.ShapeDtypeStruct((4096, 1024), jnp.float32)}
    for eight, full in (
        (gradtx.adam8bit(1e-3), gradtx.adam(1e-3)),
        (gradtx.sgd8bit(1e-3, momentum=0.9), gradtx.sgd(1e-3, momentum=0.9)),
        (gradtx.rmsprop8bit(1e-3), gradtx.rmsprop(1e-3)),
    ):
        ratio = (
            gradtx.state_bytes(eight, params).total
            / gradtx.state_bytes(full, params).total
        )
        # One byte per element plus 4 bytes of absmax per 256: (1 + 1/64) / 4.
        assert ratio == pytest.approx((1 + 1 / 64) / 4, rel=1e-3)
        assert math.isfinite(ratio)
