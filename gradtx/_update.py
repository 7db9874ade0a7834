# SPDX-License-Identifier: Apache-2.0
"""Functions that make new params (or new target trees) from updates."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics


def apply_updates(params: Any, updates: Any) -> Any:
    """Returns `params + updates`, each leaf kept in its param dtype.

    The sum is computed in the promoted dtype of the param and update leaf and rounded
    to the param dtype once. `None` updates leave their param unchanged.

    Args:
        params: The current params.
        updates: Updates with the structure of `params` (as produced by `update`).

    Returns:
        The new params, leaf for leaf in the dtypes of `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.apply_updates({"w": jnp.ones(2)}, {"w": jnp.full(2, -0.5)})["w"]
        Array([0.5, 0.5], dtype=float32)
    """

    def add(p, u):
        if u is None:
            return p
        p = jnp.asarray(p)
        # The promotion is explicit, so it must not depend on the user's promotion
        # mode: strict mode refuses to promote_types(bf16, f32) at all.
        with jax.numpy_dtype_promotion("standard"):
            dtype = jnp.promote_types(p.dtype, jnp.asarray(u).dtype)
        return (p.astype(dtype) + jnp.asarray(u).astype(dtype)).astype(p.dtype)

    return jax.tree.map(add, params, updates, is_leaf=lambda x: x is None)


def incremental_update(new_tensors: Any, old_tensors: Any, step_size: ArrayLike) -> Any:
    """Polyak averaging: `step_size * new + (1 - step_size) * old`, leaf by leaf.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.incremental_update(jnp.ones(2), jnp.zeros(2), 0.25)
        Array([0.25, 0.25], dtype=float32)
    """
    step = _numerics.hparam(step_size)

    def mix(new, old):
        s = _numerics.like(step, _numerics.up(new))
        return (s * _numerics.up(new) + (1 - s) * _numerics.up(old)).astype(new.dtype)

    return jax.tree.map(mix, new_tensors, old_tensors)


def periodic_update(
    new_tensors: Any, old_tensors: Any, steps: ArrayLike, update_period: ArrayLike
) -> Any:
    """Returns `new_tensors` every `update_period` steps and `old_tensors` otherwise.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.periodic_update(jnp.ones(1), jnp.zeros(1), jnp.asarray(4), 2)
        Array([1.], dtype=float32)
    """
    take_new = jnp.mod(jnp.asarray(steps), update_period) == 0
    return jax.lax.cond(take_new, lambda: new_tensors, lambda: old_tensors)
