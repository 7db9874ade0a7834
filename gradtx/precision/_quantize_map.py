# SPDX-License-Identifier: Apache-2.0
"""Block-wise dynamic quantization of one array (Dettmers et al., 2022).

A leaf is cut into blocks of `block_size` elements (the last one may be partial);
each block keeps its absolute maximum in float32 and each element the index of the
nearest value of a 256-entry *dynamic* code map, applied to `x / absmax`. The map
spaces its values on a log scale (one decimal exponent per group, with more
fraction values for larger exponents), so both small and large moments keep about
two significant digits. Signed maps cover [-1, 1] and are stored as int8 codes;
unsigned maps cover [0, 1] with twice the resolution and are stored as uint8 codes.

Reference: Dettmers et al., 2022, "8-bit Optimizers via Block-wise Quantization",
https://arxiv.org/abs/2110.02861 (the map is bitsandbytes' `create_dynamic_map`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def _means(n_fraction: int) -> np.ndarray:
    """Midpoints of `n_fraction` equal steps of [0.1, 1]."""
    bounds = np.linspace(0.1, 1.0, n_fraction + 1, dtype=np.float32)
    return (bounds[:-1] + bounds[1:]) / np.float32(2)


@functools.cache
def dynamic_map(
    signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8
) -> np.ndarray:
    """The sorted dynamic code map: `2**total_bits` float32 values in [-1, 1].

    Exponent group `i` (of `max_exponent_bits`) holds `10**(i - max_exponent_bits
    + 1)` times midpoints of [0.1, 1]; an unsigned map spends the sign bit on twice
    as many fraction values. Codes the groups leave unused (fewer exponent bits
    than `total_bits - 1`) get one more group at the last exponent, and any entries
    still missing are zeros. 0 and 1 are always in the map.

    Args:
        signed: Whether the map covers negative values too.
        max_exponent_bits: Number of decimal exponent groups, in [1, total_bits-1].
        total_bits: log2 of the number of codes.

    Returns:
        A sorted float32 NumPy array of `2**total_bits` values.
    """
    if not 1 <= max_exponent_bits <= total_bits - 1:
        raise ValueError(
            f"max_exponent_bits must be in [1, {total_bits - 1}], "
            f"got {max_exponent_bits}"
        )
    non_sign_bits = total_bits - 1
    free = non_sign_bits - max_exponent_bits
    values: list[np.ndarray] = []
    exponent = 0.0
    for i in range(max_exponent_bits):
        n_fraction = 2 ** (i + free) if signed else 2 ** (i + free + 1)
        exponent = 10.0 ** (i - max_exponent_bits + 1)
        group = np.float32(exponent) * _means(n_fraction)
        values += [group, -group] if signed else [group]
    additional = 2**free - 1
    if additional > 0:  # the codes the exponent groups leave unused
        group = np.float32(exponent) * _means(additional)
        values += [group, -group] if signed else [group]
    data = np.concatenate([*values, np.array([0.0, 1.0], np.float32)])
    n_codes = 2**total_bits
    assert len(data) <= n_codes, (len(data), n_codes)
    data = np.concatenate([data, np.zeros(n_codes - len(data), np.float32)])
    return np.sort(data).astype(np.float32)


def _nearest_code(x: jax.Array, table: np.ndarray) -> jax.Array:
    """Index of the nearest entry of the sorted `table` for each element of `x`.

    A binary search unrolled over the midpoints between neighbouring entries: eight
    elementwise steps for 256 codes, which XLA fuses into one pass (a `searchsorted`
    loop would not fuse). A value exactly between two entries takes the lower one.
    """
    mids_np = (table[:-1] + table[1:]) / np.float32(2)
    mids = jnp.asarray(np.concatenate([mids_np, mids_np[-1:]]))  # pad to 2**bits
    # The first step compares with one constant: a gather at a constant index
    # would make XLA constant-fold a leaf-sized gather (seconds of compile time).
    step = len(table) // 2
    idx = jnp.where(jnp.float32(mids_np[step - 1]) < x, jnp.int32(step), jnp.int32(0))
    step //= 2
    while step >= 1:
        take = jnp.take(mids, idx + (step - 1), mode="clip") < x
        idx = jnp.where(take, idx + step, idx)
        step //= 2
    return idx


def _blocks(x: jax.Array, block_size: int) -> jax.Array:
    """`x` flattened, zero-padded and reshaped to `(n_blocks, block_size)`."""
    flat = jnp.ravel(x)
    n_blocks = max(math.ceil(flat.size / block_size), 1)
    pad = n_blocks * block_size - flat.size
    if pad:
        flat = jnp.pad(flat, (0, pad))
    return flat.reshape(n_blocks, block_size)


def _unblock(blocks: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    size = math.prod(shape)
    return jnp.ravel(blocks)[:size].reshape(shape)


def quantize(
    x: jax.Array, block_size: int, signed: bool
) -> tuple[jax.Array, jax.Array]:
    """Block-wise quantizes `x`: returns `(codes, absmax)`.

    `codes` has `x`'s shape (int8 for a signed map, uint8 for an unsigned one);
    `absmax` is float32 with one entry per block. A block of zeros has absmax 0
    and the code of 0, so it dequantizes to exact zeros (never 0/0).
    """
    table = dynamic_map(signed)
    blocks = _blocks(x.astype(jnp.float32), block_size)
    absmax = jnp.max(jnp.abs(blocks), axis=1)
    safe = jnp.where(absmax > 0, absmax, jnp.float32(1))
    idx = _nearest_code(blocks / safe[:, None], table)
    codes = _unblock(idx, x.shape)
    if signed:
        return (codes - 128).astype(jnp.int8), absmax
    return codes.astype(jnp.uint8), absmax


def dequantize(codes: jax.Array, absmax: jax.Array, block_size: int) -> jax.Array:
    """The float32 values that `quantize` encoded as `(codes, absmax)`."""
    signed = codes.dtype == jnp.int8
    table = jnp.asarray(dynamic_map(signed))
    idx = codes.astype(jnp.int32) + (128 if signed else 0)
    values = _blocks(jnp.take(table, idx, mode="clip"), block_size)
    return _unblock(values * absmax[:, None], codes.shape)
