# SPDX-License-Identifier: Apache-2.0
"""make_step(fused=True) and microbatching on 8 simulated devices (see test_sharding).

- a fused step whose params are split over a mesh runs the jnp program (the kernel
  would gather them) and keeps their sharding, on Explicit and Auto meshes;
- `microbatching.reshape_batch_axis` on an Explicit mesh keeps the batch sharding on
  the microbatch axis, equals the unsharded reshape, and refuses a microbatch size
  that the shard count does not divide, naming both.
"""

from __future__ import annotations

import _common as c  # first: puts tests/ on sys.path, checks the devices
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx
from gradtx import _kernels, microbatching

assert c.SHAPES  # _common is imported for its device check and sys.path setup

BUILT, WHY = _kernels.load()


@pytest.mark.skipif(not BUILT, reason=f"no native kernel: {WHY}")
@pytest.mark.parametrize("kind", [AxisType.Explicit, AxisType.Auto])
def test_fused_step_on_split_params_is_the_jnp_step(kind):
    tx = gradtx.adamw(1e-2, weight_decay=0.1)
    fused = gradtx.make_step(tx, fused=True, donate=False)
    plain = gradtx.make_step(tx, donate=False)
    mesh = jax.make_mesh((8,), ("x",), axis_types=(kind,))
    put = lambda x: jax.device_put(x, NamedSharding(mesh, P("x")))
    p, g = put(jnp.arange(64.0).reshape(8, 8)), put(jnp.ones((8, 8)))
    s = tx.init(p)
    want, got = plain(p, s, g), fused(p, s, g)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.sharding == b.sharding
    assert _kernels.ADAM_STEP_TARGET not in fused.lower(p, s, g).as_text()
    one = jnp.ones((8, 8))
    assert _kernels.ADAM_STEP_TARGET in fused.lower(one, tx.init(one), one).as_text()


@pytest.mark.parametrize("size", [4, 8, 16])
@pytest.mark.parametrize("axis", [0, 1])
def test_reshape_batch_axis_keeps_the_batch_sharding(size, axis):
    mesh = jax.make_mesh((4,), ("d",), axis_types=(AxisType.Explicit,))
    x = np.arange(2 * 16 * 3, dtype=np.float32).reshape(2, 16, 3)
    x = np.moveaxis(x, 1, axis)
    spec = P(*[("d" if i == axis else None) for i in range(3)])
    with jax.set_mesh(mesh):
        sharded = jax.device_put(x, NamedSharding(mesh, spec))
        got = jax.jit(lambda t: microbatching.reshape_batch_axis(t, size, axis))(
            sharded
        )
    want = microbatching.reshape_batch_axis(jnp.asarray(x), size, axis)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    expected = [None] * 4
    expected[axis + 1] = "d"
    assert tuple(got.sharding.spec) == tuple(expected)


@pytest.mark.parametrize("size", [1, 2, 6])
def test_reshape_batch_axis_refuses_sizes_the_shards_do_not_divide(size):
    mesh = jax.make_mesh((4,), ("d",), axis_types=(AxisType.Explicit,))
    with jax.set_mesh(mesh):
        x = jax.device_put(jnp.ones((48, 3)), NamedSharding(mesh, P("d")))
        with pytest.raises(
            gradtx.HyperparameterError,
            match=rf"split over 4 devices .* multiple of 4, got {size}",
        ):
            microbatching.reshape_batch_axis(x, size)
