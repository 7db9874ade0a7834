# SPDX-License-Identifier: Apache-2.0
"""Shared checks run over every registry entry, eagerly and under `jax.jit`."""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import store
from _registry import (
    ALL,
    REGISTRY,
    Trajectory,
    avals,
    jitted,
    make_grads,
    make_params,
    merged,
    state_to_reference,
    step_fn,
    stepper,
    to_f64,
)

import gradtx

RTOL = 1e-5  # RELIABILITY.md: f32 vs float64, every step; atol = RTOL * max(1, |max|)

# Public names that return a GradientTransformation but are not building blocks or
# optimizers with a numeric rule of their own; each is tested in test_protocol.py.
NOT_IN_REGISTRY = {
    "chain": "combinator: composes registry entries",
    "named_chain": "combinator: composes registry entries",
    "stateless": "builds a transform from a user function",
    "stateless_with_tree_map": "builds a transform from a user function",
    "with_extra_args_support": "adapter for foreign (optax) transforms",
    "ema_params": "passes updates through; averages params: tests/test_averaging.py",
    "swa_params": "passes updates through; averages params: tests/test_averaging.py",
    "snapshot": "measures updates, passes them through; tests/test_monitor.py",
    "monitor": "wrapper of measures; tests/test_monitor.py",
    "measure_with_ema": "chain(stateless(measure), ema); tests/test_monitor.py",
    "record_global_norm": "records the norm, passes updates through; test_monitor.py",
    "reduce_on_plateau": "needs value=; optax parity in tests/test_plateau.py",
    "param_groups": "partition of user factories; tests/test_groups.py",
    "scale_by_layer_decay": "partition of scale blocks; tests/test_groups.py",
    "with_state_dtypes": "wrapper: dtype policy; tests/test_state_dtypes.py",
    "apply_if_finite": "wrapper; tests/test_wrappers_accumulation_finite.py",
    "with_loss_scaling": "wrapper around an inner transform; see test_loss_scale.py",
    "masked": "wrapper of an inner transform; tests/test_wrappers_masking.py",
    "freeze": "masked(set_to_zero(), mask); tests/test_wrappers_masking.py",
    "partition": "wrapper of inner transforms; tests/test_wrappers_masking.py",
    "multi_transform": "old name of partition; tests/test_wrappers_masking.py",
    "selective_transform": "wraps partition; tests/test_wrappers_masking.py",
    "flatten": "wrapper of an inner transform; tests/test_wrappers_masking.py",
    "conditionally_transform": "wrapper; tests/test_wrappers_conditional.py",
    "conditionally_mask": "wrapper; tests/test_wrappers_conditional.py",
}
NOT_IN_REGISTRY = merged("NOT_IN_REGISTRY", NOT_IN_REGISTRY)


def _returns_transformation(obj: object) -> bool:
    try:
        ann = inspect.signature(obj).return_annotation
    except (TypeError, ValueError):
        return False
    return ann is gradtx.GradientTransformation or (
        isinstance(ann, str) and ann.split(".")[-1] == "GradientTransformation"
    )


def _public_functions() -> dict[str, object]:
    out = {}
    for name in dir(gradtx):
        obj = getattr(gradtx, name)
        if name.startswith("_") or not inspect.isfunction(obj):
            continue
        if obj.__module__.startswith("gradtx.schedules"):
            continue  # schedules map a step to a value; tested in test_schedules.py
        out[name] = obj
    return out


def test_registry_lists_every_public_transformation_factory():
    factories = {
        n for n, f in _public_functions().items() if _returns_transformation(f)
    }
    registered = {e.name for e in REGISTRY}
    missing = factories - registered - set(NOT_IN_REGISTRY)
    assert not missing, f"add these to tests/_registry.py: {sorted(missing)}"
    stale = (registered | set(NOT_IN_REGISTRY)) - factories
    assert not stale, f"not public GradientTransformation factories: {sorted(stale)}"


def test_every_public_function_declares_its_return_type():
    # The registry check above relies on return annotations (STYLE.md: the public
    # API is fully annotated), so an unannotated factory could not hide from it.
    unannotated = [
        n
        for n, f in _public_functions().items()
        if inspect.signature(f).return_annotation is inspect.Signature.empty
    ]
    assert not unannotated


def _is_jit(jit) -> bool:
    return jit is jax.jit


@pytest.mark.parametrize("entry", ALL)
def test_matches_float64_reference(entry, jit):
    # Eager mode dispatches every primitive separately (~100x slower per step); it
    # runs the same code as jit, so 10 steps cover it while jit runs all 100.
    n = 100 if _is_jit(jit) else 10
    tx, step = stepper(entry, jit)
    r = entry.reference()
    params = make_params()
    state = tx.init(params)
    rparams = to_f64(params)
    rstate = r.init(rparams)
    trajectory = Trajectory()
    for g in make_grads(n):
        params, state, updates = step(params, state, g)
        rupdates, rstate = r.update(to_f64(g), rstate, rparams)
        # The params are float32: the reference stores them in float32 too, so
        # rounding of the params themselves does not pile up over 100 steps of
        # O(1) updates; the update math stays float64.
        rparams = {k: store(rparams[k] + rupdates[k], np.float32) for k in rparams}
        trajectory.add_tree("updates", updates, rupdates, RTOL)
        trajectory.add_tree("params", params, rparams, RTOL)
        trajectory.add_state(state, rstate, entry.state_rtol)
        if entry.resync:
            rstate = state_to_reference(state, rstate)
    trajectory.check()


@pytest.mark.parametrize("entry", ALL)
def test_state_structure_and_dtypes_unchanged_by_update(entry, jit):
    tx, step = stepper(entry, jit)
    params = make_params()
    state0 = tx.init(params)
    state = state0
    for g in make_grads(2):
        params, state, _ = step(params, state, g)
        assert jax.tree.structure(state) == jax.tree.structure(state0)
        assert avals(state) == avals(state0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("entry", ALL)
def test_updates_keep_gradient_dtype(entry, jit, dtype):
    dtype = jnp.dtype(dtype)
    tx, step = stepper(entry, jit)
    params = make_params(dtype)
    state = tx.init(params)
    state_avals = avals(state)
    for g in make_grads(3, dtype):
        params, state, updates = step(params, state, g)
        assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
        assert all(p.dtype == dtype for p in jax.tree.leaves(params))
        assert avals(state) == state_avals
        chex.assert_tree_all_finite(updates)
        chex.assert_tree_all_finite(state)


@pytest.mark.parametrize("entry", ALL)
def test_second_jitted_step_does_not_retrace(entry):
    tx, step, traces = jitted(entry.id)
    params = make_params()
    state = tx.init(params)
    g1, g2, g3 = make_grads(3)
    params, state, _ = step(params, state, g1)  # may trace (or reuse a trace)
    n = len(traces)
    params, state, _ = step(params, state, g2)
    step(params, state, g3)
    assert len(traces) == n


@pytest.mark.parametrize("entry", ALL)
def test_unknown_extra_arguments_are_ignored(entry, jit):
    tx = entry.make()
    step = step_fn(tx)
    params = make_params()
    state = tx.init(params)
    (g,) = make_grads(1)
    extra = {"foo": 1, "value": jnp.float32(2.0), "grad": g}
    with_extra = lambda p, s, g: step(p, s, g, **extra)
    if _is_jit(jit):
        # Under tracing, ignored arguments must leave the traced program unchanged
        # (a jaxpr comparison checks that without paying for two compilations).
        assert str(jax.make_jaxpr(with_extra)(params, state, g)) == str(
            jax.make_jaxpr(step)(params, state, g)
        )
    else:
        chex.assert_trees_all_equal(
            with_extra(params, state, g), step(params, state, g)
        )


@pytest.mark.parametrize("entry", ALL)
def test_init_works_under_eval_shape(entry):
    tx = entry.make()
    params = make_params()
    concrete = tx.init(params)
    abstract = jax.eval_shape(tx.init, params)
    from_structs = jax.eval_shape(
        tx.init, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    )
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
    for tree in (abstract, from_structs):
        assert jax.tree.map(lambda x: (x.shape, x.dtype), tree) == jax.tree.map(
            lambda x: (x.shape, x.dtype), concrete
        )


@pytest.mark.parametrize("entry", ALL)
def test_chex_tree_assertions_accept_states_and_updates(entry, jit):
    tx, step = stepper(entry, jit)
    params = make_params()
    state0 = tx.init(params)
    params, state, updates = step(params, state0, make_grads(1)[0])
    copy = jax.tree.map(jnp.array, state)
    for tree, like in ((state, state0), (updates, params)):
        chex.assert_tree_all_finite(tree)
        chex.assert_trees_all_equal_shapes_and_dtypes(tree, like)
        chex.assert_trees_all_equal_structs(tree, like)
        chex.assert_trees_all_close(tree, jax.tree.map(jnp.array, tree))
    chex.assert_trees_all_equal(state, copy)
    chex.assert_tree_shape_prefix(updates["w"], (4,))
