# SPDX-License-Identifier: Apache-2.0
"""Sharding (RELIABILITY.md C8, B20), `zero1` and `host_offload`.

The multi-device checks need 8 simulated CPU devices, which XLA fixes when JAX is
imported, so they run in a child process (`tests/multidevice/`, named so that the
normal run never collects them). The tests here run in the normal process, on one
device: the float64 reference and optax parity of the wrappers, their validation,
and `init` on shape structs.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _registry import BY_ID, REGISTRY, make_grads, make_params, step_fn, to_f64
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx

ROOT = pathlib.Path(__file__).resolve().parent.parent
MULTIDEVICE = ROOT / "tests" / "multidevice"
FILES = [
    "tests/multidevice/registry_sharding.py",
    "tests/multidevice/zero1_checks.py",
    "tests/multidevice/step_and_batch_checks.py",
    "tests/multidevice/quantized_checks.py",
]


def _run_multidevice(marker: str) -> None:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=8".strip()
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-m", marker, *FILES]
    cmd += ["-p", "no:cacheprovider", "-W", "error"]
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000
    )
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]


def test_eight_device_checks():
    # About 60 s of CPU: the smoke entries of every check (see the two files).
    _run_multidevice("not slow")


@pytest.mark.slow
def test_eight_device_checks_every_registry_entry():
    # Every entry x every layout, Auto meshes, zero1 around every entry.
    _run_multidevice("slow")


def test_multidevice_files_are_not_collected_by_the_normal_run():
    names = [p.name for p in MULTIDEVICE.iterdir() if p.suffix == ".py"]
    assert names, "no multi-device checks found"
    for name in names:
        assert not name.startswith("test_"), name
        assert not name.endswith("_test.py"), name
        assert name != "conftest.py", "a conftest would be imported by every run"
    # Importing one of them here would fail: they assert 8 devices at import.
    assert "_common" not in sys.modules


# --- one device: the wrappers are transparent, float64 reference and optax ---


def _mesh():
    return jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])


WRAPPERS = {
    "zero1": lambda tx: gradtx.zero1(tx, _mesh(), "data"),
    "host_offload": gradtx.host_offload,
    "both": lambda tx: gradtx.host_offload(gradtx.zero1(tx, _mesh())),
}


@pytest.mark.parametrize("wrap", WRAPPERS)
@pytest.mark.parametrize("entry_id", ["adamw", "clip_by_global_norm"])
def test_wrapped_matches_float64_reference(entry_id, wrap, jit):
    entry = BY_ID[entry_id]
    tx = WRAPPERS[wrap](entry.make())
    update = jit(tx.update)
    ref = entry.reference()
    params = make_params()
    state, rparams = tx.init(params), to_f64(params)
    rstate = ref.init(rparams)
    for g in make_grads(5):
        updates, state = update(g, state, params)
        rupdates, rstate = ref.update(to_f64(g), rstate, rparams)
        params = gradtx.apply_updates(params, updates)
        rparams = {
            k: np.float32(rparams[k] + rupdates[k]).astype(np.float64) for k in rparams
        }
        for k in rupdates:
            scale = max(1.0, float(np.max(np.abs(rupdates[k]))))
            np.testing.assert_allclose(
                updates[k], rupdates[k], rtol=1e-5, atol=1e-5 * scale, err_msg=k
            )


@pytest.mark.parametrize("wrap", WRAPPERS)
def test_wrapped_adam_matches_optax(wrap, standard_promotion):
    # 30 jitted steps, rtol 1e-5 as in test_parity_optax.py.
    tx = WRAPPERS[wrap](gradtx.adam(0.01))
    otx = optax.adam(0.01)
    step, ostep = jax.jit(tx.update), jax.jit(otx.update)
    params = make_params()
    state, ostate = tx.init(params), otx.init(params)
    for g in make_grads(30):
        u, state = step(g, state, params)
        ou, ostate = ostep(g, ostate, params)
        for k in u:
            np.testing.assert_allclose(u[k], ou[k], rtol=1e-5, atol=1e-7, err_msg=k)
    # States as in test_parity_optax.py: atol rtol * max(1, max |leaf|).
    for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(ostate), strict=True):
        scale = max(1.0, float(np.max(np.abs(y))))
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("wrap", WRAPPERS)
def test_wrapped_state_is_inner_state_bitwise(wrap):
    inner = gradtx.adamw(0.01, weight_decay=0.1)
    tx = WRAPPERS[wrap](inner)
    params = make_params()
    state, istate = tx.init(params), inner.init(params)
    step, istep = jax.jit(tx.update), jax.jit(inner.update)
    for g in make_grads(3):
        u, state = step(g, state, params)
        iu, istate = istep(g, istate, params)
        for a, b in zip(
            jax.tree.leaves((u, state)), jax.tree.leaves((iu, istate)), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(state) == jax.tree.structure(istate)


def test_host_offload_places_per_parameter_state_in_host_memory():
    tx = gradtx.host_offload(gradtx.adam(0.01))
    params = make_params()
    for state in (tx.init(params), jax.jit(tx.init)(params)):
        state = jax.jit(tx.update)(make_grads(1)[0], state, params)[1]
        for leaf in jax.tree.leaves(state):
            kind = "pinned_host" if leaf.ndim else "device"
            assert leaf.sharding.memory_kind == kind, leaf.shape


@pytest.mark.parametrize("wrap", WRAPPERS)
def test_wrapped_init_works_under_eval_shape_and_on_shape_structs(wrap):
    tx = WRAPPERS[wrap](gradtx.adam(0.01))
    params = make_params()
    concrete = tx.init(params)
    structs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    for abstract in (jax.eval_shape(tx.init, params), jax.eval_shape(tx.init, structs)):
        assert jax.tree.map(lambda x: (x.shape, x.dtype), abstract) == jax.tree.map(
            lambda x: (x.shape, x.dtype), concrete
        )


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


@pytest.mark.parametrize("entry", [pytest.param(e, id=e.id) for e in REGISTRY])
def test_init_on_shape_structs_gives_a_state_the_first_update_completes(entry):
    # C8: `init` on ShapeDtypeStructs returns arrays, never the structs. A state
    # that depends on the param values (the starting point of DoG, COCOB, MADGRAD,
    # Prodigy...) holds placeholders until the first update, which takes them from
    # the params: from then on it is the state of an `init` on the values.
    tx = entry.make()
    params, grads = make_params(), make_grads(2)
    structs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    concrete, abstract = tx.init(params), tx.init(structs)
    for leaf in jax.tree.leaves(abstract):
        assert isinstance(leaf, jax.Array), type(leaf)
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
    for a, b in zip(jax.tree.leaves(abstract), jax.tree.leaves(concrete), strict=True):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
    pairs = zip(jax.tree.leaves(abstract), jax.tree.leaves(concrete), strict=True)
    if all(_same(a, b) for a, b in pairs):
        return
    step = jax.jit(step_fn(tx))
    runs = []
    for state in (concrete, abstract):
        p = params
        for g in grads:
            p, state, _ = step(p, state, g)
        runs.append((p, state))
    chex.assert_trees_all_close(runs[1], runs[0], rtol=1e-6, atol=1e-7)


def test_init_on_shape_structs_creates_state_with_their_sharding():
    # B20: the state is created where the (not yet materialized) params will be.
    mesh = _mesh()
    sharding = NamedSharding(mesh, P("data"))
    structs = {"w": jax.ShapeDtypeStruct((4, 3), jnp.float32, sharding=sharding)}
    state = gradtx.adam(0.01).init(structs)
    assert state[0].mu["w"].sharding == sharding
    assert state[0].nu["w"].sharding == sharding
    np.testing.assert_array_equal(state[0].mu["w"], np.zeros((4, 3), np.float32))


def test_zero1_validates_mesh_and_axis():
    with pytest.raises(
        gradtx.HyperparameterError, match=r"gradtx\.zero1: axis_name.*'model'"
    ):
        gradtx.zero1(gradtx.sgd(0.1), _mesh(), "model")
    with pytest.raises(gradtx.HyperparameterError, match=r"gradtx\.zero1: mesh.*None"):
        gradtx.zero1(gradtx.sgd(0.1), None)


def test_bytes_per_device_counts_each_shard_once():
    tree = {"a": jnp.zeros((4, 3), jnp.float32), "b": jnp.zeros((), jnp.int32)}
    assert gradtx.bytes_per_device(tree) == {jax.devices()[0]: 52}
