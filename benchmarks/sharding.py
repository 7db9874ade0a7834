# SPDX-License-Identifier: Apache-2.0
"""Optimizer-state bytes per device: replicated data parallelism vs `gradtx.zero1`.

For AdamW on a GPT-2-shaped param tree, replicated over meshes of N = 1, 2, 4, 8
simulated CPU devices (XLA_FLAGS is set below, before JAX is imported), prints the
largest number of state bytes any one device holds:

- `replicated`: `adamw.init` on replicated params (every device holds everything);
- `zero1`: `zero1(adamw, mesh, "data").init` on the same params.

With `--small` (the default is the tiny tree, 148 leaves of GPT-2's layout at width
64) the numbers come from `jax.eval_shape` on sharded `ShapeDtypeStruct`s: each
leaf's per-device shard shape times its itemsize, so GPT-2 small (124M params) is
measured without allocating it 8 times. For the tiny tree the concrete arrays are
created and measured with `gradtx.bytes_per_device`, and both ways must agree.
Nothing is timed.

    python benchmarks/sharding.py            # tiny tree, concrete and abstract
    python benchmarks/sharding.py --small    # GPT-2 small, abstract only
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import argparse  # (imports after setting XLA_FLAGS)
import math

import jax
import jax.numpy as jnp
from _trees import GPT2_SMALL, GPT2_TINY, count, gpt2_shapes, is_shape, random_tree
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx


def abstract_max_bytes(state) -> int:
    """Per-device bytes from the shardings of an abstract state (exact, no alloc)."""
    total = 0
    for leaf in jax.tree.leaves(state):
        sharding = leaf.sharding
        shape = sharding.shard_shape(leaf.shape) if sharding is not None else leaf.shape
        total += math.prod(shape) * jnp.dtype(leaf.dtype).itemsize
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="GPT-2 small (124M)")
    args = parser.parse_args()
    dims = GPT2_SMALL if args.small else GPT2_TINY
    shapes = gpt2_shapes(*dims)
    n_leaves, n_params = count(shapes)
    print(
        f"jax {jax.__version__}, gradtx {gradtx.__version__}, {jax.device_count()} "
        f"simulated {jax.default_backend()} devices"
    )
    print(f"AdamW state of a GPT-2 tree {dims}: {n_leaves} leaves, {n_params:,} params")
    make = lambda: gradtx.adamw(1e-3, weight_decay=0.1)
    concrete = None if args.small else random_tree(shapes, jax.random.key(0))
    print(
        f"{'N':>2} {'replicated B/dev':>17} {'zero1 B/dev':>13} {'ratio':>7} {'x N':>6}"
    )
    for n in (1, 2, 4, 8):
        mesh = jax.make_mesh((n,), ("data",), devices=jax.devices()[:n])
        rep = NamedSharding(mesh, P())
        structs = jax.tree.map(
            lambda s, rep=rep: jax.ShapeDtypeStruct(s, jnp.float32, sharding=rep),
            shapes,
            is_leaf=is_shape,
        )
        with jax.set_mesh(mesh):
            plain = abstract_max_bytes(jax.eval_shape(make().init, structs))
            tx = gradtx.zero1(make(), mesh, "data")
            zero = abstract_max_bytes(jax.eval_shape(tx.init, structs))
            if concrete is not None:
                params = jax.device_put(concrete, rep)
                measured = max(gradtx.bytes_per_device(tx.init(params)).values())
                assert measured == zero, (measured, zero)
        print(
            f"{n:>2} {plain:>17,} {zero:>13,} {zero / plain:>7.4f} "
            f"{n * zero / plain:>6.3f}"
        )


if __name__ == "__main__":
    main()
