# SPDX-License-Identifier: Apache-2.0
"""`host_offload`: optimizer state kept in host memory, streamed in for the update."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._errors import GradtxError
from gradtx.sharding import _place

HOST = jax.memory.Space.Host
DEVICE = jax.memory.Space.Device


class MemoryKindError(GradtxError, RuntimeError):
    """The devices have no host memory space that state can be offloaded to."""


def _offloaded(x: Any) -> bool:
    """Per-parameter leaves (rank >= 1) go to the host; scalars stay on device."""
    return _place.is_array(x) and np.ndim(x) >= 1


def _move(tree: Any, space: Any) -> Any:
    return jax.tree.map(
        lambda x: jax.device_put(x, space) if _offloaded(x) else x, tree
    )


def _check_host_memory() -> None:
    kinds = {m.kind for m in jax.local_devices()[0].addressable_memories()}
    if "pinned_host" not in kinds:
        raise MemoryKindError(
            "gradtx.host_offload: the devices have no 'pinned_host' memory "
            f"(memory kinds: {sorted(kinds)}); this JAX backend cannot offload"
        )


def host_offload(inner: GradientTransformation) -> GradientTransformation:
    """Keeps the state of `inner` in host memory; the update streams it through.

    The JAX counterpart of bitsandbytes' "paged" optimizers: every state leaf of
    rank >= 1 lives in pinned host memory (`jax.memory.Space.Host`, keeping its
    sharding), so the moments of a model take no accelerator memory between steps.
    `update` copies them to device memory, runs `inner` there, and puts the new
    state back on the host; under `jit` XLA schedules those copies. Scalars (step
    counts) stay in device memory. The numbers are exactly `inner`'s.

    Put it outside `zero1` (`host_offload(zero1(tx, mesh))`) to offload the
    sharded state: each device's shard then lives in its own host's memory.

    Args:
        inner: Any transformation; extra keyword arguments reach it.

    Returns:
        A transformation whose state is `inner`'s state, its arrays on the host.

    Raises:
        MemoryKindError: At `init`, if the devices have no `pinned_host` memory.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.host_offload(gradtx.adam(1e-3))
        >>> state = tx.init({"w": jnp.zeros(3)})
        >>> state[0].mu["w"].sharding.memory_kind
        'pinned_host'
    """
    inner = with_extra_args_support(inner)

    def init(params):
        _check_host_memory()
        return _move(inner.init(params), HOST)

    def update(updates, state, params=None, **extra_args):
        new_updates, new_state = inner.update(
            updates, _move(state, DEVICE), params, **extra_args
        )
        return new_updates, _move(new_state, HOST)

    return GradientTransformation(init, update)
