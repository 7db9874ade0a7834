# SPDX-License-Identifier: Apache-2.0
"""Constraints on the updates: `zero_nans`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._base import GradientTransformation


class ZeroNansState(NamedTuple):
    """State of `zero_nans`: per leaf, whether the last update held a NaN."""

    found_nan: Any


def zero_nans() -> GradientTransformation:
    """Replaces NaN elements of the updates by zeros and records where it did.

    The state holds one bool per leaf, True when that leaf of the last update held a
    NaN; it is never read by the transform itself. Infinities pass through.

    Returns:
        A transformation with `ZeroNansState`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.zero_nans()
        >>> u, state = tx.update(jnp.array([1.0, jnp.nan]), tx.init(jnp.zeros(2)))
        >>> u, state.found_nan
        (Array([1., 0.], dtype=float32), Array(True, dtype=bool))
    """

    def init(params):
        return ZeroNansState(
            found_nan=jax.tree.map(lambda _: jnp.zeros((), jnp.bool_), params)
        )

    def update(updates, state, params=None, **extra_args):
        del state, params, extra_args
        found = jax.tree.map(lambda u: jnp.any(jnp.isnan(u)), updates)
        clean = jax.tree.map(
            lambda u: jnp.where(jnp.isnan(u), jnp.zeros_like(u), u), updates
        )
        return clean, ZeroNansState(found_nan=found)

    return GradientTransformation(init, update)
