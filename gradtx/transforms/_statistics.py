# SPDX-License-Identifier: Apache-2.0
"""Gradient statistics kept in the state, readable by name: `record_global_norm`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx.transforms._clipping import _shrink_factor


class RecordGlobalNormState(NamedTuple):
    """State of `record_global_norm`.

    Attributes:
        global_norm: Global l2 norm of the updates the transform last saw (what
            torch's `clip_grad_norm_` returns); float32, float64 for float64 params.
        clip_factor: `min(1, max_norm / global_norm)`, the factor that
            `clip_by_global_norm(max_norm)` applies to those updates: 1 means the
            clip did not fire. Always 1 when no `max_norm` is given.
    """

    global_norm: jax.Array
    clip_factor: jax.Array


def _norm_dtype(params):
    if params is None:
        return jnp.dtype(jnp.float32)
    return jax.eval_shape(_tree.norm, params).dtype


def record_global_norm(max_norm: ArrayLike | None = None) -> GradientTransformation:
    """Records the global norm of the updates in the state and passes them unchanged.

    Put it before `clip_by_global_norm` to log the pre-clip gradient norm (and,
    given the same `max_norm`, how much the clip shrinks the updates), or at the end
    of a chain to log the norm of the final update. Read the fields with
    `gradtx.tree.get(state, "global_norm")` and `gradtx.tree.get(state,
    "clip_factor")`; with several in one chain use `gradtx.tree.get_all_with_path`.

    Args:
        max_norm: The `max_norm` of the `clip_by_global_norm` to report on, >= 0;
            may be traced. `None` records only the norm.

    Returns:
        A transformation with `RecordGlobalNormState`; the updates are not changed.

    Raises:
        HyperparameterError: If a concrete `max_norm` is negative or not finite.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.chain(
        ...     gradtx.record_global_norm(max_norm=1.0), gradtx.clip_by_global_norm(1.0)
        ... )
        >>> _, state = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
        >>> gradtx.tree.get(state, "global_norm"), gradtx.tree.get(state, "clip_factor")
        (Array(5., dtype=float32), Array(0.2, dtype=float32))
    """
    if max_norm is not None:
        _validate.check_nonnegative("record_global_norm", "max_norm", max_norm)

    def init(params):
        dtype = _norm_dtype(params)
        return RecordGlobalNormState(
            global_norm=jnp.zeros([], dtype), clip_factor=jnp.ones([], dtype)
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        g_norm = _tree.norm(updates)
        if max_norm is None:
            factor = jnp.ones([], g_norm.dtype)
        else:
            limit = _numerics.hparam(max_norm).astype(g_norm.dtype)
            factor = _shrink_factor(g_norm, limit)
        dtype = state.global_norm.dtype
        return updates, RecordGlobalNormState(
            global_norm=g_norm.astype(dtype), clip_factor=factor.astype(dtype)
        )

    return GradientTransformation(init, update)
