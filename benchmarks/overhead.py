# SPDX-License-Identifier: Apache-2.0
"""Per-step overhead on a tiny tree, gradtx and optax side by side, in one process.

The step is `update` + `apply_updates`, `jax.jit(step, donate_argnums=(0, 1))`, on a
tree so small (10 float32 leaves of 100 elements) that the math is free and what is
measured is the fixed cost of a step: Python-side dispatch (flattening the params,
state and grads pytrees, checking the jit cache, handling donated buffers) and the
launch of the compiled program's kernels. Two optimizers: `adamw(1e-3,
weight_decay=0.1)` and the canonical chain (clip + adam + decayed weights + warmup
cosine learning rate). Rows: optax on the tree, gradtx on the tree, gradtx on the flat
layout (`gradtx.flat`: params, grads and state are one 1-D buffer per dtype), and
both again with `gradtx.make_step(tx, fused=True)` where its native CPU kernel builds
(otherwise a header line says why those rows are missing). Each
call is timed alone, with `jax.block_until_ready`; the three rows are interleaved (the
order rotates every round). Printed: the median microseconds per step (blocked and
pipelined, see below) and the ratio to optax. The issue target is <= 0.4x optax.

When `import torch` works, two `torch.optim.AdamW` rows (`_trees.TorchAdamW`: fused,
or foreach where this torch has none; `clip_grad_norm_` and a `LambdaLR` warmup
cosine for the chain) on copies of the same tree join the interleaved rounds, one
with torch's threads set like XLA:CPU's and one with a single thread, and lines
give gradtx / torch; without torch the header says "torch not importable:
no torch rows" and nothing else changes.

Run:
    python benchmarks/overhead.py              # 2000 timed steps per row (~6 s)
    python benchmarks/overhead.py --quick      # 300 steps (~3 s)
    python benchmarks/overhead.py --leaves 148 --size 1000 --steps 5000
"""

from __future__ import annotations

import argparse
import functools
import statistics

import _trees
import jax
import jax.numpy as jnp
import optax

import gradtx

ROWS = ("optax (tree)", "gradtx (tree)", "gradtx (flat)", "floor: sgd (flat)")
FUSED_OK, FUSED_WHY = gradtx._kernels.load()
if FUSED_OK:  # make_step(tx, fused=True): gradtx's native one-pass CPU kernel
    ROWS = (*ROWS, "gradtx fused (tree)", "gradtx fused (flat)")


def optimizers(lib) -> dict:
    return {
        "adamw(1e-3, wd=0.1)": lambda: lib.adamw(1e-3, weight_decay=0.1),
        "clip+adam+wd+cosine chain": lambda: _trees.canonical_chain(lib),
    }


def prepare(row: str, name: str, params, grads, flat_params, flat_grads):
    """Returns (`run(k)`: k steps then block, getter of the current params)."""
    lib = optax if row.startswith("optax") else gradtx
    flat = row.endswith("(flat)")
    p, g = (flat_params, flat_grads) if flat else (params, grads)
    p = jax.tree.map(jnp.copy, p)  # donated below: keep the caller's arrays alive
    tx = gradtx.sgd(1e-3) if row.startswith("floor") else optimizers(lib)[name]()
    carry = {"params": p, "state": tx.init(p)}
    if "fused" in row:
        step = gradtx.make_step(tx, fused=True)
    else:
        step = jax.jit(_trees.make_step(lib, tx), donate_argnums=(0, 1))

    def run(k: int = 1):
        for _ in range(k):
            carry["params"], carry["state"] = step(carry["params"], carry["state"], g)
        jax.block_until_ready((carry["params"], carry["state"]))

    run(3)  # compile + warm up
    return run, lambda: carry["params"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="timed steps per row (2000)")
    parser.add_argument("--quick", "--small", action="store_true", help="300 steps")
    parser.add_argument("--leaves", type=int, default=10, help="number of leaves (10)")
    parser.add_argument("--size", type=int, default=100, help="elements per leaf (100)")
    parser.add_argument(
        "--chunk", type=int, default=50, help="steps per pipelined timing (50)"
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help="jax_cpu_enable_async_dispatch=False (run on the calling thread)",
    )
    args = parser.parse_args()
    steps = args.steps or (300 if args.quick else 2000)
    if args.sync:
        jax.config.update("jax_cpu_enable_async_dispatch", False)

    shapes = _trees.uniform_shapes(args.leaves, (args.size,))
    params = _trees.random_tree(shapes, jax.random.key(0))
    grads = _trees.random_tree(shapes, jax.random.key(1), scale=1e-2)
    layout = _trees.flat_layout(params)
    flat_params, flat_grads = layout.ravel(params), layout.ravel(grads)

    torch = _trees.import_torch()
    torch_threads = torch.get_num_threads() if torch is not None else 0
    print(_trees.header())
    print(_trees.torch_line(torch))
    if not FUSED_OK:
        print(f"no gradtx fused rows: {FUSED_WHY}")
    print(
        f"tree: {args.leaves} float32 leaves of {args.size} elements; flat: "
        f"{len(flat_params)} buffer(s); CPU async dispatch "
        f"{'off' if args.sync else 'on'}\n"
        f"blocked: median of {steps} steps, each timed alone (block_until_ready)\n"
        f"pipelined: median over chunks of {args.chunk} steps dispatched back to "
        "back, then one block\nrows interleaved (order rotates), after compile + "
        "2 warmup steps\nfloor: the same jitted, donated step for sgd (no state)\n"
        "max|dp|: largest param difference from optax (tree) after the run\n"
    )
    if torch is not None:
        print(
            "torch: torch.optim AdamW on from_numpy copies of the params, .grad set "
            "once (no\nautograd); for the chain, with clip_grad_norm_ and a LambdaLR "
            "warmup-cosine lr;\n'Nt': torch.set_num_threads(N) (the fused kernel "
            "wakes its OpenMP threads for\nevery tensor, however small)\n"
        )
    head = (
        f"{'optimizer':26} {'row':20} {'blocked us':>10} {'ratio':>6}"
        f" {'pipelined us':>12} {'ratio':>6} {'max|dp|':>8}"
    )
    print(head + "\n" + "-" * len(head))
    for name in optimizers(optax):
        runs, getters = {}, {}
        for row in ROWS:
            runs[row], getters[row] = prepare(
                row, name, params, grads, flat_params, flat_grads
            )
        torch_rows = {}
        if torch is not None:  # torch's OpenMP threads as set, and one thread
            for threads in (torch_threads, 1):
                torch_run = _trees.TorchAdamW(torch, name, params, grads, threads)
                row = f"torch ({torch_run.kind}, {threads}t)"
                torch_rows[row] = torch_run
                runs[row] = torch_run.step
                torch_run.step(3)  # the same 3 untimed steps as the jitted rows
        rows = (*ROWS, *torch_rows)
        blocked = _trees.time_interleaved(runs, steps)
        chunked = {r: functools.partial(run, args.chunk) for r, run in runs.items()}
        piped = _trees.time_interleaved(chunked, max(1, steps // args.chunk))
        med_b = {r: 1e6 * statistics.median(t) for r, t in blocked.items()}
        med_p = {r: 1e6 * statistics.median(t) / args.chunk for r, t in piped.items()}
        ref = getters[ROWS[0]]()
        for row in rows:
            if row in torch_rows:
                diff = torch_rows[row].max_diff(ref)
            else:
                got = getters[row]()
                if row.endswith("(flat)"):
                    got = layout.unravel(got)
                diff = _trees.max_abs_diff(got, ref)
            is_ref = row == ROWS[0]
            rb = "" if is_ref else f"{med_b[row] / med_b[ROWS[0]]:.2f}"
            rp = "" if is_ref else f"{med_p[row] / med_p[ROWS[0]]:.2f}"
            dp = "" if row.startswith("floor") else f"{diff:8.1e}"
            print(
                f"{name:26} {row:20} {med_b[row]:10.1f} {rb:>6}"
                f" {med_p[row]:12.1f} {rp:>6} {dp:>8}"
            )
        for row in torch_rows:
            b = {r: med_b[r] / med_b[row] for r in ROWS[1:3]}
            p = {r: med_p[r] / med_p[row] for r in ROWS[1:3]}
            print(
                f"{'':26} gradtx/{row}: tree {b[ROWS[1]]:.2f} blocked,"
                f" {p[ROWS[1]]:.2f} pipelined; flat {b[ROWS[2]]:.2f}, {p[ROWS[2]]:.2f}"
            )
        for torch_run in list(torch_rows.values())[:1]:
            print(f"{'':26} torch rows: {torch_run.name}")
        print()


if __name__ == "__main__":
    main()
