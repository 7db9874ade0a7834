# SPDX-License-Identifier: Apache-2.0
"""Complex params as pairs of real ones: `split_real_and_imaginary`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._base import GradientTransformation, with_extra_args_support


class SplitRealAndImaginaryArrays(NamedTuple):
    """The real and imaginary parts of a complex leaf."""

    real: jax.Array
    imaginary: jax.Array


class SplitRealAndImaginaryState(NamedTuple):
    """State of `split_real_and_imaginary`: the inner state on the real pairs."""

    inner_state: Any


def _split(x: Any) -> Any:
    if x is not None and jnp.iscomplexobj(x):
        return SplitRealAndImaginaryArrays(jnp.real(x), jnp.imag(x))
    return x


def _merge(x: Any) -> Any:
    if isinstance(x, SplitRealAndImaginaryArrays):
        return jax.lax.complex(x.real, x.imaginary)
    return x


_is_pair = lambda x: isinstance(x, SplitRealAndImaginaryArrays)


def split_real_and_imaginary(inner: GradientTransformation) -> GradientTransformation:
    """Runs `inner` on the real and imaginary parts of complex leaves separately.

    Each complex leaf becomes a `(real, imaginary)` pair of real leaves, so `inner`
    behaves as on twice as many real params; real leaves pass through as they are.
    JAX's complex gradients are conjugated relative to PyTorch's (optax#196).

    Args:
        inner: The transformation to run on the real pairs.

    Returns:
        A transformation with `SplitRealAndImaginaryState`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.split_real_and_imaginary(gradtx.scale_by_sign())
        >>> p = jnp.zeros(1, jnp.complex64)
        >>> tx.update(jnp.array([2.0 - 3.0j]), tx.init(p), p)[0]
        Array([1.-1.j], dtype=complex64)
    """
    inner = with_extra_args_support(inner)

    def init(params):
        return SplitRealAndImaginaryState(inner.init(jax.tree.map(_split, params)))

    def update(updates, state, params=None, **extra_args):
        split_params = None if params is None else jax.tree.map(_split, params)
        new, inner_state = inner.update(
            jax.tree.map(_split, updates), state.inner_state, split_params, **extra_args
        )
        merged = jax.tree.map(_merge, new, is_leaf=_is_pair)
        merged = jax.tree.map(lambda m, g: m.astype(g.dtype), merged, updates)
        return merged, SplitRealAndImaginaryState(inner_state)

    return GradientTransformation(init, update)
