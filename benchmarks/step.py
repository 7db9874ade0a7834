# SPDX-License-Identifier: Apache-2.0
"""Times one jitted optimizer step of gradtx and optax side by side, in one process.

The step is `update` + `apply_updates`, jitted with `donate_argnums=(0, 1)`, on a
float32 GPT-2-small-shaped param tree (124M params, 148 leaves) with random grads.
The two libraries' steps are interleaved (the order alternates every step). Printed:
the median ms per step of each, their ratio gradtx / optax (below 1: gradtx faster),
the interquartile range of the per-pair ratios (a noise gauge), the compile times,
and the largest param difference between the two libraries after the run.

Run:
    python benchmarks/step.py                  # GPT-2 small, 10 timed steps
    python benchmarks/step.py --steps 30       # more steps, less noise
    python benchmarks/step.py --small          # tiny widths, 2 layers (CI smoke)
    python benchmarks/step.py --small --layers 12 --steps 300  # 148 tiny leaves
    python benchmarks/step.py --hlo hlo/       # also write each optimized HLO module
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import _trees
import jax
import jax.numpy as jnp
import optax

import gradtx

LIBS = {"gradtx": gradtx, "optax": optax}


def optimizers(lib) -> dict:
    """Factories of the transformations to time, built from `lib` alone."""
    return {
        "adamw(1e-3, wd=0.1)": lambda: lib.adamw(1e-3, weight_decay=0.1),
        "clip+adam+wd+cosine chain": lambda: lib.chain(
            lib.clip_by_global_norm(1.0),
            lib.scale_by_adam(),
            lib.add_decayed_weights(1e-4),
            lib.scale_by_learning_rate(
                lib.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 10_000)
            ),
        ),
    }


def jitted_step(lib, tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return lib.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def prepare(lib_name: str, name: str, shapes: dict, grads, hlo_dir) -> dict:
    """Builds, compiles and warms up one library's step; returns its run record."""
    lib = LIBS[lib_name]
    tx = optimizers(lib)[name]()
    params = _trees.random_tree(shapes, jax.random.key(0))
    state = tx.init(params)
    t0 = time.perf_counter()
    compiled = jitted_step(lib, tx).lower(params, state, grads).compile()
    compile_s = time.perf_counter() - t0
    if hlo_dir is not None:
        tag = name.split("(")[0].split("+")[0]
        (hlo_dir / f"{tag}_{lib_name}.hlo.txt").write_text(compiled.as_text())
    params, state = jax.block_until_ready(compiled(params, state, grads))
    return {
        "step": compiled,
        "params": params,
        "state": state,
        "ms": [],
        "compile_s": compile_s,
    }


def bench(name: str, shapes: dict, grads, steps: int, hlo_dir: Path | None) -> dict:
    """Times `steps` interleaved steps of each library, after compile and warmup."""
    runs = {
        lib_name: prepare(lib_name, name, shapes, grads, hlo_dir) for lib_name in LIBS
    }
    for i in range(steps):
        for lib_name in list(runs) if i % 2 == 0 else list(runs)[::-1]:
            r = runs[lib_name]
            t0 = time.perf_counter()
            r["params"], r["state"] = jax.block_until_ready(
                r["step"](r["params"], r["state"], grads)
            )
            r["ms"].append(1e3 * (time.perf_counter() - t0))
    diffs = jax.tree.map(
        lambda a, b: jnp.max(jnp.abs(a - b)),
        runs["gradtx"]["params"],
        runs["optax"]["params"],
    )
    pairs = [
        g / o for g, o in zip(runs["gradtx"]["ms"], runs["optax"]["ms"], strict=True)
    ]
    return {
        "ms": {k: statistics.median(r["ms"]) for k, r in runs.items()},
        "pair_iqr": statistics.quantiles(pairs, n=4)[::2] if steps > 1 else pairs * 2,
        "compile_s": {k: r["compile_s"] for k, r in runs.items()},
        "max_diff": max(float(d) for d in jax.tree.leaves(diffs)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="timed steps (10, or 100 if --small)")
    parser.add_argument("--small", action="store_true", help="tiny widths, 2 layers")
    parser.add_argument("--layers", type=int, help="number of transformer blocks")
    parser.add_argument("--hlo", type=Path, help="folder for the optimized HLO text")
    parser.add_argument(
        "--flat",
        type=float,
        metavar="MILLIONS",
        help="one flat float32 buffer of this many million params (gradtx.flat layout)",
    )
    args = parser.parse_args()
    vocab, ctx, width, layers = _trees.GPT2_TINY if args.small else _trees.GPT2_SMALL
    layers = args.layers or (2 if args.small else layers)
    args.steps = args.steps or (100 if args.small else 10)
    shapes = _trees.gpt2_shapes(vocab, ctx, width, layers)
    if args.flat:  # what an optimizer sees under gradtx.flat: one buffer per dtype
        shapes = {"float32": (int(args.flat * 1e6),)}
    n_leaves, n_params = _trees.count(shapes)
    if args.hlo is not None:
        args.hlo.mkdir(parents=True, exist_ok=True)

    dev = jax.devices()[0]
    versions = f"jax {jax.__version__}, optax {optax.__version__}"
    print(f"{versions}, gradtx {gradtx.__version__}")
    print(f"backend {jax.default_backend()} ({dev.device_kind}), {os.cpu_count()} CPUs")
    print(f"python {platform.python_version()}, {platform.platform()}")
    print(f"tree: {n_params / 1e6:.1f}M float32 params in {n_leaves} leaves")
    print(f"median of {args.steps} interleaved steps after compile + 1 warmup step\n")

    grads = _trees.random_tree(shapes, jax.random.key(1), scale=1e-2)
    header = (
        f"{'optimizer':26} {'gradtx ms':>10} {'optax ms':>10} {'ratio':>6}"
        f" {'pair IQR':>10} {'compile s g/o':>14} {'max|dp|':>8}"
    )
    print(header + "\n" + "-" * len(header))
    for name in optimizers(optax):
        res = bench(name, shapes, grads, args.steps, args.hlo)
        g, o = res["ms"]["gradtx"], res["ms"]["optax"]
        comp = "{gradtx:.1f}/{optax:.1f}".format(**res["compile_s"])
        iqr = "{:.2f}-{:.2f}".format(*res["pair_iqr"])
        print(
            f"{name:26} {g:10.2f} {o:10.2f} {g / o:6.2f} {iqr:>10} {comp:>14}"
            f" {res['max_diff']:8.1e}"
        )
    if args.hlo is not None:
        print(f"\noptimized HLO written to {args.hlo.resolve()}")


if __name__ == "__main__":
    main()
