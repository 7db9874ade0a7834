# SPDX-License-Identifier: Apache-2.0
"""Param trees shaped like real models, for the benchmarks (not part of gradtx)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# (vocab, context, width, layers): GPT-2 small, and a tiny tree with the same leaves.
GPT2_SMALL = (50257, 1024, 768, 12)
GPT2_TINY = (512, 64, 64, 12)


def gpt2_shapes(vocab: int, ctx: int, d: int, layers: int) -> dict:
    """Nested dict of leaf shapes laid out like GPT-2 (148 leaves for 12 layers)."""

    def ln():
        return {"scale": (d,), "bias": (d,)}

    def dense(n_in, n_out):
        return {"kernel": (n_in, n_out), "bias": (n_out,)}

    block = {
        "ln1": ln(),
        "attn": {"qkv": dense(d, 3 * d), "proj": dense(d, d)},
        "ln2": ln(),
        "mlp": {"fc": dense(d, 4 * d), "proj": dense(4 * d, d)},
    }
    return {
        "wte": (vocab, d),
        "wpe": (ctx, d),
        **{f"h{i:02d}": block for i in range(layers)},
        "ln_f": ln(),
    }


def is_shape(x) -> bool:
    return isinstance(x, tuple) and all(isinstance(n, int) for n in x)


def random_tree(shapes: dict, key: jax.Array, scale: float = 1.0) -> dict:
    """Float32 normal leaves with the given shapes, times `scale`."""
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=is_shape)
    keys = jax.random.split(key, len(leaves))
    out = [
        scale * jax.random.normal(k, s, jnp.float32)
        for k, s in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def count(shapes: dict) -> tuple[int, int]:
    """(number of leaves, number of parameters)."""
    leaves = jax.tree.leaves(shapes, is_leaf=is_shape)
    return len(leaves), sum(math.prod(s) for s in leaves)
