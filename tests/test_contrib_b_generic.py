# SPDX-License-Identifier: Apache-2.0
"""The registry's shared checks, for this area's names that are not in the registry.

Dtypes kept (f32, bf16, f16), state avals stable, finite, no retrace on the second
jitted step, init under `jax.eval_shape`, unknown update arguments ignored, counters
that saturate, and a bitwise checkpoint round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import avals
from _registry_base import make_grads, make_params

import gradtx

contrib = gradtx.contrib


class Case(NamedTuple):
    make: Callable[[], gradtx.GradientTransformation]
    params: Callable[[Any], Any] = make_params
    grads: Callable[[int, Any], list[Any]] = make_grads
    extra: tuple[tuple[str, Any], ...] = ()


def _matrices(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    return {k: jnp.asarray(rng.standard_normal(s), dtype) for k, s in
            {"w": (4, 3), "v": (3, 5)}.items()}  # fmt: skip


def _matrix_grads(n, dtype=jnp.float32):
    return [jax.tree.map(lambda x, i=i: jnp.sin(x * (i + 2)), _matrices(dtype))
            for i in range(n)]  # fmt: skip


def _per_example(n, dtype=jnp.float32):
    return [jax.tree.map(lambda g: jnp.stack([g, 2 * g, -g]), g)
            for g in make_grads(n, dtype)]  # fmt: skip


def _lookahead_params(dtype=jnp.float32):
    return gradtx.LookaheadParams.init_synced(make_params(dtype))


def _obj(p):
    return sum(jnp.sum(jnp.cos(x.astype(jnp.float32))) for x in jax.tree.leaves(p))


def _adv():
    return gradtx.chain(gradtx.normalize(), gradtx.sgd(0.1))


_GRAD_FN = lambda p, i: jax.tree.map(lambda x: jnp.sin(x) * (i + 1), p)

CASES = {
    "sam": Case(lambda: gradtx.sam(gradtx.adam(0.01), _adv())),
    "sam-opaque": Case(
        lambda: gradtx.sam(gradtx.adam(0.01), _adv(), opaque_mode=True),
        extra=(("grad_fn", _GRAD_FN),),
    ),
    "lookahead": Case(
        lambda: gradtx.lookahead(gradtx.adam(0.01), 2, 0.5, reset_state=True),
        params=_lookahead_params,
    ),
    "scale_by_muon": Case(gradtx.scale_by_muon, _matrices, _matrix_grads),
    "muon": Case(lambda: gradtx.muon(0.01, weight_decay=0.1)),
    "schedule_free": Case(lambda: gradtx.schedule_free(gradtx.sgd(0.1), 0.1)),
    "schedule_free_sgd": Case(lambda: gradtx.schedule_free_sgd(0.1, warmup_steps=2)),
    "schedule_free_adamw": Case(lambda: gradtx.schedule_free_adamw(0.01)),
    "scale_by_galore": Case(lambda: gradtx.scale_by_galore(rank=2)),
    "galore": Case(lambda: gradtx.galore(0.01, rank=2, update_proj_gap=2)),
    "hutchinson": Case(
        gradtx.hutchinson_estimator_diag_hessian, extra=(("obj_fn", _obj),)
    ),
    "sophia": Case(lambda: contrib.sophia(0.01, update_interval=2),
                   extra=(("obj_fn", _obj),)),
    "dp_aggregate": Case(
        lambda: contrib.differentially_private_aggregate(1.0, 0.5, key=1),
        grads=_per_example,
    ),
    "dpsgd": Case(lambda: contrib.dpsgd(0.1, 1.0, 0.5, 2, momentum=0.9),
                  grads=_per_example),
}  # fmt: skip
IDS = list(CASES)


def _step(case: Case, tx: gradtx.GradientTransformation, traces: list[None]):
    def step(params, state, grads):
        traces.append(None)
        updates, state = tx.update(grads, state, params, **dict(case.extra))
        return gradtx.apply_updates(params, updates), state, updates

    return jax.jit(step)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("name", IDS)
def test_updates_keep_gradient_dtype_and_state_avals(name, dtype):
    case, dtype = CASES[name], jnp.dtype(dtype)
    tx = case.make()
    params = case.params(dtype)
    state = tx.init(params)
    state_avals, step = avals(state), _step(case, tx, [])
    for g in case.grads(2, dtype):
        params, state, updates = step(params, state, g)
        assert {u.dtype for u in jax.tree.leaves(updates)} == {dtype}
        assert avals(state) == state_avals
        chex.assert_tree_all_finite(updates)


@pytest.mark.parametrize("name", IDS)
def test_second_jitted_step_does_not_retrace_and_extra_args_are_ignored(name):
    case = CASES[name]
    tx, traces = case.make(), []
    step = _step(case, tx, traces)
    params = case.params(jnp.float32)
    state = tx.init(params)
    g1, g2, g3 = case.grads(3, jnp.float32)
    params, state, _ = step(params, state, g1)
    n = len(traces)
    params, state, _ = step(params, state, g2)
    assert len(traces) == n
    plain = lambda p, s, g: tx.update(g, s, p, **dict(case.extra))
    more = lambda p, s, g: tx.update(
        g, s, p, foo=1, value=jnp.float32(2), **dict(case.extra)
    )
    assert str(jax.make_jaxpr(more)(params, state, g3)) == str(
        jax.make_jaxpr(plain)(params, state, g3)
    )


@pytest.mark.parametrize("name", IDS)
def test_init_works_under_eval_shape(name):
    case = CASES[name]
    tx = case.make()
    params = case.params(jnp.float32)
    abstract = jax.eval_shape(tx.init, params)
    concrete = tx.init(params)
    shapes = lambda t: [(x.shape, x.dtype) for x in jax.tree.leaves(t)]
    assert shapes(abstract) == shapes(concrete)


def test_split_real_and_imaginary_keeps_complex_dtype_under_jit():
    tx = gradtx.split_real_and_imaginary(gradtx.adam(0.01))
    p = {"c": jnp.ones((2, 2), jnp.complex64), "r": jnp.ones(3)}
    state, step = tx.init(p), jax.jit(tx.update)
    for _ in range(2):
        u, state = step(p, state, p)
        assert u["c"].dtype == jnp.complex64
        assert u["r"].dtype == jnp.float32


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("scale_by_muon", "count"),
        ("scale_by_galore", "count"),
        ("schedule_free_sgd", "step_count"),
        ("sophia", "count"),
    ],
)
def test_counters_saturate_at_int32_max(name, field):
    case = CASES[name]
    tx = case.make()
    params = case.params(jnp.float32)
    top = np.iinfo(np.int32).max
    state = gradtx.tree.set(tx.init(params), **{field: jnp.int32(top)})
    (g,) = case.grads(1, jnp.float32)
    updates, state = tx.update(g, state, params, **dict(case.extra))
    found = gradtx.tree.get_all_with_path(state, field)
    assert found
    assert all(int(v) == top for _, v in found)
    chex.assert_tree_all_finite(updates)


def _save_and_restore(state: Any, path: Any) -> Any:
    """Every leaf through a `.npz` file (keys as raw data), rebuilt on the treedef."""
    leaves, treedef = jax.tree.flatten(state)
    is_key = [jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) for x in leaves]
    raw = [
        jax.random.key_data(x) if k else x for x, k in zip(leaves, is_key, strict=True)
    ]
    np.savez(path, *[np.asarray(x) for x in raw])
    with np.load(path) as f:
        back = [f[f"arr_{i}"] for i in range(len(raw))]
    back = [jax.random.wrap_key_data(b) if k else jnp.asarray(b)
            for b, k in zip(back, is_key, strict=True)]  # fmt: skip
    return treedef.unflatten(back)


@pytest.mark.parametrize("name", IDS)
def test_checkpoint_round_trip_is_bitwise(name, tmp_path):
    case = CASES[name]
    tx = case.make()
    step = _step(case, tx, [])
    params = case.params(jnp.float32)
    grads = case.grads(4, jnp.float32)
    state = tx.init(params)
    for g in grads[:2]:
        params, state, _ = step(params, state, g)
    restored = _save_and_restore(state, tmp_path / "state.npz")
    assert avals(restored) == avals(state)
    a, b = (params, state), (params, restored)
    for g in grads[2:]:
        a = step(a[0], a[1], g)[:2]
        b = step(b[0], b[1], g)[:2]
    flat = lambda t: [jax.random.key_data(x) if jax.dtypes.issubdtype(
        x.dtype, jax.dtypes.prng_key) else x for x in jax.tree.leaves(t)]  # fmt: skip
    chex.assert_trees_all_equal(flat(a), flat(b))
