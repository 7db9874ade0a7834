# SPDX-License-Identifier: Apache-2.0
"""8-bit block-quantized states on 8 simulated devices (run by tests/test_sharding.py).

The registry's 8-bit entries keep test leaves below `min_size`, so their quantized
path never met a mesh there; here every leaf is quantized (`min_size=0`):

- `zero1` around each 8-bit optimizer, Explicit and Auto meshes: the numbers of one
  device (the codes are split like the params' first dim, the lookups stay local);
- leaves whose per-device share is a whole number of blocks need no data movement
  beyond `zero1`'s gather of the updates (no collective-permute or all-to-all in the
  compiled step); a leaf whose blocks cross shard boundaries still gives the numbers;
- params split along rows or columns (model parallelism, Explicit mesh): the numbers
  of one device, and codes laid out like the params.
"""

from __future__ import annotations

import re

import _common as c  # first: puts tests/ on sys.path, checks the devices
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx

assert c.SHAPES  # _common is imported for its device check and sys.path setup

EIGHT_BIT = {
    "adamw8bit": lambda: gradtx.adamw8bit(1e-2, weight_decay=0.1, min_size=0),
    "sgd8bit": lambda: gradtx.sgd8bit(1e-2, momentum=0.9, min_size=0),
    "rmsprop8bit": lambda: gradtx.rmsprop8bit(1e-2, min_size=0),
    "lion8bit": lambda: gradtx.lion8bit(1e-3, min_size=0),
}
# Per device: 32 x 512, 64 x 96 and 512 elements, whole blocks of 256.
ALIGNED = {"w1": (256, 512), "w2": (512, 96), "b": (4096,)}
# 5 x 200 = 1000 elements per device: blocks cross the shard boundaries.
STRADDLING = {**ALIGNED, "odd": (40, 200)}


def _trees(shapes, n_grads=3, seed=0):
    rng = np.random.default_rng(seed)

    def draw():
        return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}

    return draw(), [draw() for _ in range(n_grads)]


def _one_device(tx, params, grads):
    p = jax.tree.map(jnp.asarray, params)
    s = tx.init(p)
    step = gradtx.make_step(tx, donate=False)
    for g in grads:
        p, s = step(p, s, jax.tree.map(jnp.asarray, g))
    return p


def _on_mesh(tx, mesh, specs, params, grads):
    step = gradtx.make_step(tx, donate=False)
    with jax.set_mesh(mesh):
        put = lambda t: {
            k: jax.device_put(jnp.asarray(v), NamedSharding(mesh, specs[k]))
            for k, v in t.items()
        }
        p = put(params)
        s = tx.init(p)
        hlo = step.lower(p, s, put(grads[0])).compile().as_text()
        for g in grads:
            p, s = step(p, s, put(g))
    return p, s, hlo


def _assert_same(got, want):
    for k in want:
        np.testing.assert_allclose(
            np.asarray(got[k]), np.asarray(want[k]), rtol=1e-6, atol=1e-6
        )


def _codes(state):
    is_q = lambda x: isinstance(x, gradtx.QuantizedArray)
    return [x.codes for x in jax.tree.leaves(state, is_leaf=is_q) if is_q(x)]


@pytest.mark.parametrize("kind", [AxisType.Explicit, AxisType.Auto])
@pytest.mark.parametrize("name", list(EIGHT_BIT))
def test_zero1_of_8bit_state_gives_one_device_numbers(name, kind):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(kind,))
    params, grads = _trees(STRADDLING)
    want = _one_device(EIGHT_BIT[name](), params, grads)
    specs = dict.fromkeys(params, P())
    tx = gradtx.zero1(EIGHT_BIT[name](), mesh, "data")
    got, state, _ = _on_mesh(tx, mesh, specs, params, grads)
    _assert_same(got, want)
    codes = _codes(state)
    assert codes, "nothing was quantized"
    for x in codes:
        assert x.sharding.spec[0] == "data", x.sharding


@pytest.mark.parametrize("kind", [AxisType.Explicit, AxisType.Auto])
def test_whole_blocks_per_device_need_no_exchange(kind):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(kind,))
    params, grads = _trees(ALIGNED)
    tx = gradtx.zero1(EIGHT_BIT["adamw8bit"](), mesh, "data")
    _, _, hlo = _on_mesh(tx, mesh, dict.fromkeys(params, P()), params, grads)
    assert not re.search(r"collective-permute(-start)?\(", hlo)
    assert not re.search(r"all-to-all(-start)?\(", hlo)
    # What zero1 itself does: gather each leaf's new updates back to replicated.
    assert len(re.findall(r"all-gather(-start)?\(", hlo)) == len(params)


@pytest.mark.parametrize("split", ["rows", "cols"])
def test_8bit_state_of_model_parallel_params(split):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
    params, grads = _trees({"w1": (256, 512), "w2": (64, 96)})
    spec = P("data", None) if split == "rows" else P(None, "data")
    want = _one_device(EIGHT_BIT["adamw8bit"](), params, grads)
    got, state, _ = _on_mesh(
        EIGHT_BIT["adamw8bit"](), mesh, dict.fromkeys(params, spec), params, grads
    )
    _assert_same(got, want)
    assert all(x.sharding.spec == spec for x in got.values())
    for x in _codes(state):
        assert x.sharding.spec == spec, x.sharding
