# SPDX-License-Identifier: Apache-2.0
"""Times one jitted optimizer step of gradtx and optax side by side, in one process.

The step is `update` + `apply_updates`, jitted with `donate_argnums=(0, 1)`, on a
float32 GPT-2-small-shaped param tree (124M params, 148 leaves) with random grads.
The two libraries' steps are interleaved (the order alternates every step). Printed:
the median ms per step of each, their ratio gradtx / optax (below 1: gradtx faster),
the interquartile range of the per-pair ratios (a noise gauge), the compile times,
and the largest param difference between the two libraries after the run.

A third column times gradtx's `make_step(tx, fused=True)` (one in-place pass per leaf
through gradtx's native CPU kernel, built on first use with the system C++ compiler);
it is left out, with a line saying why, where the kernel cannot be built.

When `import torch` works, `torch.optim.AdamW` equivalents (`_trees.TorchAdamW`:
fused, or foreach where this torch has no fused kernel; with `clip_grad_norm_` and a
`LambdaLR` warmup-cosine learning rate for the chain) run on copies of the same
params and grads, in the same interleaved rounds, with `torch.set_num_threads` set
to XLA:CPU's thread count and `OMP_WAIT_POLICY=PASSIVE` unless set (see
`_trees.import_torch`); a second table prints gradtx / torch. Without torch the
output is the same less that table, with the line "torch not importable: no torch
rows" in the header.

Run:
    python benchmarks/step.py                  # GPT-2 small, 10 timed steps
    python benchmarks/step.py --steps 30       # more steps, less noise
    python benchmarks/step.py --small          # tiny widths, 2 layers (CI smoke)
    python benchmarks/step.py --small --layers 12 --steps 300  # 148 tiny leaves
    python benchmarks/step.py --hlo hlo/       # also write each optimized HLO module
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time
from pathlib import Path

import _trees
import jax
import optax

import gradtx

LIBS = {"gradtx": gradtx, "optax": optax}
FUSED_OK, FUSED_WHY = gradtx._kernels.load()
VARIANTS = {"gradtx": gradtx, "fused": gradtx, "optax": optax} if FUSED_OK else LIBS


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
    """Builds, compiles and warms up one variant's step; returns its run record."""
    lib = VARIANTS[lib_name]
    tx = optimizers(lib)[name]()
    params = _trees.random_tree(shapes, jax.random.key(0))
    state = tx.init(params)
    t0 = time.perf_counter()
    if lib_name == "fused":
        jitted = gradtx.make_step(tx, fused=True)
    else:
        jitted = jitted_step(lib, tx)
    compiled = jitted.lower(params, state, grads).compile()
    compile_s = time.perf_counter() - t0
    if hlo_dir is not None:
        tag = name.split("(")[0].split("+")[0]
        (hlo_dir / f"{tag}_{lib_name}.hlo.txt").write_text(compiled.as_text())
    params, state = jax.block_until_ready(compiled(params, state, grads))
    return {
        "step": compiled,
        "params": params,
        "state": state,
        "compile_s": compile_s,
    }


def bench(
    name: str, shapes: dict, grads, steps: int, hlo_dir: Path | None, torch=None
) -> dict:
    """Times `steps` interleaved steps of each library, after compile and warmup.

    With `torch`, a `_trees.TorchAdamW` equivalent of `name` on the same params and
    grads is warmed up once and timed in the same rounds (the order rotates).
    """
    runs = {
        lib_name: prepare(lib_name, name, shapes, grads, hlo_dir)
        for lib_name in VARIANTS
    }

    def advance(r):
        r["params"], r["state"] = jax.block_until_ready(
            r["step"](r["params"], r["state"], grads)
        )

    calls = {k: functools.partial(advance, r) for k, r in runs.items()}
    if torch is not None:
        params = _trees.random_tree(shapes, jax.random.key(0))
        torch_run = _trees.TorchAdamW(torch, name, params, grads)
        del params
        torch_run.step()  # warm up, like the jitted steps
        calls["torch"] = torch_run.step
    times = _trees.time_interleaved(calls, steps)
    ms = {k: [1e3 * t for t in v] for k, v in times.items()}
    out = {
        "ms": {k: statistics.median(v) for k, v in ms.items()},
        "pair_iqr": pair_iqr(ms["gradtx"], ms["optax"]),
        "compile_s": {k: r["compile_s"] for k, r in runs.items()},
        "max_diff": _trees.max_abs_diff(
            runs["gradtx"]["params"], runs["optax"]["params"]
        ),
    }
    if "fused" in runs:
        out["fused_pair_iqr"] = pair_iqr(ms["fused"], ms["optax"])
        out["fused_max_diff"] = _trees.max_abs_diff(
            runs["fused"]["params"], runs["gradtx"]["params"]
        )
    if torch is not None:
        out["torch"] = {
            "name": torch_run.name,
            "pair_iqr": pair_iqr(ms["gradtx"], ms["torch"]),
            "fused_pair_iqr": (
                pair_iqr(ms["fused"], ms["torch"]) if "fused" in ms else None
            ),
            "max_diff": torch_run.max_diff(runs["gradtx"]["params"]),
        }
    return out


def pair_iqr(a: list, b: list) -> list:
    """Quartiles 1 and 3 of the per-round ratios a / b (the one ratio twice if 1)."""
    pairs = [x / y for x, y in zip(a, b, strict=True)]
    return statistics.quantiles(pairs, n=4)[::2] if len(pairs) > 1 else pairs * 2


def print_torch_rows(results: dict) -> None:
    """The torch table: each torch.optim equivalent against the gradtx step."""
    print(
        "\ntorch.optim on the same tree, params and grads (from_numpy copies, .grad"
        " set,\nno autograd), timed in the same interleaved rounds as the rows above;"
        "\npair IQR of the per-round gradtx/torch ratios; max|dp| = largest param"
        " difference\nfrom gradtx after the run\n"
    )
    head = (
        f"{'optimizer':26} {'torch row':48} {'torch ms':>9} {'gradtx/torch':>12}"
        f" {'pair IQR':>10} {'optax/torch':>11} {'max|dp|':>8}"
    )
    print(head + "\n" + "-" * len(head))
    for name, res in results.items():
        t, ms = res["torch"], res["ms"]
        iqr = "{:.2f}-{:.2f}".format(*t["pair_iqr"])
        print(
            f"{name:26} {t['name']:48} {ms['torch']:9.2f}"
            f" {ms['gradtx'] / ms['torch']:12.2f} {iqr:>10}"
            f" {ms['optax'] / ms['torch']:11.2f} {t['max_diff']:8.1e}"
        )
        if t["fused_pair_iqr"] is not None:
            iqr = "{:.2f}-{:.2f}".format(*t["fused_pair_iqr"])
            print(
                f"{'  same, gradtx fused=True':26} {'':48} {'':9}"
                f" {ms['fused'] / ms['torch']:12.2f} {iqr:>10}"
            )


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
    torch = _trees.import_torch()
    print(_trees.torch_line(torch))
    print(f"tree: {n_params / 1e6:.1f}M float32 params in {n_leaves} leaves")
    print(f"median of {args.steps} interleaved steps after compile + 1 warmup step")
    if FUSED_OK:
        print("gradtx fused=True: native CPU kernel built\n")
    else:
        print(f"no gradtx fused=True rows: {FUSED_WHY}\n")

    grads = _trees.random_tree(shapes, jax.random.key(1), scale=1e-2)
    header = (
        f"{'optimizer':26} {'gradtx ms':>10} {'optax ms':>10} {'ratio':>6}"
        f" {'pair IQR':>10} {'compile s g/o':>14} {'max|dp|':>8}"
    )
    print(header + "\n" + "-" * len(header))
    results = {}
    for name in optimizers(optax):
        res = results[name] = bench(name, shapes, grads, args.steps, args.hlo, torch)
        g, o = res["ms"]["gradtx"], res["ms"]["optax"]
        comp = "{gradtx:.1f}/{optax:.1f}".format(**res["compile_s"])
        iqr = "{:.2f}-{:.2f}".format(*res["pair_iqr"])
        print(
            f"{name:26} {g:10.2f} {o:10.2f} {g / o:6.2f} {iqr:>10} {comp:>14}"
            f" {res['max_diff']:8.1e}"
        )
        if "fused" in res["ms"]:
            f = res["ms"]["fused"]
            iqr = "{:.2f}-{:.2f}".format(*res["fused_pair_iqr"])
            comp = "{fused:.1f}/{optax:.1f}".format(**res["compile_s"])
            print(
                f"{'  same, gradtx fused=True':26} {f:10.2f} {o:10.2f} {f / o:6.2f}"
                f" {iqr:>10} {comp:>14} {res['fused_max_diff']:8.1e}"
            )
    if torch is not None:
        print_torch_rows(results)
    if args.hlo is not None:
        print(f"\noptimized HLO written to {args.hlo.resolve()}")


if __name__ == "__main__":
    main()
