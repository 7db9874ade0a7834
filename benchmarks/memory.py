# SPDX-License-Identifier: Apache-2.0
"""Extra memory of one donated optimizer step, gradtx and optax side by side.

The step is `update` + `apply_updates`, `jax.jit(step, donate_argnums=(0, 1))`,
lowered from abstract shapes of the float32 GPT-2-small-shaped tree of `_trees.py`
(124M params in 148 leaves; `jax.ShapeDtypeStruct`s and `jax.eval_shape`, so nothing
is allocated) and compiled, for `adamw(1e-3, weight_decay=0.1)` and the canonical
chain (clip + adam + decayed weights + warmup cosine learning rate). Rows: optax on
the tree, gradtx on the tree, gradtx on the flat layout (`gradtx.flat`: one 1-D
buffer per dtype). Also adamw with bfloat16 moments (`mu_dtype` and `nu_dtype` for
gradtx; optax has only `mu_dtype`).

From `compiled.memory_analysis()`: argument, output and alias bytes (outputs written
into donated inputs), and temp bytes (scratch XLA allocates for the duration of the
step). The extra memory a step needs beyond its inputs is temp + output - alias;
printed as bytes and as a fraction of params + state + grads. With --buffers
(default on) the step is also compiled with `--xla_dump_to` and the temp allocation
of XLA's buffer assignment is listed, grouped by the HLO value that lives there
(instruction name without its numeric suffix, and dtype), largest first. The issue
target is 0 extra bytes for gradtx.

Run:
    python benchmarks/memory.py                # GPT-2 small (~15 s, no big allocation)
    python benchmarks/memory.py --quick        # tiny widths, 2 layers (~5 s)
    python benchmarks/memory.py --no-buffers   # memory_analysis only
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import tempfile
from pathlib import Path

import _trees
import jax
import jax.numpy as jnp
import optax

import gradtx

ROWS = ("optax (tree)", "gradtx (tree)", "gradtx (flat)")


def optimizers(lib) -> dict:
    # bf16 moments: both for gradtx, mu only for optax (it has no nu_dtype).
    bf16 = {"mu_dtype": jnp.bfloat16}
    if lib is gradtx:
        bf16["nu_dtype"] = jnp.bfloat16
    return {
        "adamw(1e-3, wd=0.1)": lambda: lib.adamw(1e-3, weight_decay=0.1),
        "adamw, bf16 moments": lambda: lib.adamw(1e-3, weight_decay=0.1, **bf16),
        "clip+adam+wd+cosine chain": lambda: _trees.canonical_chain(lib),
    }


def module_name(name: str, row: str) -> str:
    tag = re.sub(r"\W+", "_", f"{name.split('(')[0].split('+')[0]}_{row}").strip("_")
    return f"memstep_{tag}"


def compile_step(name: str, row: str, shapes: dict):
    """Returns (compiled step, bytes of params + state + grads)."""
    lib = optax if row.startswith("optax") else gradtx
    params = _trees.abstract_tree(shapes)
    if row.endswith("(flat)"):
        params = _trees.abstract_flat(params)
    tx = optimizers(lib)[name]()
    state = jax.eval_shape(tx.init, params)
    step = _trees.make_step(lib, tx)
    step.__name__ = step.__qualname__ = module_name(name, row)  # names the dump
    compiled = (
        jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()
    )
    return compiled, _trees.nbytes((params, state, params))


def temp_values(dump_dir: Path, module: str) -> tuple[int, list]:
    """(temp bytes, [(group, count, value bytes)]) from XLA's buffer assignment dump.

    Temp allocations are those that are neither parameters, outputs, constants nor
    thread-local. Values that share an allocation may overlap (XLA reuses offsets),
    so the per-group value bytes can add up to more than the allocation.
    """
    files = sorted(dump_dir.glob(f"*jit_{module}.*buffer-assignment.txt"))
    if not files:
        return 0, []
    total, groups, in_temp = 0, collections.Counter(), False
    counts = collections.Counter()
    for line in files[-1].read_text().splitlines():
        if line.startswith("allocation "):
            head = line.split(":", 2)[1]
            in_temp = not any(
                k in line
                for k in ("parameter", "output shape", "constant", "thread-local")
            )
            if in_temp:
                total += int(re.search(r"size (\d+)", head).group(1))
        elif in_temp and line.startswith(" value:"):
            m = re.match(r" value: <\d+ (\S+?)(?:\.\d+)? @\S+> \(size=(\d+)", line)
            dtype = line.rsplit(":", 1)[1].strip().split("[")[0]
            key = f"{m.group(1)} {dtype}"
            groups[key] += int(m.group(2))
            counts[key] += 1
    top = [(k, counts[k], b) for k, b in groups.most_common()]
    return total, top


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", "--small", action="store_true", help="tiny widths, 2 layers"
    )
    parser.add_argument("--layers", type=int, help="number of transformer blocks")
    parser.add_argument(
        "--buffers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="list the temp buffers from XLA's buffer assignment (default on)",
    )
    parser.add_argument("--top", type=int, default=4, help="temp groups listed (4)")
    args = parser.parse_args()
    vocab, ctx, width, layers = _trees.GPT2_TINY if args.quick else _trees.GPT2_SMALL
    layers = args.layers or (2 if args.quick else layers)
    shapes = _trees.gpt2_shapes(vocab, ctx, width, layers)
    n_leaves, n_params = _trees.count(shapes)

    tmp = tempfile.TemporaryDirectory(prefix="gradtx_memory_")
    dump_dir = Path(tmp.name)
    if args.buffers:  # read when the CPU client starts: before anything runs
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_dump_to={dump_dir} --xla_dump_hlo_module_re=.*memstep_.*"
        )

    print(_trees.header())
    print(
        f"tree: {n_params / 1e6:.1f}M float32 params in {n_leaves} leaves; "
        "jit donate (0, 1), compiled from ShapeDtypeStructs\n"
        "extra = temp + output - alias; psg = params + state + grads bytes\n"
    )
    head = (
        f"{'optimizer':26} {'row':14} {'psg':>9} {'alias':>9} {'temp':>9}"
        f" {'temp/psg':>9} {'extra':>9} {'extra/psg':>10}"
    )
    print(head + "\n" + "-" * len(head))
    details = []
    for name in optimizers(optax):
        for row in ROWS:
            compiled, psg = compile_step(name, row, shapes)
            m = compiled.memory_analysis()
            temp = m.temp_size_in_bytes
            extra = temp + m.output_size_in_bytes - m.alias_size_in_bytes
            print(
                f"{name:26} {row:14} {fmt_bytes(psg):>9}"
                f" {fmt_bytes(m.alias_size_in_bytes):>9} {fmt_bytes(temp):>9}"
                f" {temp / psg:9.2e} {fmt_bytes(extra):>9} {extra / psg:10.2e}"
            )
            if args.buffers:
                details.append(
                    (name, row, *temp_values(dump_dir, module_name(name, row)))
                )
        print()

    if args.buffers:
        print("temp allocation of each step (XLA buffer assignment), largest values")
        for name, row, total, top in details:
            shown = ", ".join(
                f"{n}x {k} ({fmt_bytes(b)})" for k, n, b in top[: args.top]
            )
            more = (
                f", +{len(top) - args.top} more groups" if len(top) > args.top else ""
            )
            print(f"  {name} / {row}: {fmt_bytes(total)}: {shown or '-'}{more}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
