# SPDX-License-Identifier: Apache-2.0
"""float32 master weights for bfloat16 / float16 params: `master_weights`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support

_FN = "master_weights"


class MasterWeightsState(NamedTuple):
    """State of `master_weights`.

    Attributes:
        master: Params-shaped tree: a copy in the master dtype of each param leaf
            narrower than it, and `None` for the others (they pass through).
        inner_state: The state of the wrapped transformation, built from the master
            copy, so it is float32 by default too.
    """

    master: Any
    inner_state: Any


def _needs_master(x: Any, dtype: Any) -> bool:
    x_dtype = jnp.result_type(x)
    return jnp.issubdtype(x_dtype, jnp.floating) and x_dtype.itemsize < dtype.itemsize


def master_weights(
    inner: GradientTransformation, dtype: Any = jnp.float32
) -> GradientTransformation:
    """Keeps a float32 copy of bfloat16 / float16 params so small updates add up.

    `inner` sees the master copy as its params (and the gradients cast to `dtype`);
    its update is added to the master copy, and the emitted update is the master
    copy rounded to the param's dtype minus the param, so that `apply_updates`
    lands each low-precision param exactly on `round(master)`. Updates smaller than
    half an ulp of a bf16 param would vanish from the param itself; here they add up
    in the master copy until they move the param. Leaves already at least as wide as
    `dtype` pass through untouched. If the params were changed outside the optimizer
    (`round(master) != params`), the master copy restarts from them.

    Update rule (per low-precision leaf p, with master copy m):
        m = p if round(m) != p;  u, inner = inner(g in dtype, params=m)
        m = m + u;  emitted = round(m) - p, in dtype (not the gradient's dtype)

    Args:
        inner: The transformation to run on the master copy.
        dtype: The floating dtype of the master copy.

    Returns:
        A transformation with `MasterWeightsState`; its `update` needs `params`.
        Updates of the low-precision leaves come back in `dtype`: a bfloat16 update
        cannot always hold the exact difference of two bfloat16 values (a param
        crossing zero), so `apply_updates` could otherwise miss `round(m)`.

    Raises:
        TypeError: If `dtype` is not floating.
        MissingParamsError: If `update` is called without `params`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.master_weights(gradtx.sgd(1.0))
        >>> p = jnp.ones(1, jnp.bfloat16)
        >>> state = tx.init(p)
        >>> for _ in range(100):  # 100 steps of 2**-10, a quarter of an ulp each
        ...     u, state = tx.update(jnp.full(1, 2.0**-10, jnp.bfloat16), state, p)
        ...     p = gradtx.apply_updates(p, u)
        >>> p  # without the wrapper it would still be 1
        Array([0.902344], dtype=bfloat16)
    """
    dtype = jnp.dtype(_validate.check_dtype(_FN, "dtype", dtype))
    tx = with_extra_args_support(inner)

    def init(params):
        master = _tree.map_leaves(
            lambda p: p.astype(dtype) if _needs_master(p, dtype) else None, params
        )
        return MasterWeightsState(master, tx.init(_merge(params, master)))

    def update(updates, state, params=None, **extra_args):
        _tree.require_params(_FN, params)
        _tree.check_structure(_FN, params, updates, "params")
        treedef = jax.tree.structure(params, is_leaf=_tree.is_none)
        masters = treedef.flatten_up_to(state.master)
        ps = treedef.flatten_up_to(params)
        # Restart the copy of any element changed outside the optimizer.
        masters = [
            m if m is None else jnp.where(m.astype(p.dtype) == p, m, p.astype(dtype))
            for m, p in zip(masters, ps, strict=True)
        ]
        master = treedef.unflatten(masters)
        grads = jax.tree.map(
            lambda g, m: g if m is None else g.astype(dtype),
            updates,
            master,
            is_leaf=_tree.is_none,
        )
        inner_updates, inner_state = tx.update(
            grads, state.inner_state, _merge(params, master), **extra_args
        )
        us = treedef.flatten_up_to(inner_updates)
        new_masters, emitted = [], []
        for m, p, u in zip(masters, ps, us, strict=True):
            if m is None or u is None:
                new_masters.append(m)
                emitted.append(u)
                continue
            new_m = m + u.astype(dtype)
            new_masters.append(new_m)
            emitted.append(new_m.astype(p.dtype).astype(dtype) - p.astype(dtype))
        new_state = MasterWeightsState(treedef.unflatten(new_masters), inner_state)
        return treedef.unflatten(emitted), new_state

    return GradientTransformation(init, update)


def _merge(params: Any, master: Any) -> Any:
    """`params` with each leaf that has a master copy replaced by that copy."""
    return jax.tree.map(
        lambda p, m: p if m is None else m, params, master, is_leaf=_tree.is_none
    )
