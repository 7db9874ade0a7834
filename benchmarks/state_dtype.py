# SPDX-License-Identifier: Apache-2.0
"""AdamW step time with float32 versus bfloat16 moments, gradtx and optax, one process.

The step is `adamw(1e-3, weight_decay=0.1)` `update` + `apply_updates`, jitted with
`donate_argnums=(0, 1)`, on the float32 GPT-2-small-shaped tree of `_trees.py` (124M
params in 148 leaves) with fixed random grads. Configurations:

- gradtx f32: default (moments in the params' dtype);
- gradtx bf16: `adamw(..., mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)`;
- optax f32: default;
- optax bf16: `adamw(..., mu_dtype=jnp.bfloat16)` (optax has no `nu_dtype`: nu
  stays float32);
- gradtx-fused f32 / bf16: the gradtx configurations under
  `gradtx.make_step(tx, fused=True)` (the native one-pass CPU kernel), where it
  builds; XLA's byte estimate does not see inside the kernel's custom calls.

All are compiled ahead of time, run once, then timed interleaved (the order rotates
every round) with `block_until_ready`. Printed, per configuration: the median ms per
step, bf16 / f32 within each library, gradtx / optax for the same state dtype, state
bytes per parameter, and the largest param difference from gradtx f32 after the run
(a sanity check of the bf16 rounding). Then, from the optimized HLO of each compiled
step: the number of fusions and of `copy` instructions, how many of the donated
inputs an output aliases (`input_output_alias` in the module header) and their
bytes, the temp bytes (`memory_analysis()`), and XLA's estimate of the bytes the
step reads and writes (`cost_analysis()["bytes accessed"]`, per parameter). The
issue target is gradtx bf16 <= 0.9x gradtx f32.

Run:
    python benchmarks/state_dtype.py               # GPT-2 small, 10 steps (~40 s, 7 GB)
    python benchmarks/state_dtype.py --steps 30    # less noise
    python benchmarks/state_dtype.py --quick       # tiny widths, 2 layers (~10 s)
    python benchmarks/state_dtype.py --hlo hlo/    # also write each optimized HLO
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

import _trees
import jax
import jax.numpy as jnp
import optax

import gradtx

CONFIGS = ("gradtx f32", "gradtx bf16", "optax f32", "optax bf16")
FUSED_OK, FUSED_WHY = gradtx._kernels.load()
if FUSED_OK:  # make_step(tx, fused=True): gradtx's native one-pass CPU kernel
    CONFIGS = (*CONFIGS, "gradtx-fused f32", "gradtx-fused bf16")


def make_tx(config: str):
    """(library, transformation) of one configuration."""
    lib_name, dtype = config.split()
    lib = optax if lib_name == "optax" else gradtx
    kw = {}
    if dtype == "bf16":
        kw["mu_dtype"] = jnp.bfloat16
        if lib is gradtx:
            kw["nu_dtype"] = jnp.bfloat16
    return lib, lib.adamw(1e-3, weight_decay=0.1, **kw)


def hlo_stats(compiled, n_params: int) -> dict:
    """Counts in the optimized HLO of a compiled step (see the module docstring)."""
    text = compiled.as_text()
    header = text.split("\n", 1)[0]
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {
        "text": text,
        "fusions": len(re.findall(r"= \S+ fusion\(", text)),
        "copies": len(re.findall(r"= \S+ copy\(", text)),
        "aliased": header.count("-alias)"),
        "alias_bytes": mem.alias_size_in_bytes,
        "temp_bytes": mem.temp_size_in_bytes,
        "bytes_per_param": cost.get("bytes accessed", float("nan")) / n_params,
    }


def prepare(config: str, shapes: dict, grads, n_params: int) -> dict:
    lib, tx = make_tx(config)
    params = _trees.random_tree(shapes, jax.random.key(0))
    state = tx.init(params)
    state_bytes = _trees.nbytes(state)
    t0 = time.perf_counter()
    if config.startswith("gradtx-fused"):
        jitted = gradtx.make_step(tx, fused=True)
    else:
        jitted = jax.jit(_trees.make_step(lib, tx), donate_argnums=(0, 1))
    compiled = jitted.lower(params, state, grads).compile()
    compile_s = time.perf_counter() - t0
    carry = {"params": params, "state": state}

    def run():
        carry["params"], carry["state"] = jax.block_until_ready(
            compiled(carry["params"], carry["state"], grads)
        )

    run()  # warm up
    return {
        "run": run,
        "carry": carry,
        "compile_s": compile_s,
        "state_bytes": state_bytes,
        "n_donated": len(jax.tree.leaves((params, state))),
        **hlo_stats(compiled, n_params),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="timed steps (10, or 50 if --quick)")
    parser.add_argument(
        "--quick", "--small", action="store_true", help="tiny widths, 2 layers"
    )
    parser.add_argument("--layers", type=int, help="number of transformer blocks")
    parser.add_argument("--hlo", type=Path, help="folder for the optimized HLO text")
    args = parser.parse_args()
    vocab, ctx, width, layers = _trees.GPT2_TINY if args.quick else _trees.GPT2_SMALL
    layers = args.layers or (2 if args.quick else layers)
    steps = args.steps or (50 if args.quick else 10)
    shapes = _trees.gpt2_shapes(vocab, ctx, width, layers)
    n_leaves, n_params = _trees.count(shapes)
    configs = CONFIGS

    print(_trees.header())
    if not FUSED_OK:
        print(f"no gradtx-fused rows: {FUSED_WHY}")
    print(
        f"adamw(1e-3, wd=0.1), tree: {n_params / 1e6:.1f}M float32 params in "
        f"{n_leaves} leaves\nmedian of {steps} interleaved steps after compile + "
        "1 warmup step\n"
    )
    grads = _trees.random_tree(shapes, jax.random.key(1), scale=1e-2)
    runs = {c: prepare(c, shapes, grads, n_params) for c in configs}
    times = _trees.time_interleaved({c: r["run"] for c, r in runs.items()}, steps)
    ms = {c: 1e3 * statistics.median(t) for c, t in times.items()}

    ref = runs["gradtx f32"]["carry"]["params"]
    max_dp = {
        c: _trees.max_abs_diff(r["carry"]["params"], ref) for c, r in runs.items()
    }
    head = (
        f"{'config':22} {'ms/step':>8} {'bf16/f32':>9} {'gradtx/optax':>13}"
        f" {'state B/param':>14} {'compile s':>10} {'max|dp|':>8}"
    )
    print(head + "\n" + "-" * len(head))
    for c in configs:
        lib_name, dtype = c.split()[:2]
        same_lib_f32 = f"{lib_name} f32"
        other = f"optax {dtype}"
        r_dtype = "" if dtype == "f32" else f"{ms[c] / ms[same_lib_f32]:.2f}"
        r_lib = "" if lib_name == "optax" else f"{ms[c] / ms[other]:.2f}"
        print(
            f"{c:22} {ms[c]:8.2f} {r_dtype:>9} {r_lib:>13}"
            f" {runs[c]['state_bytes'] / n_params:14.3f}"
            f" {runs[c]['compile_s']:10.1f} {max_dp[c]:8.1e}"
        )

    print("\noptimized HLO of each step")
    head = (
        f"{'config':22} {'fusions':>8} {'copies':>7} {'aliased/donated':>15}"
        f" {'alias MB':>9} {'temp MB':>8} {'accessed B/param':>17}"
    )
    print(head + "\n" + "-" * len(head))
    for c in configs:
        r = runs[c]
        aliased = f"{r['aliased']}/{r['n_donated']}"
        print(
            f"{c:22} {r['fusions']:8d} {r['copies']:7d} {aliased:>15}"
            f" {r['alias_bytes'] / 1e6:9.1f} {r['temp_bytes'] / 1e6:8.1f}"
            f" {r['bytes_per_param']:17.1f}"
        )
    if args.hlo is not None:
        args.hlo.mkdir(parents=True, exist_ok=True)
        for c in configs:
            (args.hlo / f"adamw_{c.replace(' ', '_')}.hlo.txt").write_text(
                runs[c]["text"]
            )
        print(f"\noptimized HLO written to {args.hlo.resolve()}")


if __name__ == "__main__":
    main()
