# SPDX-License-Identifier: Apache-2.0
"""`apply_updates_stochastic`: unbiased rounding of low-precision params."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import make_grads, make_params

import gradtx
from gradtx.precision._rounding import stochastic_round

BF16, F16 = jnp.bfloat16, jnp.float16
LOW = [pytest.param(BF16, id="bf16"), pytest.param(F16, id="f16")]
N = 20_000  # roundings per value


def _neighbours(x, dtype):
    """The two values of `dtype` around each float32 `x` (NumPy, from the bits)."""
    near = np.asarray(jnp.asarray(x).astype(dtype).astype(jnp.float32))
    up = np.asarray(
        jnp.nextafter(jnp.asarray(x).astype(dtype), jnp.asarray(np.inf, dtype)).astype(
            jnp.float32
        )
    )
    down = np.asarray(
        jnp.nextafter(jnp.asarray(x).astype(dtype), jnp.asarray(-np.inf, dtype)).astype(
            jnp.float32
        )
    )
    lo = np.where(near <= x, near, down)
    hi = np.where(near >= x, near, up)
    return lo, hi


@pytest.mark.parametrize("dtype", LOW)
def test_stochastic_rounding_is_unbiased(dtype, jit):
    rng = np.random.default_rng(0)
    # Values across binades, both signs, and f16 subnormals.
    x = np.concatenate(
        [
            rng.standard_normal(12),
            rng.standard_normal(4) * 1e-6,
            1 + rng.uniform(0, 2.0**-7, 4),
        ]
    ).astype(np.float32)
    rounded = jit(lambda v, k: stochastic_round(v, dtype, k))(
        jnp.broadcast_to(jnp.asarray(x), (N, x.size)), jax.random.key(1)
    )
    r = np.asarray(rounded.astype(jnp.float32), np.float64)
    lo, hi = _neighbours(x, dtype)
    # Every result is one of the two neighbours.
    assert np.all((r == lo) | (r == hi))
    p = (x.astype(np.float64) - lo) / np.where(hi > lo, hi - lo, 1)
    stderr = (hi - lo) * np.sqrt(p * (1 - p) / N)
    error = np.abs(r.mean(axis=0) - x)
    # Within 5 standard errors of the exact value (plus float32 rounding of x - lo).
    assert np.all(error <= 5 * stderr + 1e-7 * np.abs(x)), (error, stderr)
    # And round-to-nearest is biased on the same values: the test can tell.
    nearest = np.asarray(jnp.asarray(x).astype(dtype).astype(jnp.float32))
    assert np.any(np.abs(nearest - x) > 5 * stderr)


@pytest.mark.parametrize("dtype", LOW)
def test_stochastic_rounding_keeps_representable_and_nonfinite_values(dtype, jit):
    x = jnp.asarray(
        [0.0, -0.0, 1.0, -2.5, 0.375, 2.0**-20, jnp.inf, -jnp.inf, jnp.nan],
        jnp.float32,
    )
    for seed in range(5):
        out = jit(lambda v, k: stochastic_round(v, dtype, k))(x, jax.random.key(seed))
        np.testing.assert_array_equal(
            np.asarray(out.astype(jnp.float32)),
            np.asarray(x.astype(dtype).astype(jnp.float32)),
        )


def test_apply_updates_stochastic_tiny_updates_move_params_on_average():
    # 1000 steps of 2**-12 (1/16 of a bf16 ulp at 1): round-to-nearest never moves
    # the params; stochastic rounding moves them by 1000 * 2**-12 on average.
    n = 4096
    params = {"w": jnp.ones(n, BF16)}
    updates = {"w": jnp.full(n, -(2.0**-12), jnp.float32)}
    apply = jax.jit(gradtx.apply_updates_stochastic)  # 1000 steps: jitted only
    nearest = params
    key = jax.random.key(0)
    for _ in range(1000):
        key, sub = jax.random.split(key)
        params = apply(params, updates, sub)
        nearest = gradtx.apply_updates(nearest, updates)
    np.testing.assert_array_equal(np.asarray(nearest["w"], np.float32), 1.0)
    mean = float(params["w"].astype(jnp.float32).mean())
    expected = 1.0 - 1000 * 2.0**-12
    # Each element is a sum of 1000 independent roundings (ulp 2**-8 or 2**-9):
    # standard deviation < sqrt(1000) * 2**-9, so the mean's is < 1e-4.
    assert abs(mean - expected) < 5e-4, mean


def test_apply_updates_stochastic_float32_leaves_equal_apply_updates(jit):
    params, updates = make_params(), make_grads(1)[0]
    out = jit(gradtx.apply_updates_stochastic)(params, updates, jax.random.key(3))
    chex.assert_trees_all_equal(out, gradtx.apply_updates(params, updates))


def test_apply_updates_stochastic_keeps_dtypes_and_none_updates():
    params = {"a": jnp.ones(3, BF16), "b": jnp.ones(2, F16), "c": jnp.ones(2)}
    updates = {"a": jnp.full(3, 0.3, jnp.float32), "b": None, "c": jnp.ones(2)}
    out = gradtx.apply_updates_stochastic(params, updates, jax.random.key(0))
    assert {k: v.dtype for k, v in out.items()} == {
        "a": BF16,
        "b": F16,
        "c": jnp.float32,
    }
    assert out["b"] is params["b"]


def test_apply_updates_stochastic_same_key_same_result_other_key_differs():
    params = {"w": jnp.ones(1000, BF16)}
    updates = {"w": jnp.full(1000, 2.0**-10, BF16)}
    a = gradtx.apply_updates_stochastic(params, updates, jax.random.key(7))
    b = gradtx.apply_updates_stochastic(params, updates, jax.random.key(7))
    c = gradtx.apply_updates_stochastic(params, updates, jax.random.PRNGKey(8))
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(np.asarray(a["w"]), np.asarray(c["w"]))


def test_apply_updates_stochastic_leaves_get_independent_keys():
    params = {"a": jnp.ones(1000, BF16), "b": jnp.ones(1000, BF16)}
    updates = jax.tree.map(lambda p: jnp.full(p.shape, 2.0**-10, BF16), params)
    out = gradtx.apply_updates_stochastic(params, updates, jax.random.key(0))
    assert not np.array_equal(np.asarray(out["a"]), np.asarray(out["b"]))
