# SPDX-License-Identifier: Apache-2.0
"""Where state leaves live: partition specs, placement and bytes per device.

Everything here is JAX's own machinery: `NamedSharding` and `PartitionSpec` name the
layout; `jax.device_put` places concrete arrays; under tracing
`jax.sharding.reshard` (meshes with Explicit axes) or
`jax.lax.with_sharding_constraint` (Auto axes) tells the SPMD partitioner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


def is_array(x: Any) -> bool:
    """Whether a state leaf is an array (or tracer, or shape struct) to place."""
    return isinstance(x, jax.Array | jax.ShapeDtypeStruct | np.ndarray)


def is_explicit(mesh: Mesh, axis_name: str) -> bool:
    """Whether `axis_name` is an Explicit axis of `mesh` (sharding in types)."""
    return dict(zip(mesh.axis_names, mesh.axis_types, strict=True))[axis_name] == (
        AxisType.Explicit
    )


def current_spec(x: Any, ndim: int) -> list[Any]:
    """The leaf's partition spec as far as its type knows it, one entry per dim.

    Explicit mesh axes are part of a value's type (`jax.typeof`), under tracing too;
    Auto axes are not, so they read as unsharded (None).
    """
    sharding = getattr(x, "sharding", None) if not is_tracer(x) else None
    if sharding is None:
        try:
            sharding = jax.typeof(x).sharding
        except (TypeError, AttributeError):
            sharding = None
    spec = list(getattr(sharding, "spec", None) or ())
    return (spec + [None] * ndim)[:ndim]


def is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def shard_dim(shape: Sequence[int], spec: Sequence[Any], n: int) -> int | None:
    """The first unsharded dim whose size is a positive multiple of `n`, if any."""
    for d, (size, entry) in enumerate(zip(shape, spec, strict=True)):
        if entry is None and size > 0 and size % n == 0:
            return d
    return None


def flat_axes(spec: Sequence[Any]) -> set[str]:
    """Every mesh axis named in a spec."""
    out: set[str] = set()
    for entry in spec:
        if entry is None:
            continue
        out.update(entry if isinstance(entry, tuple) else (entry,))
    return out


def zero_spec(x: Any, mesh: Mesh, axis_name: str) -> PartitionSpec:
    """The spec of a leaf under ZeRO-1: its own, plus `axis_name` on one dim.

    The dim is the first one not sharded already whose size is a multiple of the
    axis size; a leaf without one (a scalar, a small odd-sized vector) stays
    replicated over `axis_name`. The rule depends only on the shape and on the
    leaf's explicit sharding, so `init` and every `update` agree on it.
    """
    shape = tuple(np.shape(x))
    explicit = is_explicit(mesh, axis_name)
    spec = current_spec(x, len(shape)) if explicit else []
    spec = (spec + [None] * len(shape))[: len(shape)]
    if axis_name not in flat_axes(spec):
        d = shard_dim(shape, spec, mesh.shape[axis_name])
        if d is not None:
            spec[d] = axis_name
    if not explicit:
        # The spec exactly as a jitted computation returns it on an Auto mesh
        # (trailing Nones dropped), so the state's sharding, and with it the jit
        # cache key of the next step, does not change after an update.
        while spec and spec[-1] is None:
            spec.pop()
    return PartitionSpec(*spec)


def place(x: Any, sharding: NamedSharding, explicit: bool) -> Any:
    """Puts one leaf at `sharding`: a transfer when concrete, a constraint if traced.

    `explicit` says whether the axes involved are Explicit (then `reshard`, since
    `with_sharding_constraint` only asserts there) or Auto.
    """
    if not is_tracer(x):
        return jax.device_put(x, sharding)
    if explicit:
        return jax.sharding.reshard(x, sharding)
    return jax.lax.with_sharding_constraint(x, sharding)


def bytes_per_device(tree: Any) -> dict[Any, int]:
    """Bytes of the array leaves of `tree` held by each device (shards counted once).

    Args:
        tree: A pytree of `jax.Array`s (a state, params, updates).

    Returns:
        `{device: bytes}` over every device that holds part of some leaf.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> sizes = gradtx.bytes_per_device({"w": jnp.zeros((4, 3), jnp.float32)})
        >>> list(sizes.values())
        [48]
    """
    out: dict[Any, int] = {}
    for leaf in jax.tree.leaves(tree):
        if not isinstance(leaf, jax.Array):
            continue
        for shard in leaf.addressable_shards:
            out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
    return out
