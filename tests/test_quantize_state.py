# SPDX-License-Identifier: Apache-2.0
"""Block-wise 8-bit quantization: the code map, the primitive and `quantize_state`.

RELIABILITY.md C10 (primitive figures), C7 (checkpoints), C1 (settings) and B25
(every branch of the code-map builder is covered; no NaN after a round trip).
"""

from __future__ import annotations

import importlib.util
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_checkpoint import _assert_bitwise_equal, _restore, _save

import gradtx
from gradtx.precision import _quantize_map as qm

ROOT = pathlib.Path(__file__).resolve().parents[1]


# --- the dynamic code map: every branch of the builder (bnb #227) ---


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("exponent_bits", [7, 5, 2, 1])
def test_dynamic_map_is_sorted_in_range_with_zero_and_one(signed, exponent_bits):
    table = qm.dynamic_map(signed, exponent_bits)
    assert table.dtype == np.float32
    assert table.shape == (256,)
    assert np.all(np.diff(table) >= 0)
    assert table.max() == 1.0
    assert 0.0 in table
    assert np.all(np.isfinite(table))
    assert table.min() >= (-1.0 if signed else 0.0)
    if signed:  # symmetric apart from 1.0, which has no negative twin
        pos, neg = table[table > 0][:-1], -table[table < 0][::-1]
        np.testing.assert_array_equal(pos, neg)


def test_dynamic_map_default_branches_have_no_padding():
    # 7 exponent bits: no additional group, every code distinct.
    signed, unsigned = qm.dynamic_map(True), qm.dynamic_map(False)
    assert len(np.unique(signed)) == 256
    assert len(np.unique(unsigned)) == 256
    # Smallest magnitudes: 1e-6 times the midpoint(s) of [0.1, 1] (bitsandbytes).
    np.testing.assert_allclose(signed[signed > 0].min(), 0.55e-6, rtol=1e-6)
    np.testing.assert_allclose(unsigned[unsigned > 0].min(), 0.325e-6, rtol=1e-6)
    np.testing.assert_allclose(signed.min(), -0.99296875, rtol=1e-7)


def test_dynamic_map_additional_group_and_zero_padding_branches():
    # Fewer exponent bits leave codes to an additional group (signed: 3 on each
    # side at 5 bits); the unsigned map cannot use all of them: zeros pad it.
    signed = qm.dynamic_map(True, 5)
    top = signed[(signed > 0.1) & (signed < 1.0)]
    assert len(top) == 64 + 3  # the last group plus the additional one
    unsigned = qm.dynamic_map(False, 5)
    assert np.sum(unsigned == 0) == 1 + 2 ** (7 - 5) - 1
    assert len(np.unique(unsigned)) == 256 - 3


def test_dynamic_map_rejects_impossible_exponent_bits():
    with pytest.raises(ValueError, match="max_exponent_bits"):
        qm.dynamic_map(True, 8)
    with pytest.raises(ValueError, match="max_exponent_bits"):
        qm.dynamic_map(False, 0)


# --- the primitive ---


def test_quantize_normal_data_error_matches_bitsandbytes():
    x = jax.random.normal(jax.random.key(0), (1024, 1024))
    codes, absmax = jax.jit(qm.quantize, static_argnums=(1, 2))(x, 256, True)
    assert codes.dtype == jnp.int8
    assert codes.shape == x.shape
    assert absmax.shape == (4096,)
    err = np.abs(np.asarray(qm.dequantize(codes, absmax, 256)) - np.asarray(x))
    assert err.mean() < 0.011
    assert (err / np.abs(np.asarray(x))).mean() < 0.018


def test_quantize_uniform_data_with_the_unsigned_map():
    x = jax.random.uniform(jax.random.key(1), (1024, 1024))
    codes, absmax = qm.quantize(x, 256, False)
    assert codes.dtype == jnp.uint8
    err = np.abs(np.asarray(qm.dequantize(codes, absmax, 256)) - np.asarray(x))
    # The unsigned map spends the sign bit on resolution: half the signed error.
    assert err.mean() < 0.0025
    signed_err = np.abs(
        np.asarray(qm.dequantize(*qm.quantize(x, 256, True), 256)) - np.asarray(x)
    )
    assert err.mean() < 0.6 * signed_err.mean()


def test_quantize_picks_the_nearest_code():
    table = qm.dynamic_map(True)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, 5000), jnp.float32)
    idx = np.asarray(qm._nearest_code(x, table))
    best = np.abs(np.asarray(x)[:, None] - table[None, :]).min(axis=1)
    np.testing.assert_array_equal(np.abs(table[idx] - np.asarray(x)), best)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_bucket_lookup_equals_the_binary_search(signed):
    table = qm.dynamic_map(signed)
    rng = np.random.default_rng(1)
    low = -1.0 if signed else 0.0
    x = np.concatenate(
        [
            rng.uniform(low, 1, 100_000),
            rng.standard_normal(20_000) * 1e-5,
            table,
            [0.0, -0.0, 1.0, 1e-30, 3e-7],
        ]
    ).astype(np.float32)
    x = x if signed else np.abs(x)
    fast = np.asarray(qm._map_code(jnp.asarray(x), signed))
    np.testing.assert_array_equal(fast, np.asarray(qm._nearest_code(x, table)))
    # Exactly on a midpoint both neighbours are nearest (up to its float32 rounding).
    mids = ((table[:-1] + table[1:]) / np.float32(2)).astype(np.float32)
    got = table[np.asarray(qm._map_code(jnp.asarray(mids), signed))]
    np.testing.assert_allclose(np.abs(got - mids), np.diff(table) / 2, atol=1e-7)


def test_quantize_zero_blocks_give_zeros_not_nan_and_partial_blocks_work():
    x = jnp.zeros(700).at[600].set(-3.0).at[650].set(1.5)  # blocks 0, 1 are zero
    for signed in (True, False):
        codes, absmax = qm.quantize(jnp.abs(x) if not signed else x, 256, signed)
        np.testing.assert_array_equal(np.asarray(absmax[:2]), 0.0)
        out = np.asarray(qm.dequantize(codes, absmax, 256))
        assert np.all(np.isfinite(out))
        np.testing.assert_array_equal(out[:600], 0.0)
    codes, absmax = qm.quantize(x, 256, True)
    out = np.asarray(qm.dequantize(codes, absmax, 256))
    assert out.shape == (700,)
    assert out[650] == pytest.approx(1.5, rel=0.01)
    assert out[600] == pytest.approx(-3.0, rel=0.01)


def test_quantize_scalar_and_empty_leaves():
    for x in (jnp.float32(2.0), jnp.zeros((0, 3))):
        codes, absmax = qm.quantize(x, 256, True)
        out = qm.dequantize(codes, absmax, 256)
        assert out.shape == jnp.shape(x)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(x))


# --- the wrapper ---


def _params(n=5000):
    rng = np.random.default_rng(0)
    return {
        "big": jnp.asarray(rng.standard_normal((n,)), jnp.float32),
        "small": jnp.asarray(rng.standard_normal((10,)), jnp.float32),
    }


def _grads(steps, n=5000, seed=1):
    rng = np.random.default_rng(seed)
    return [
        {
            "big": jnp.asarray(rng.standard_normal((n,)) * 0.01, jnp.float32),
            "small": jnp.asarray(rng.standard_normal((10,)) * 0.01, jnp.float32),
        }
        for _ in range(steps)
    ]


def test_quantize_state_quantizes_only_large_floating_leaves():
    tx = gradtx.adamw8bit(1e-3)
    state = tx.init(_params())
    adam_state = state[0]
    assert adam_state.count.dtype == jnp.int32
    for field, dtype in (("mu", jnp.int8), ("nu", jnp.uint8)):
        leaf = getattr(adam_state, field)["big"]
        assert isinstance(leaf, gradtx.QuantizedArray)
        assert leaf.codes.dtype == dtype
        assert leaf.codes.shape == (5000,)
        assert leaf.absmax.shape == (20,)  # ceil(5000 / 256)
        assert leaf.absmax.dtype == jnp.float32
        assert getattr(adam_state, field)["small"].dtype == jnp.float32
    assert "QuantizedArray(codes=int8[5000], blocks=(20,))" in repr(adam_state.mu)


def test_quantize_state_unsigned_fields_are_configurable():
    tx = gradtx.quantize_state(
        gradtx.scale_by_adam(), min_size=0, unsigned_fields=("mu", "nu")
    )
    state = tx.init(_params())
    assert state.mu["big"].codes.dtype == jnp.uint8
    tx = gradtx.quantize_state(gradtx.scale_by_rss(), min_size=0)
    assert tx.init(_params()).sum_of_squares["big"].codes.dtype == jnp.uint8


def test_quantize_state_keeps_structure_and_dtypes_and_does_not_retrace():
    tx = gradtx.adam8bit(1e-3)
    traces = []

    @jax.jit
    def step(p, s, g):
        traces.append(None)
        u, s = tx.update(g, s, p)
        return gradtx.apply_updates(p, u), s

    params = _params()
    state = tx.init(params)
    for g in _grads(3):
        params, state = step(params, state, g)
    assert len(traces) == 1
    chex.assert_trees_all_equal_structs(state, tx.init(params))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, tx.init(params))


def test_quantize_state_init_under_eval_shape():
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _params())
    state = jax.eval_shape(gradtx.adamw8bit(1e-3).init, abstract)
    assert state[0].mu["big"].codes.dtype == jnp.int8


def test_quantize_state_of_an_optax_transform(standard_promotion):
    import optax

    tx = gradtx.quantize_state(optax.adam(1e-3), min_size=0)
    params = _params()
    state = tx.init(params)
    assert isinstance(state[0].mu["big"], gradtx.QuantizedArray)
    updates, state = jax.jit(tx.update)(_grads(1)[0], state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)


def test_dequantize_state_gives_the_inner_state_view():
    tx = gradtx.adam8bit(1e-3, block_size=64)
    params = _params()
    state = tx.init(params)
    _, state = jax.jit(tx.update)(_grads(1)[0], state, params)
    view = gradtx.dequantize_state(state, block_size=64)
    mu = np.asarray(view[0].mu["big"])
    g = np.asarray(_grads(1)[0]["big"])
    np.testing.assert_allclose(mu, 0.1 * g, atol=0.01 * np.abs(0.1 * g).max())
    chex.assert_trees_all_equal(view[0].mu["small"], state[0].mu["small"])


def test_quantize_state_round_trip_is_bitwise_and_resumes_without_nan(tmp_path):
    tx = gradtx.adamw8bit(1e-3, weight_decay=0.1)
    step = jax.jit(
        lambda p, s, g: (lambda u, s: (gradtx.apply_updates(p, u), s))(
            *tx.update(g, s, p)
        )
    )
    params = _params()
    template = tx.init(params)
    state = template
    grads = _grads(20)
    for g in grads[:10]:
        params, state = step(params, state, g)
    _save(tmp_path / "s.npz", state)
    restored = _restore(tmp_path / "s.npz", template)
    _assert_bitwise_equal(restored, state)
    a, b = (params, state), (params, restored)
    for g in grads[10:]:
        a, b = step(*a, g), step(*b, g)
        chex.assert_tree_all_finite(gradtx.dequantize_state(b[1]))
    _assert_bitwise_equal(a, b)


def _gpt2_small():
    spec = importlib.util.spec_from_file_location(
        "_trees", ROOT / "benchmarks" / "_trees.py"
    )
    assert spec is not None
    trees = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(trees)
    return trees.abstract_tree(trees.gpt2_shapes(*trees.GPT2_SMALL))


def test_adamw8bit_state_is_at_most_2_1_bytes_per_param_on_gpt2_small():
    params = _gpt2_small()
    eight = gradtx.state_bytes(gradtx.adamw8bit(1e-3), params)
    full = gradtx.state_bytes(gradtx.adamw(1e-3), params)
    assert eight.num_params > 124_000_000
    assert eight.per_param <= 2.1
    assert full.per_param == pytest.approx(8.0, abs=1e-6)
    # Attributed to the moments, not to the codes/absmax children.
    assert set(eight.by_field) == {"count", "mu", "nu"}
    assert eight.by_dtype["int8"] == eight.by_dtype["uint8"]


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("bits", 4),
        ("bits", True),
        ("block_size", 0),
        ("block_size", 100),
        ("block_size", -256),
        ("block_size", 256.0),
        ("min_size", -1),
        ("min_size", 1.5),
    ],
)
@pytest.mark.parametrize("name", ["quantize_state", "adam8bit", "sgd8bit"])
def test_quantize_settings_are_validated_naming_the_function(name, arg, value):
    if name == "quantize_state":
        make = lambda **kw: gradtx.quantize_state(gradtx.scale_by_adam(), **kw)
    else:
        if arg == "bits":
            return  # the aliases have no bits argument
        make = lambda **kw: getattr(gradtx, name)(0.1, **kw)
    with pytest.raises(gradtx.HyperparameterError) as info:
        make(**{arg: value})
    assert f"gradtx.{name}: {arg} " in str(info.value)
    assert repr(value) in str(info.value)


def test_quantize_edge_settings_are_accepted():
    for kw in ({"block_size": 1}, {"block_size": 4096}, {"min_size": 0}):
        tx = gradtx.adam8bit(0.1, **kw)
        params = _params(300)
        updates, _ = jax.jit(tx.update)(_grads(1, 300)[0], tx.init(params), params)
        chex.assert_tree_all_finite(updates)
