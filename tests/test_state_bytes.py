# SPDX-License-Identifier: Apache-2.0
"""`state_bytes` sizes an optimizer state without allocating it (DESIGN.md §8)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest

import gradtx


def _params(dtype=jnp.float32):
    return {
        "dense": {"w": jnp.ones((64, 32), dtype), "b": jnp.ones((32,), dtype)},
        "emb": jnp.ones((100, 16), jnp.bfloat16),
        "s": jnp.ones((), dtype),
    }


CASES = {
    "adamw": lambda: gradtx.adamw(1e-3),
    "adamw-bf16-moments": lambda: gradtx.adamw(
        1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16
    ),
    "adamw-f32-moments": lambda: gradtx.adamw(
        1e-3, mu_dtype=jnp.float32, nu_dtype=jnp.float32
    ),
    "sgd-momentum": lambda: gradtx.sgd(0.1, momentum=0.9),
    "chain": lambda: gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.scale_by_adam(),
        gradtx.add_decayed_weights(1e-4),
        gradtx.scale_by_learning_rate(
            gradtx.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 100)
        ),
    ),
    "loss-scaled": lambda: gradtx.with_loss_scaling(gradtx.adam(1e-3)),
    "optax-adamw": lambda: optax.adamw(1e-3),
}


def _nbytes(tree):
    return sum(x.nbytes for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_state_bytes_matches_the_allocated_state(case):
    tx = CASES[case]()
    params = _params()
    state = tx.init(params)
    report = gradtx.state_bytes(tx, params)

    assert report.total == _nbytes(state)
    assert report.num_params == 64 * 32 + 32 + 100 * 16 + 1
    assert report.param_bytes == _nbytes(params)
    assert report.per_param == report.total / report.num_params
    by_dtype = {}
    for x in jax.tree.leaves(state):
        by_dtype[x.dtype.name] = by_dtype.get(x.dtype.name, 0) + x.nbytes
    assert dict(report.by_dtype) == by_dtype
    # Each field's bytes, found by name with gradtx.tree (outermost matches only).
    for name, size in report.by_field.items():
        found = gradtx.tree.get_all_with_path(state, name)
        assert size == sum(_nbytes(v) for _, v in found), name
    assert sum(report.by_field.values()) == report.total


def test_state_bytes_adam_fields_and_dtypes():
    report = gradtx.state_bytes(
        gradtx.adamw(1e-3, mu_dtype=jnp.bfloat16), {"w": jnp.ones((10, 10))}
    )
    assert dict(report.by_field) == {"count": 4, "mu": 200, "nu": 400}
    assert dict(report.by_dtype) == {"int32": 4, "bfloat16": 200, "float32": 400}
    assert report.per_param == 6.04


def test_state_bytes_momentum_is_one_trace():
    report = gradtx.state_bytes(gradtx.sgd(0.1, momentum=0.9), _params())
    assert dict(report.by_field) == {"trace": _nbytes(_params())}


def test_state_bytes_abstract_params_equal_concrete_ones():
    tx = CASES["chain"]()
    concrete = gradtx.state_bytes(tx, _params(jnp.bfloat16))
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _params(jnp.bfloat16)
    )
    assert gradtx.state_bytes(tx, abstract) == concrete


def test_state_bytes_plans_a_state_too_large_to_allocate():
    # 2**40 float32 params: Adam's state would be 8 TiB if anything were allocated.
    params = {"w": jax.ShapeDtypeStruct((2**20, 2**20), jnp.float32)}
    report = gradtx.state_bytes(gradtx.adam(1e-3, mu_dtype=jnp.bfloat16), params)
    assert report.total == 2 * 2**40 + 4 * 2**40 + 4
    assert report.num_params == 2**40
    assert report.by_field["mu"] == 2 * 2**40


def test_state_bytes_of_empty_params_and_unnamed_leaves():
    assert gradtx.state_bytes(gradtx.adam(1e-3), {}).per_param == 0.0
    raw = gradtx.GradientTransformation(
        lambda p: {"acc": jax.tree.map(jnp.zeros_like, p)},
        lambda u, s, p=None, **kw: (u, s),
    )
    report = gradtx.state_bytes(raw, {"w": jnp.ones(3)})
    assert dict(report.by_field) == {"<unnamed>": 12}


def test_state_bytes_prints_a_table():
    report = gradtx.state_bytes(gradtx.adamw(1e-3), {"w": jnp.ones((1000, 1000))})
    text = str(report)
    lines = text.splitlines()
    assert lines[0].startswith("optimizer state: 7.6 MiB (8,000,004 bytes)")
    assert "1,000,000 params = 8.00 bytes/param" in lines[0]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["mu"] == ["4,000,000", "4.00", "50.0%"]
    assert rows["count"] == ["4", "0.00", "0.0%"]
    assert rows["float32"] == ["8,000,000", "8.00", "100.0%"]
