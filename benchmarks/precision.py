# SPDX-License-Identifier: Apache-2.0
"""AdamW state memory and step time: float32, bfloat16 and 8-bit states, vs optax.

The step is `adamw(1e-3, weight_decay=0.1)` `update` + `apply_updates`, jitted with
`donate_argnums=(0, 1)`, on the float32 GPT-2-small-shaped tree of `_trees.py`
(124M params in 148 leaves) with fixed random grads. Configurations:

- gradtx f32: `adamw(...)` (moments in the params' dtype);
- gradtx bf16: `adamw(..., mu_dtype=bf16, nu_dtype=bf16)`;
- gradtx 8bit: `adamw8bit(...)` (block-wise 8-bit moments, block 256, leaves of
  4,096 elements or more; the rest float32);
- optax f32: `optax.adamw(...)`;
- optax bf16: `optax.adamw(..., mu_dtype=bf16)` (optax has no `nu_dtype` and no
  8-bit states).

State bytes per parameter come from `gradtx.state_bytes` (`jax.eval_shape`, so
nothing is allocated for them). Steps are compiled ahead of time, run once, then
timed interleaved (the order rotates every round) with `block_until_ready`.
Printed: median ms per step, bytes per param, each configuration's ratios to gradtx
f32 (time and memory) and gradtx / optax for the same state dtype.

Run:
    python benchmarks/precision.py               # GPT-2 small, 10 steps
    python benchmarks/precision.py --steps 30    # less noise
    python benchmarks/precision.py --small       # tiny widths, 2 layers (~10 s)
"""

from __future__ import annotations

import argparse
import statistics

import _trees
import jax
import jax.numpy as jnp
import optax

import gradtx

CONFIGS = ("gradtx f32", "gradtx bf16", "gradtx 8bit", "optax f32", "optax bf16")


def make_tx(config: str):
    """(library, transformation) of one configuration."""
    lib_name, kind = config.split()
    kw = {"weight_decay": 0.1}
    if lib_name == "optax":
        if kind == "bf16":
            kw["mu_dtype"] = jnp.bfloat16
        return optax, optax.adamw(1e-3, **kw)
    if kind == "8bit":
        return gradtx, gradtx.adamw8bit(1e-3, **kw)
    if kind == "bf16":
        kw.update(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
    return gradtx, gradtx.adamw(1e-3, **kw)


def prepare(config: str, shapes: dict, grads) -> dict:
    """Compiles one configuration's donated step and runs it once."""
    lib, tx = make_tx(config)
    params = _trees.random_tree(shapes, jax.random.key(0))
    report = gradtx.state_bytes(tx, params)
    state = tx.init(params)
    step = jax.jit(_trees.make_step(lib, tx), donate_argnums=(0, 1))
    compiled = step.lower(params, state, grads).compile()
    carry = {"params": params, "state": state}

    def run():
        carry["params"], carry["state"] = jax.block_until_ready(
            compiled(carry["params"], carry["state"], grads)
        )

    run()  # warm up
    return {"run": run, "carry": carry, "per_param": report.per_param}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="timed steps (10, or 30 if --small)")
    parser.add_argument(
        "--small", "--quick", action="store_true", help="tiny widths, 2 layers"
    )
    args = parser.parse_args()
    vocab, ctx, width, layers = _trees.GPT2_TINY if args.small else _trees.GPT2_SMALL
    layers = 2 if args.small else layers
    steps = args.steps or (30 if args.small else 10)
    shapes = _trees.gpt2_shapes(vocab, ctx, width, layers)
    n_leaves, n_params = _trees.count(shapes)

    print(_trees.header())
    print(
        f"adamw(1e-3, wd=0.1), tree: {n_params / 1e6:.1f}M float32 params in "
        f"{n_leaves} leaves\nmedian of {steps} interleaved steps after compile + "
        "1 warmup step\n"
    )
    grads = _trees.random_tree(shapes, jax.random.key(1), scale=1e-2)
    runs = {}
    for c in CONFIGS:  # one at a time, then free the previous carry's copies
        runs[c] = prepare(c, shapes, grads)
    times = _trees.time_interleaved({c: r["run"] for c, r in runs.items()}, steps)
    ms = {c: 1e3 * statistics.median(t) for c, t in times.items()}
    base = "gradtx f32"
    head = (
        f"{'config':12} {'ms/step':>8} {'B/param':>8} {'time/g-f32':>11}"
        f" {'mem/g-f32':>10} {'gradtx/optax ms':>16} {'gradtx/optax B':>15}"
    )
    print(head + "\n" + "-" * len(head))
    for c in CONFIGS:
        lib_name, kind = c.split()
        other = f"optax {kind}"
        vs_optax = lib_name == "gradtx" and other in runs
        t_ratio = f"{ms[c] / ms[other]:.2f}" if vs_optax else ""
        b_ratio = (
            f"{runs[c]['per_param'] / runs[other]['per_param']:.2f}" if vs_optax else ""
        )
        print(
            f"{c:12} {ms[c]:8.2f} {runs[c]['per_param']:8.3f}"
            f" {ms[c] / ms[base]:11.2f}"
            f" {runs[c]['per_param'] / runs[base]['per_param']:10.3f}"
            f" {t_ratio:>16} {b_ratio:>15}"
        )
    eight = runs["gradtx 8bit"]["per_param"]
    print(
        f"\ngradtx 8bit vs optax bf16 (optax's smallest state): "
        f"{ms['gradtx 8bit'] / ms['optax bf16']:.2f}x the time, "
        f"{eight / runs['optax bf16']['per_param']:.2f}x the bytes"
    )


if __name__ == "__main__":
    main()
