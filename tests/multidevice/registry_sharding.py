# SPDX-License-Identifier: Apache-2.0
"""Every registry entry keeps the sharding of its params (RELIABILITY.md C8, B20).

Run by tests/test_sharding.py in a process with 8 simulated CPU devices. For each
entry and each layout of the params (sharded along each axis, replicated): the
`jax.typeof` and sharding of every state leaf are identical after an eager init, a
jitted init and every (jitted and eager) update; per-parameter leaves shard like
their param, scalars are replicated on the mesh; the updates and the state equal
the single-device run (f32, rtol 1e-6). The default run checks the column layout
of the issue on `SMOKE` (one compile per entry); every other entry, the other
layouts and Auto meshes are marked slow (about 1 s of CPU per entry and layout).
"""

from __future__ import annotations

import _common as c  # first: puts tests/ on sys.path, checks the devices
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry import REGISTRY, step_fn
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx

N_STEPS = 3


def _param_key(path) -> str | None:
    last = path[-1] if path else None
    return (
        getattr(last, "key", None) if isinstance(last, jax.tree_util.DictKey) else None
    )


def _check_placement(state, layout, mesh, explicit: bool) -> None:
    """Per-parameter leaves carry their param's spec; scalars are replicated."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        where = jax.tree_util.keystr(path)
        sharding = leaf.sharding
        assert isinstance(sharding, NamedSharding), f"{where}: {sharding}"
        assert sharding.mesh.devices.size == 8, where
        key = _param_key(path)
        if leaf.ndim == 0:
            assert sharding.is_fully_replicated, f"{where}: {sharding}"
        elif key in c.SHAPES and leaf.shape == c.SHAPES[key]:
            assert c.norm_spec(sharding.spec) == c.norm_spec(layout[key]), (
                f"{where}: {sharding}"
            )
        if explicit:
            assert jax.typeof(leaf).sharding.mesh.axis_names == ("x",), where


def _run(entry, layout_name: str, axis_type: AxisType, single: bool) -> None:
    """Checks one entry on one layout against the replicated (unsharded) run.

    The sharded and the replicated step are one jitted program (one compile per
    entry); with `single`, the replicated run is also compared with a separate
    single-device run.
    """
    mesh = jax.make_mesh((8,), ("x",), axis_types=(axis_type,))
    explicit = axis_type == AxisType.Explicit
    layout = c.LAYOUTS[layout_name]
    params_np, grads_np = c.trees(N_STEPS)
    tx = c.well_posed(entry).make()
    one = step_fn(tx)
    both = jax.jit(lambda a, b: (one(*a), one(*b)))

    with jax.set_mesh(mesh):
        params = c.put(params_np, mesh, layout)
        grads = [c.put(g, mesh, layout) for g in grads_np]
        rep = c.LAYOUTS["replicated"]
        r_params = c.put(params_np, mesh, rep)
        r_grads = [c.put(g, mesh, rep) for g in grads_np]
        state, r_state = tx.init(params), tx.init(r_params)
        want = c.types(state)
        _check_placement(state, layout, mesh, explicit)
        _check_placement(r_state, rep, mesh, explicit)
        assert c.types(jax.jit(tx.init)(params)) == want, "jitted init"
        structs = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
            params,
        )
        from_structs = tx.init(structs)
        assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(from_structs))
        assert c.types(from_structs) == want, "init on ShapeDtypeStructs"
        _, eager_state = tx.update(grads[0], state, params)
        assert c.types(eager_state) == want, "eager update"
        r_updates = []
        for i, (g, rg) in enumerate(zip(grads, r_grads, strict=True)):
            (params, state, updates), (r_params, r_state, ru) = both(
                (params, state, g), (r_params, r_state, rg)
            )
            assert c.types(state) == want, f"jitted update {i}"
            c.assert_close(updates, ru, c.rtol(entry))
            r_updates.append(ru)
        c.assert_close(state, r_state, c.rtol(entry))
    if single:
        expected_updates, expected_state = c.single_device_run(tx, params_np, grads_np)
        c.assert_close(r_updates, expected_updates, c.rtol(entry))
        c.assert_close(r_state, expected_state, c.rtol(entry))


def _ids(entries):
    return [pytest.param(e, id=e.id) for e in entries]


# The default run: one entry per kind of state (moments, bf16 storage, counts and
# schedules, masks, a global-norm reduction, per-leaf flags), one compile each.
SMOKE = [
    "scale_by_adam-mu_bf16",
    "adamw-schedule-mask",
    "sgd-momentum",
    "clip_by_global_norm",
    "zero_nans",
]
REST = [e for e in REGISTRY if e.id not in SMOKE]


@pytest.mark.parametrize("entry", _ids([e for e in REGISTRY if e.id in SMOKE]))
def test_column_sharded_params_keep_their_sharding(entry):
    _run(entry, "cols", AxisType.Explicit, single=False)


@pytest.mark.slow
@pytest.mark.parametrize("entry", _ids(REST))
def test_every_entry_with_column_sharded_params(entry):
    _run(entry, "cols", AxisType.Explicit, single=False)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["rows", "replicated"])
@pytest.mark.parametrize("entry", _ids(REGISTRY))
def test_every_layout_keeps_its_sharding(entry, layout):
    _run(entry, layout, AxisType.Explicit, single=True)


@pytest.mark.slow
@pytest.mark.parametrize("entry", _ids(REGISTRY))
def test_auto_mesh_jitted_init_places_state_like_params(entry):
    _run(entry, "rows", AxisType.Auto, single=True)


def test_non_finite_on_one_shard_is_skipped_on_every_shard():
    # RELIABILITY.md C8/C2: one NaN on the last device's shard; the decision to
    # skip is global, so every shard returns zeros and keeps its state.
    mesh = jax.make_mesh((8,), ("x",))
    layout = c.LAYOUTS["cols"]
    params_np, (g_np,) = c.trees(1)
    g_np["w"][0, 15] = float("nan")  # column 15 lives on device 7
    tx = gradtx.apply_if_finite(gradtx.adam(0.01), max_consecutive_errors=3)
    with jax.set_mesh(mesh):
        params = c.put(params_np, mesh, layout)
        state = tx.init(params)
        updates, new = jax.jit(tx.update)(c.put(g_np, mesh, layout), state, params)
        assert int(new.notfinite_count) == 1
        for u in jax.tree.leaves(updates):
            np_u = jax.device_get(u)
            assert not np_u.any(), np_u
        for a, b in zip(
            jax.tree.leaves(new.inner_state),
            jax.tree.leaves(state.inner_state),
            strict=True,
        ):
            assert a.sharding == b.sharding
            assert (jax.device_get(a) == jax.device_get(b)).all()


@pytest.mark.parametrize("layout", ["rows", "cols"])
def test_soap_right_factor_on_sharded_columns(layout):
    # The right side of SOAP that `c.well_posed` leaves out of the registry runs:
    # a (16, 8) matrix has a full-rank 8 x 8 right factor `GᵀG` (its 16 x 16 left
    # factor is rank-deficient, so it stays in the identity basis). The products
    # `G Q_R`, `GᵀG` and the permutation of `v` contract or index the sharded dim.
    mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Explicit,))
    spec = {"rows": P("x", None), "cols": P(None, "x")}[layout]
    rng = np.random.default_rng(3)
    draw = lambda: rng.standard_normal((16, 8)).astype(np.float32)
    params_np, grads_np = draw(), [draw() for _ in range(5)]
    tx = gradtx.scale_by_soap(precondition_frequency=2, max_precond_dim=8)
    want_u, want_s = [], tx.init(jnp.asarray(params_np))
    for g in grads_np:
        u, want_s = jax.jit(tx.update)(jnp.asarray(g), want_s)
        want_u.append(u)
    with jax.set_mesh(mesh):
        put = lambda x: jax.device_put(jnp.asarray(x), NamedSharding(mesh, spec))
        state = tx.init(put(params_np))
        want_types = c.types(state)
        for i, g in enumerate(grads_np):
            u, state = jax.jit(tx.update)(put(g), state)
            assert c.types(state) == want_types, f"step {i}"
            assert c.norm_spec(u.sharding.spec) == c.norm_spec(spec)
            c.assert_close(u, want_u[i], c.RTOL["scale_by_soap"])
        c.assert_close(state, want_s, c.RTOL["scale_by_soap"])
