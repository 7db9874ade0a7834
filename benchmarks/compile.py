# SPDX-License-Identifier: Apache-2.0
"""Compile time of one optimizer step versus leaf count, gradtx and optax, one process.

The step is the canonical chain `chain(clip_by_global_norm(1.0), scale_by_adam(),
add_decayed_weights(1e-4), scale_by_learning_rate(warmup_cosine_decay_schedule(0.0,
1e-3, 100, 10000)))` `update` + `apply_updates`, `jax.jit(step, donate_argnums=(0, 1))`,
lowered from abstract shapes (`jax.ShapeDtypeStruct`, state from `jax.eval_shape`, so
nothing is allocated) and compiled. Timed: the wall time of
`jax.jit(step).lower(...).compile()`, with a fresh step function and transformation
each time and `jax.clear_caches()` before every measurement, so nothing is cached.

Trees: N float32 leaves of shape 256x256 (N = 10, 100, 1000; 3000 with --full).
Rows: optax on the tree, gradtx on the tree, and gradtx on the flat layout (params,
grads and state are the `gradtx.flat` dict with one 1-D buffer per dtype; emulated
by `_trees.EmulatedLayout` while `gradtx.flat` does not exist yet). Printed: seconds
(min over --repeats) and the ratio gradtx / optax. The issue target is flat <= 0.1x
optax at 1000 leaves.

Run:
    python benchmarks/compile.py               # 10, 100, 1000 leaves (~35 s)
    python benchmarks/compile.py --full        # also 3000 leaves (~2.5 min)
    python benchmarks/compile.py --quick       # 10 and 100 leaves, 64x64 (~10 s)
    python benchmarks/compile.py --leaves 10 300 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import _trees
import jax
import optax

import gradtx

ROWS = ("optax (tree)", "gradtx (tree)", "gradtx (flat)")


def compile_seconds(row: str, shapes: dict) -> tuple[float, float]:
    """(lower seconds, lower + compile seconds) of a fresh step, caches cleared."""
    lib = optax if row.startswith("optax") else gradtx
    params = _trees.abstract_tree(shapes)
    if row.endswith("(flat)"):
        params = _trees.abstract_flat(params)
    tx = _trees.canonical_chain(lib)  # fresh transformation and closures
    state = jax.eval_shape(tx.init, params)
    step = _trees.make_step(lib, tx)  # fresh function: no jit cache hit possible
    jax.clear_caches()
    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--leaves", type=int, nargs="+", help="leaf counts (10 100 1000)"
    )
    parser.add_argument("--full", action="store_true", help="also 3000 leaves")
    parser.add_argument(
        "--quick", "--small", action="store_true", help="10, 100 leaves of 64x64"
    )
    parser.add_argument("--shape", type=int, nargs="+", help="leaf shape (256 256)")
    parser.add_argument("--repeats", type=int, default=1, help="min over N (1)")
    args = parser.parse_args()
    leaves = args.leaves or (
        [10, 100] if args.quick else [10, 100, 1000] + ([3000] if args.full else [])
    )
    shape = tuple(args.shape or ((64, 64) if args.quick else (256, 256)))

    print(_trees.header())
    print(
        f"canonical chain step, float32 leaves of shape {shape}, jit donate (0, 1),\n"
        f"lowered from ShapeDtypeStructs; min of {args.repeats} lower+compile, "
        "jax.clear_caches() before each\n"
    )
    head = (
        f"{'leaves':>6} {'params':>8}  {'row':14} {'lower s':>8} {'total s':>8}"
        f" {'ratio vs optax':>15}"
    )
    print(head + "\n" + "-" * len(head))
    for n in leaves:
        shapes = _trees.uniform_shapes(n, shape)
        _, n_params = _trees.count(shapes)
        best = {}
        for _ in range(args.repeats):
            for row in ROWS:  # interleaved: each repeat times every row once
                lo, tot = compile_seconds(row, shapes)
                old = best.get(row, (float("inf"), float("inf")))
                best[row] = (lo, tot) if tot < old[1] else old
        for row in ROWS:
            lo, tot = best[row]
            ratio = tot / best["optax (tree)"][1]
            ratio_s = "" if row.startswith("optax") else f"{ratio:.3f}"
            print(
                f"{n:6d} {n_params / 1e6:7.1f}M  {row:14} {lo:8.2f} {tot:8.2f}"
                f" {ratio_s:>15}"
            )
        print()


if __name__ == "__main__":
    main()
