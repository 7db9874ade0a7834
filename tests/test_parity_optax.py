# SPDX-License-Identifier: Apache-2.0
"""Drop-in parity with optax: same signatures, same numbers, and mixing both ways.

optax does not run under strict dtype promotion, so every test that calls it uses
the `standard_promotion` fixture.
"""

from __future__ import annotations

import enum
import inspect
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _registry import OPTAX, Trajectory, make_grads, make_params, merged

import gradtx

STEPS = 30
# Both libraries compute in float32 but in different orders; `1 - b2**t` loses up to
# 1.5e-5 (relative) to cancellation at small t, so 1e-5 is as tight as it gets.
RTOL = 1e-5

# Parameters gradtx adds on purpose; each must be keyword-only with a default.
ALLOWED_EXTRA = {
    "nu_dtype": "bf16/f32 second moment independent of mu (optax#1552)",
    "mode": "reduce_on_plateau(mode='max') for accuracy-like metrics",
}
ALLOWED_EXTRA = merged("ALLOWED_EXTRA", ALLOWED_EXTRA)


def optax_function(name):
    """`optax.contrib.<name>`, else `optax.<name>` (not its deprecated aliases)."""
    found = getattr(optax.contrib, name, None)
    if callable(found):
        return found
    with warnings.catch_warnings():
        # optax keeps deprecated top-level aliases of contrib names (dpsgd).
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(optax, name, None)


def _shared_functions():
    names = []
    for name in dir(gradtx):
        obj = getattr(gradtx, name)
        if name.startswith("_") or not inspect.isfunction(obj):
            continue
        if obj.__module__.startswith("gradtx.schedules"):
            continue  # schedules: compared in test_schedules.py
        if callable(optax_function(name)):
            names.append(name)
    return names


def _same_value(a, b, x) -> bool:
    """Whether two default functions agree at `x` (both may return None)."""
    ra, rb = a(x), b(x)
    if ra is None or rb is None:
        return ra is None and rb is None
    return bool(np.allclose(ra, rb))


def _same_default(a, b):
    if a is b or a == b:
        return True
    if isinstance(a, tuple) and isinstance(b, tuple) and hasattr(a, "init"):
        # A default transformation (sophia's hessian_diagonal_fn): the same factory.
        factory = lambda t: t.init.__qualname__.split(".<locals>")[0]
        return factory(a) == factory(b)
    if callable(a) and callable(b):
        # A default function (adafactor's decay_rate_fn, adopt's clip_value_fn)
        # cannot be optax's object: the same name, or the same values at a few steps.
        if a.__name__ == b.__name__:
            return True
        with jax.numpy_dtype_promotion("standard"):
            return all(_same_value(a, b, jnp.asarray(c)) for c in (1, 16, 81))
    if type(a).__name__ == type(b).__name__ and not isinstance(a, (int, float, str)):
        # An enum member (microbatching's AccumulationType.SUM) or a small default
        # object (perturbations' Gumbel()) of gradtx's own class of the same name.
        if isinstance(a, enum.Enum):
            return a.name == b.name and a.value == b.value
        return vars(a) == vars(b)
    return isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)


def _assert_same_signature(ours, theirs, where):
    ours = list(inspect.signature(ours).parameters.values())
    theirs = list(inspect.signature(theirs).parameters.values())
    extra = ours[len(theirs) :]
    for o, t in zip(ours, theirs, strict=False):  # lengths checked below
        assert o.kind == t.kind, f"{where}: {o.name} kind {o.kind} != {t.kind}"
        if o.kind is not inspect.Parameter.VAR_POSITIONAL:  # *args name is private
            assert o.name == t.name, f"{where}: {o.name} != {t.name}"
        assert _same_default(o.default, t.default), f"{where}: default of {o.name}"
    assert len(ours) >= len(theirs), f"{where}: missing {theirs[len(ours) :]}"
    for p in extra:
        assert p.name in ALLOWED_EXTRA, f"{where}: unexpected extra parameter {p.name}"
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{where}: {p.name}"
        assert p.default is not inspect.Parameter.empty, f"{where}: {p.name}"


def test_shared_names_cover_the_registry():
    shared = set(_shared_functions())
    assert {e.name for e in OPTAX_ENTRIES} <= shared
    assert {"apply_updates", "chain", "global_norm", "identity"} <= shared


@pytest.mark.parametrize("name", _shared_functions())
def test_signature_matches_optax(name):
    _assert_same_signature(getattr(gradtx, name), optax_function(name), name)


@pytest.mark.parametrize("name", ["get", "set", "get_all_with_path"])
def test_tree_helper_signature_matches_optax(name):
    _assert_same_signature(getattr(gradtx.tree, name), getattr(optax.tree, name), name)


OPTAX_ENTRIES = [p.values[0] for p in OPTAX]


def _run(tx, apply, grads):
    params = make_params()
    state = tx.init(params)
    out = []
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = apply(params, updates)
        out.append((updates, params, state))
    return out


@pytest.mark.parametrize("entry", OPTAX)
def test_updates_match_optax(entry, standard_promotion):
    # Eager on purpose: 30 eager steps cost less than compiling twice per entry.
    grads = make_grads(STEPS)
    ours = _run(entry.make(), gradtx.apply_updates, grads)
    theirs = _run(
        optax_function(entry.name)(**entry.kwargs), optax.apply_updates, grads
    )
    trajectory = Trajectory()
    for (u, p, s), (ou, op, os) in zip(ours, theirs, strict=True):
        trajectory.add_tree("updates", u, jax.tree.map(np.asarray, ou), RTOL)
        trajectory.add_tree("params", p, jax.tree.map(np.asarray, op), RTOL)
        # Same state leaves in the same order where optax keeps the same layout
        # (optax wraps masked weight decay in a MaskedState, with no leaves).
        ls, los = jax.tree.leaves(s), jax.tree.leaves(os)
        assert [x.dtype for x in ls] == [x.dtype for x in los]
        for i, (x, y) in enumerate(zip(ls, los, strict=True)):
            scale = max(1.0, float(jnp.max(jnp.abs(y.astype(jnp.float32)))))
            trajectory.add(f"state leaf {i}", x, y, RTOL, RTOL * scale)
    trajectory.check()


def test_gradtx_transform_inside_optax_chain(standard_promotion):
    params = make_params()
    theirs = optax.chain(
        gradtx.clip_by_global_norm(1.0), gradtx.scale_by_adam(), optax.scale(-0.1)
    )
    ours = gradtx.chain(
        gradtx.clip_by_global_norm(1.0), gradtx.scale_by_adam(), gradtx.scale(-0.1)
    )
    s_theirs, s_ours = theirs.init(params), ours.init(params)
    for g in make_grads(5):
        u_theirs, s_theirs = theirs.update(g, s_theirs, params, value=1.0)
        u_ours, s_ours = ours.update(g, s_ours, params, value=1.0)
        chex.assert_trees_all_close(u_theirs, u_ours, rtol=RTOL, atol=1e-6)
        params = optax.apply_updates(params, u_theirs)
    assert gradtx.tree.get(s_theirs, "count") == 5


def test_optax_transforms_inside_gradtx_chain_with_extra_args(standard_promotion):
    params = make_params()
    # optax.scale's update takes no **kwargs: gradtx.chain must not pass them on.
    assert "extra_args" not in inspect.signature(optax.scale(0.1).update).parameters
    mixed = gradtx.chain(optax.scale_by_adam(), optax.scale(0.1), gradtx.scale(-1.0))
    pure = gradtx.chain(gradtx.scale_by_adam(), gradtx.scale(0.1), gradtx.scale(-1.0))
    s_mixed, s_pure = mixed.init(params), pure.init(params)
    for g in make_grads(5):
        u_mixed, s_mixed = mixed.update(g, s_mixed, params, foo=1, value=2.0)
        u_pure, s_pure = pure.update(g, s_pure, params, foo=1, value=2.0)
        chex.assert_trees_all_close(u_mixed, u_pure, rtol=RTOL, atol=1e-6)
    assert int(optax.tree.get(s_mixed, "count")) == 5


def test_gradtx_state_is_readable_by_optax_tree_helpers(standard_promotion):
    params = make_params()
    tx = gradtx.adamw(0.1, weight_decay=0.1)
    state = tx.init(params)
    _, state = tx.update(make_grads(1)[0], state, params)
    assert int(optax.tree.get(state, "count")) == 1
    chex.assert_trees_all_equal(
        optax.tree.get(state, "mu"), gradtx.tree.get(state, "mu")
    )


def test_optax_alias_works_under_jit_in_gradtx_apply_updates(standard_promotion):
    params = make_params()
    tx = optax.adam(0.1)
    state = tx.init(params)

    @jax.jit
    def step(params, state, g):
        u, state = tx.update(g, state, params)
        return gradtx.apply_updates(params, u), state

    new, _ = step(params, state, make_grads(1)[0])
    expected = optax.apply_updates(params, tx.update(make_grads(1)[0], state)[0])
    chex.assert_trees_all_close(new, expected, rtol=RTOL, atol=1e-6)
