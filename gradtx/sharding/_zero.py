# SPDX-License-Identifier: Apache-2.0
"""`zero1`: ZeRO stage 1, the optimizer state sharded over a data-parallel axis."""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding

from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._errors import HyperparameterError
from gradtx._tree import shard_alike
from gradtx.sharding import _place


def zero1(
    inner: GradientTransformation, mesh: Mesh, axis_name: str = "data"
) -> GradientTransformation:
    """Shards the state of `inner` over the mesh axis `axis_name` (ZeRO stage 1).

    Data parallelism replicates the params, so every device would hold the whole
    optimizer state; `zero1` keeps 1/N of every large state leaf on each of the N
    devices of `axis_name` instead. Each leaf is split along its first dimension
    whose size is a multiple of N (and not sharded by another axis already); scalars
    and leaves without such a dimension stay replicated. The inner update runs on
    the shards (the partitioner slices the replicated gradients locally), and the
    new updates are gathered back to the gradients' own sharding. The numbers are
    those of `inner`: only where the state lives changes.

    Placement is JAX's own: `jax.device_put` for concrete arrays, and under `jit`
    `jax.sharding.reshard` (Explicit mesh axes) or `with_sharding_constraint` (Auto
    axes). With Explicit axes a leaf keeps its sharding over the other mesh axes
    (ZeRO-1 on top of model parallelism); with Auto axes it is sharded over
    `axis_name` only. Use it inside `jax.set_mesh(mesh)` so that scalars are
    replicated on the mesh too (JAX requires that for Explicit meshes under `jit`).

    Args:
        inner: Any transformation; extra keyword arguments reach it.
        mesh: The device mesh (`jax.make_mesh`).
        axis_name: The data-parallel axis of `mesh` to shard the state over.

    Returns:
        A transformation whose state is `inner`'s state, placed on the mesh.

    Raises:
        HyperparameterError: If `mesh` is not a `jax.sharding.Mesh` or has no
            axis named `axis_name`.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> mesh = jax.make_mesh((1,), ("data",))
        >>> tx = gradtx.zero1(gradtx.adam(1e-3), mesh, "data")
        >>> state = tx.init({"w": jnp.zeros((4, 2))})
        >>> state[0].mu["w"].sharding.spec
        P('data', None)
    """
    if not isinstance(mesh, Mesh):
        raise HyperparameterError(
            f"gradtx.zero1: mesh must be a jax.sharding.Mesh, got {mesh!r}"
        )
    if axis_name not in mesh.axis_names:
        raise HyperparameterError(
            f"gradtx.zero1: axis_name must be an axis of the mesh "
            f"{tuple(mesh.axis_names)}, got {axis_name!r}"
        )
    inner = with_extra_args_support(inner)
    explicit = _place.is_explicit(mesh, axis_name)

    def sharding_of(x: Any) -> NamedSharding:
        return NamedSharding(mesh, _place.zero_spec(x, mesh, axis_name))

    def shard(state: Any) -> Any:
        return jax.tree.map(
            lambda x: (
                _place.place(x, sharding_of(x), explicit) if _place.is_array(x) else x
            ),
            state,
        )

    def init(params):
        leaves = jax.tree.leaves(params)
        if (
            leaves
            and not any(_place.is_tracer(x) for x in leaves)
            and all(isinstance(x, jax.Array) for x in leaves)
        ):
            # Concrete params: create the state directly in its shards (a jitted
            # init with out_shardings), never whole on one device (B20).
            shapes = jax.eval_shape(inner.init, params)
            out = jax.tree.map(sharding_of, shapes)
            return jax.jit(inner.init, out_shardings=out)(params)
        return shard(inner.init(params))

    def update(updates, state, params=None, **extra_args):
        # The inner step runs on the shards: gradients and params are laid out like
        # the state they meet, so every elementwise op sees one sharding.
        new_updates, new_state = inner.update(
            shard(updates), shard(state), shard(params), **extra_args
        )
        return jax.tree.map(gathered, new_updates, updates), shard(new_state)

    def gathered(new: Any, old: Any) -> Any:
        """The new update leaf, laid out like the incoming gradient leaf."""
        if not _place.is_tracer(old):
            if isinstance(old, jax.Array) and isinstance(new, jax.Array):
                return jax.device_put(new, old.sharding)
            return new
        if explicit:
            spec = jax.typeof(old).sharding.spec
            return jax.sharding.reshard(new, NamedSharding(mesh, spec))
        if shard_alike is None:  # JAX 0.11+: sharding propagation places it
            return new
        return shard_alike(old, new)[1]

    return GradientTransformation(init, update)
