# SPDX-License-Identifier: Apache-2.0
"""8-bit block-quantized optimizer states: `quantize_state` and `QuantizedArray`."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx.precision import _quantize_map

# State fields that are never negative, so they get the unsigned map (twice the
# resolution); every other quantized field gets the signed one.
NON_NEGATIVE_FIELDS = ("nu", "nu_max", "sum_of_squares")


@jax.tree_util.register_pytree_with_keys_class
class QuantizedArray:
    """One block-quantized state leaf: codes in the leaf's shape, absmax per block.

    A pytree with two children, `codes` (int8 for a signed map, uint8 for an
    unsigned one) and `absmax` (float32, one per block of the flattened leaf). The
    block size and the code map are settings of `quantize_state`, not state.
    """

    def __init__(self, codes: Any, absmax: Any) -> None:
        """Wraps the two arrays (no copy, no check: pytree code builds these too)."""
        self.codes = codes
        self.absmax = absmax

    def tree_flatten_with_keys(self) -> tuple[tuple[Any, ...], None]:
        """Children with dict-style keys, so `state_bytes` counts them under the field.

        Returns:
            The keyed children and no auxiliary data.
        """
        key = jax.tree_util.DictKey
        return ((key("codes"), self.codes), (key("absmax"), self.absmax)), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: Any) -> QuantizedArray:
        """Rebuilds from `(codes, absmax)`.

        Returns:
            The array.
        """
        del aux
        return cls(*children)

    def __repr__(self) -> str:
        """Shapes and dtypes, not values."""
        shape, dtype = (
            getattr(self.codes, "shape", "?"),
            getattr(self.codes, "dtype", "?"),
        )
        blocks = np.shape(self.absmax)
        return f"QuantizedArray(codes={dtype}{list(shape)}, blocks={blocks})"


def _is_q(x: Any) -> bool:
    return isinstance(x, QuantizedArray)


def _check_settings(fn: str, bits: Any, block_size: Any, min_size: Any) -> None:
    if isinstance(bits, bool) or bits != 8:
        raise _validate._fail(fn, "bits", bits, "8 (codes are stored in one byte)")
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, (int, np.integer))
        or block_size < 1
        or block_size & (block_size - 1)
    ):
        raise _validate._fail(fn, "block_size", block_size, "a power of 2 >= 1")
    if (
        isinstance(min_size, bool)
        or not isinstance(min_size, (int, np.integer))
        or min_size < 0
    ):
        raise _validate._fail(fn, "min_size", min_size, "an integer >= 0")


def dequantize_state(state: Any, block_size: int = 256) -> Any:
    """`state` with each `QuantizedArray` replaced by its float32 values.

    Args:
        state: A state of (a chain holding) `quantize_state`, or any pytree.
        block_size: The block size the state was quantized with.

    Returns:
        The state as the wrapped transformation would see it.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adam8bit(1e-3, min_size=0)
        >>> state = tx.init({"w": jnp.zeros(300)})
        >>> gradtx.dequantize_state(state)[0].mu["w"].dtype
        dtype('float32')
    """
    _check_settings("dequantize_state", 8, block_size, 0)
    return jax.tree.map(
        lambda x: (
            _quantize_map.dequantize(x.codes, x.absmax, block_size) if _is_q(x) else x
        ),
        state,
        is_leaf=_is_q,
    )


def quantize_state(
    inner: GradientTransformation,
    bits: int = 8,
    block_size: int = 256,
    min_size: int = 4096,
    *,
    unsigned_fields: Collection[str] = NON_NEGATIVE_FIELDS,
) -> GradientTransformation:
    """Stores `inner`'s floating state leaves as 8-bit block-quantized codes.

    Each floating state leaf with at least `min_size` elements becomes a
    `QuantizedArray`: one byte per element (the nearest entry of a dynamic code map
    for `x / absmax`) plus a float32 absmax per block of `block_size` elements.
    Fields in `unsigned_fields` use the unsigned map, the rest the signed one.
    Every update dequantizes to float32, runs `inner` and requantizes, all in one
    jitted function. Smaller leaves, counters and other integers stay as they are.

    Args:
        inner: Any transformation (gradtx or optax).
        bits: Bits per code; only 8 is supported.
        block_size: Elements per absmax block, a power of 2.
        min_size: Leaves with fewer elements are not quantized, an int >= 0.
        unsigned_fields: State field names whose leaves are never negative.

    Returns:
        A transformation whose state is `inner`'s, quantized leaf for leaf.

    Raises:
        HyperparameterError: If a setting is not one of the allowed values.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.quantize_state(gradtx.scale_by_adam(), min_size=0)
        >>> state = tx.init(jnp.zeros(1000))
        >>> state.mu.codes.dtype, state.nu.codes.dtype, state.mu.absmax.shape
        (dtype('int8'), dtype('uint8'), (4,))

    References:
        Dettmers et al., 2022: https://arxiv.org/abs/2110.02861
    """
    _check_settings("quantize_state", bits, block_size, min_size)
    unsigned = frozenset(unsigned_fields)
    tx = with_extra_args_support(inner)

    def quantize_leaf(x: Any, field: Any) -> Any:
        if not (hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)):
            return x
        if np.size(x) < max(min_size, 1):
            return x
        codes, absmax = _quantize_map.quantize(x, block_size, field not in unsigned)
        return QuantizedArray(codes, absmax)

    def visit(node: Any, field: Any) -> Any:
        if _is_q(node):
            return node
        kids = _tree.children(node)
        if not kids:
            return quantize_leaf(node, field)
        named = _tree.is_namedtuple(node)
        return _tree.rebuild(
            node, [visit(c, _tree.entry_name(e) if named else field) for e, c in kids]
        )

    def init(params):
        return visit(tx.init(params), None)

    def update(updates, state, params=None, **extra_args):
        inner_state = dequantize_state(state, block_size)
        updates, new_inner = tx.update(updates, inner_state, params, **extra_args)

        def requantize(old, new):
            if not _is_q(old):
                return new
            signed = old.codes.dtype == jnp.int8
            return QuantizedArray(*_quantize_map.quantize(new, block_size, signed))

        return updates, jax.tree.map(requantize, state, new_inner, is_leaf=_is_q)

    return GradientTransformation(init, update)
