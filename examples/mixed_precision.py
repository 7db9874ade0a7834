# SPDX-License-Identifier: Apache-2.0
"""Mixed-precision training: bf16 and f16 params with float32 master weights.

A tanh MLP fits a noisy teacher (a regression) with AdamW, its params stored in a
16-bit dtype, so the forward and backward passes run in that dtype too:

1. float32 params: the baseline.
2. bfloat16 params, plain: each update is rounded into the bf16 params, and the
   ones below half an ulp (2**-9 relative) are lost; training stalls early.
3. bfloat16 params with `gradtx.master_weights`: a float32 copy lives in the
   optimizer state; the params are always that copy rounded, so nothing is lost.
4. bfloat16 params with `gradtx.apply_updates_stochastic`: no copy, but each sum is
   rounded up or down at random, so small updates survive on average.
5. float16 params with `with_loss_scaling(master_weights(adamw))`: dynamic loss
   scaling keeps float16 gradients out of the subnormal range, and the master copy
   keeps the small updates.

Then it runs `examples/fp16_loss_scaling.py`'s demonstration: with a loss weighted
by 1e-5, float16 gradients underflow to exact zeros, and loss scaling recovers them.
Final losses and the bytes the optimizer state takes per param are printed.

Run:
    python examples/mixed_precision.py            # 600 steps, about 20 s on a CPU
    python examples/mixed_precision.py --fast     # CI smoke (GRADTX_EXAMPLES_FAST=1)
    python examples/mixed_precision.py --out DIR  # + DIR/mixed_precision.csv
"""

import argparse
import csv
import os
from pathlib import Path

import fp16_loss_scaling
import jax
import jax.numpy as jnp
import numpy as np

import gradtx

BF16, F16 = jnp.bfloat16, jnp.float16


def make_data(n, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    w1 = rng.standard_normal((d, 32)) / np.sqrt(d)
    w2 = rng.standard_normal((32, 1)) / 4
    y = np.tanh(x @ w1) @ w2 + 0.05 * rng.standard_normal((n, 1))
    return jnp.asarray(x), jnp.asarray(y, jnp.float32)


def init_params(d=16, h=64):
    k = jax.random.split(jax.random.key(1), 3)
    return {
        "w1": jax.random.normal(k[0], (d, h)) / np.sqrt(d),
        "b1": jnp.zeros((1, h)),
        "w2": jax.random.normal(k[1], (h, h)) / np.sqrt(h),
        "b2": jnp.zeros((1, h)),
        "w3": jax.random.normal(k[2], (h, 1)) / np.sqrt(h),
    }


def loss_fn(params, x, y):
    """MSE; the forward pass runs in the params' dtype, the mean in float32."""
    dtype = params["w1"].dtype
    h = jnp.tanh(x.astype(dtype) @ params["w1"] + params["b1"])
    h = jnp.tanh(h @ params["w2"] + params["b2"])
    err = (h @ params["w3"]).astype(jnp.float32) - y
    return jnp.mean(err**2)


def train(name, dtype, tx, x, y, steps, stochastic=False, scaled=False):
    """Trains one configuration; returns (name, final loss, state bytes/param)."""
    params = jax.tree.map(lambda p: p.astype(dtype), init_params())
    state = tx.init(params)

    @jax.jit
    def step(params, state, key):
        def objective(p):
            loss = loss_fn(p, x, y)
            return gradtx.scale_loss(loss, state) if scaled else loss

        grads = jax.grad(objective)(params)
        updates, state = tx.update(grads, state, params)
        if stochastic:
            return gradtx.apply_updates_stochastic(params, updates, key), state
        return gradtx.apply_updates(params, updates), state

    key = jax.random.key(2)
    for _ in range(steps):
        key, sub = jax.random.split(key)
        params, state = step(params, state, sub)
    final = float(loss_fn(jax.tree.map(lambda p: p.astype(jnp.float32), params), x, y))
    per_param = gradtx.state_bytes(tx, params).per_param
    print(f"  {name:44} final loss {final:.5f}   state {per_param:5.2f} B/param")
    return name, final, per_param


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a short CI run")
    parser.add_argument("--out", type=Path, default=None, help="where the CSV goes")
    args = parser.parse_args()
    fast = args.fast or os.environ.get("GRADTX_EXAMPLES_FAST") == "1"
    steps = 100 if fast else 600
    x, y = make_data(1024 if fast else 4096)
    adamw = lambda: gradtx.adamw(1e-3, weight_decay=1e-4)

    print(f"AdamW(1e-3) on a 16-64-64-1 MLP, {steps} full-batch steps")
    rows = [
        train("float32 params", jnp.float32, adamw(), x, y, steps),
        train("bfloat16 params, plain", BF16, adamw(), x, y, steps),
        train(
            "bfloat16 params + master_weights",
            BF16,
            gradtx.master_weights(adamw()),
            x,
            y,
            steps,
        ),
        train(
            "bfloat16 params + apply_updates_stochastic",
            BF16,
            adamw(),
            x,
            y,
            steps,
            stochastic=True,
        ),
        train(
            "float16 params + loss scaling + master",
            F16,
            gradtx.with_loss_scaling(gradtx.master_weights(adamw())),
            x,
            y,
            steps,
            scaled=True,
        ),
    ]

    print("\nfloat16 underflow (examples/fp16_loss_scaling.py):")
    fx, fy = fp16_loss_scaling.make_data()
    fp16_steps = 40 if fast else 300
    for scaled in (False, True):
        _, mse, zeros, scale, skipped = fp16_loss_scaling.train(
            scaled, fp16_steps, fx, fy
        )[-1]
        label = "with loss scaling" if scaled else "without loss scaling"
        print(
            f"  {label:22} after {fp16_steps} steps: mse {mse:.4f}, "
            f"{zeros:.0%} of gradients zero, scale {scale:.3g}, {skipped} skipped"
        )

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "mixed_precision.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["config", "final_loss", "state_bytes_per_param"])
            writer.writerows(rows)
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
