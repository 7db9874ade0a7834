# SPDX-License-Identifier: Apache-2.0
"""Change the layout the inner transform works on: `flatten`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._errors import TreeMismatchError
from gradtx.wrappers import _spec


def _concat(tree: Any) -> jax.Array:
    """All leaves raveled into one vector, in their common (promoted) dtype."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((0,), jnp.float32)
    # Mixed bf16/f32 trees need an explicit promotion under strict promotion.
    with jax.numpy_dtype_promotion("standard"):
        dtype = jnp.result_type(*[jnp.asarray(x).dtype for x in leaves])
    return jnp.concatenate([jnp.ravel(x).astype(dtype) for x in leaves])


def _split(flat: jax.Array, like: Any) -> Any:
    """Undoes `_concat`: pieces of `flat` shaped and typed like the leaves of `like`."""
    leaves, treedef = jax.tree.flatten(like)
    sizes = [int(np.prod(jnp.shape(x))) for x in leaves]
    if flat.shape != (sum(sizes),):
        raise TreeMismatchError(
            f"gradtx.flatten: the inner transform returned shape {flat.shape}, "
            f"expected ({sum(sizes)},)"
        )
    offsets = np.cumsum([0, *sizes])
    pieces = [
        flat[int(a) : int(b)].reshape(jnp.shape(x)).astype(jnp.asarray(x).dtype)
        for a, b, x in zip(offsets[:-1], offsets[1:], leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, pieces)


def flatten(inner: GradientTransformation) -> GradientTransformation:
    """Runs `inner` on one vector holding every leaf, then splits the result back.

    Many small leaves then cost one fused update instead of one each, for a copy of
    the params' size. Leaves of different dtypes are joined in their promoted dtype
    and each comes back in its own dtype.

    Args:
        inner: The transformation to run on the flattened vector.

    Returns:
        A transformation whose state is `inner`'s state for one vector.

    Raises:
        TypeError: If `inner` is not a transformation.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.flatten(gradtx.clip_by_block_rms(1.0))
        >>> params = {"a": jnp.array([1.0]), "b": jnp.array([7.0])}
        >>> tx.update(params, tx.init(params))[0]  # one block: rms 5 over the tree
        {'a': Array([0.2], dtype=float32), 'b': Array([1.4], dtype=float32)}
    """
    _spec.check_transform("flatten", "inner", inner)
    tx = with_extra_args_support(inner)

    def init(params):
        return tx.init(_concat(params))

    def update(updates, state, params=None, **extra_args):
        flat_params = None if params is None else _concat(params)
        flat, state = tx.update(_concat(updates), state, flat_params, **extra_args)
        return _split(flat, updates), state

    return GradientTransformation(init, update)
