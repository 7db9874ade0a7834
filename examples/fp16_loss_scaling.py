# SPDX-License-Identifier: Apache-2.0
"""Float16 gradients that underflow to zero, and loss scaling bringing them back.

A small MLP runs in float16 (float32 master weights, cast in the forward pass, the
usual mixed-precision recipe) on a regression whose loss carries a weight of 1e-5
(think of an auxiliary term averaged over 4096 samples). Each per-sample cotangent of
the float16 backward pass is then about 1e-9, far below float16's smallest subnormal
(6e-8): plain training gets all-zero gradients and never moves.
`gradtx.with_loss_scaling` multiplies the loss by a large scale before `jax.grad`,
divides the gradients by it, and Adam trains normally. The first scale (2**40) is too
large on purpose: the first steps overflow float16, are skipped, and the scale backs
off on its own.

Run:
    python examples/fp16_loss_scaling.py            # 300 steps, a few seconds
    python examples/fp16_loss_scaling.py --fast     # CI smoke (GRADTX_EXAMPLES_FAST=1)
    python examples/fp16_loss_scaling.py --out DIR  # + DIR/fp16_loss_scaling.csv
"""

import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp

import gradtx

F16 = jnp.float16
WEIGHT = 1e-5  # the loss weight that pushes the cotangents below float16's range


def make_data(n=4096, d=8):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.uniform(kx, (n, d), minval=-1.0, maxval=1.0)
    y = jnp.sin(x @ jax.random.normal(kw, (d, 1)))
    return x.astype(F16), y.astype(F16)


def init_params(d=8, hidden=32):
    """Float32 master weights; the model itself computes in float16."""
    k1, k2 = jax.random.split(jax.random.key(1))
    return {
        "w1": jax.random.normal(k1, (d, hidden)) / d**0.5,
        "b1": jnp.zeros((1, hidden)),
        "w2": jax.random.normal(k2, (hidden, 1)) / hidden**0.5,
    }


def mse(params, x, y):
    """The mean squared error; the forward pass is float16, the mean float32."""
    params = jax.tree.map(lambda p: p.astype(F16), params)
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    err = (h @ params["w2"] - y).astype(jnp.float32)
    return jnp.mean(err**2)


def train(scaled, steps, x, y):
    """Trains with or without loss scaling; returns one history row per step."""
    adam = gradtx.adam(1e-2)
    tx = gradtx.with_loss_scaling(adam, init_scale=2.0**40, growth_interval=50)
    tx = tx if scaled else adam

    def objective(params, state):
        loss = WEIGHT * mse(params, x, y)
        return gradtx.scale_loss(loss, state) if scaled else loss

    @jax.jit
    def step(params, state):
        loss = mse(params, x, y)
        grads = jax.grad(objective)(params, state)
        zeros = sum(jnp.sum(g == 0) for g in jax.tree.leaves(grads))
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state, loss, zeros

    params = init_params()
    state = tx.init(params)
    n = sum(p.size for p in jax.tree.leaves(params))
    rows = []
    for i in range(steps):
        params, state, loss, zeros = step(params, state)
        scale = gradtx.loss_scale(state) if scaled else 1.0
        skipped = state.skipped_total if scaled else 0
        rows.append((i, float(loss), float(zeros) / n, float(scale), int(skipped)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a short CI run")
    parser.add_argument("--out", type=Path, default=None, help="where the CSV goes")
    args = parser.parse_args()
    fast = args.fast or os.environ.get("GRADTX_EXAMPLES_FAST") == "1"
    steps = 30 if fast else 300

    x, y = make_data()
    plain = train(False, steps, x, y)
    scaled = train(True, steps, x, y)

    print(f"float16 MLP, loss weight {WEIGHT:g}, Adam lr 1e-2, {steps} steps")
    print(
        f"{'step':>5} | {'plain: mse':>10} {'zero grads':>10} | "
        f"{'scaled: mse':>11} {'zero grads':>10} {'scale':>9} {'skipped':>7}"
    )
    shown = sorted({0, 1, 2, 3, 5, *range(0, steps, steps // 10), steps - 1})
    for i in shown:
        _, lp, zp, _, _ = plain[i]
        _, ls, zs, s, k = scaled[i]
        print(
            f"{i:>5} | {lp:>10.4f} {zp:>10.0%} | {ls:>11.4f} {zs:>10.0%} "
            f"{s:>9.3g} {k:>7}"
        )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "fp16_loss_scaling.csv"
        lines = ["step,plain_mse,plain_zero_grads,scaled_mse,scaled_zero_grads,scale"]
        lines += [
            f"{p[0]},{p[1]},{p[2]},{s[1]},{s[2]},{s[3]}"
            for p, s in zip(plain, scaled, strict=True)
        ]
        path.write_text("\n".join(lines) + "\n")
        print(f"history written to {path}")


if __name__ == "__main__":
    main()
