# SPDX-License-Identifier: Apache-2.0
"""Gradient accumulation: 4 micro-batches with `gradtx.MultiSteps` equal one big batch.

An MLP on scikit-learn's digits (bundled, nothing is downloaded) is trained twice from
the same start: with Adam on batches of 128, and with `MultiSteps(adam, 4)` fed the
same batches as 4 micro-batches of 32. MultiSteps averages the 4 micro-batch
gradients, which is the big batch's gradient, so the params agree to float32 rounding
(about 1e-7) after every optimizer step; the script prints the largest difference.

Run:
    python examples/accumulation.py            # a few seconds
    python examples/accumulation.py --fast     # CI smoke (GRADTX_EXAMPLES_FAST=1)
    python examples/accumulation.py --out DIR  # + DIR/accumulation.csv
"""

import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits

import gradtx

BATCH, MICRO = 128, 4


def init(key):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (64, 32)) / 8.0,
        "b1": jnp.zeros(32),
        "w2": jax.random.normal(k2, (32, 10)) / np.sqrt(32.0),
        "b2": jnp.zeros(10),
    }


def loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    logp = jax.nn.log_softmax(h @ params["w2"] + params["b2"])
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def make_step(tx):
    @jax.jit
    def step(params, state, x, y):
        updates, state = tx.update(jax.grad(loss)(params, x, y), state, params)
        return gradtx.apply_updates(params, updates), state

    return step


def max_diff(a, b):
    return max(
        float(jnp.max(jnp.abs(p - q)))
        for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a short CI run")
    parser.add_argument("--out", type=Path, default=None, help="where the CSV goes")
    args = parser.parse_args()
    fast = args.fast or os.environ.get("GRADTX_EXAMPLES_FAST") == "1"
    steps = 5 if fast else 50

    x, y = load_digits(return_X_y=True)
    x, y = jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y)
    big_tx = gradtx.adam(1e-3)
    acc_tx = gradtx.MultiSteps(gradtx.adam(1e-3), every_k_schedule=MICRO)
    big_step, acc_step = make_step(big_tx), make_step(acc_tx)
    big = acc = init(jax.random.key(0))
    big_state, acc_state = big_tx.init(big), acc_tx.init(acc)

    rows = []
    for i in range(steps):
        idx = (np.arange(BATCH) + i * BATCH) % len(y)
        big, big_state = big_step(big, big_state, x[idx], y[idx])
        for xm, ym in zip(
            jnp.split(x[idx], MICRO), jnp.split(y[idx], MICRO), strict=True
        ):
            acc, acc_state = acc_step(acc, acc_state, xm, ym)
        rows.append((i, max_diff(big, acc), float(loss(big, x, y))))
        print(
            f"step {i:>3}: max |params difference| {rows[-1][1]:.2e}, "
            f"full-data loss {rows[-1][2]:.4f}"
        )
    print(
        f"after {steps} steps of {MICRO} micro-batches of {BATCH // MICRO}: "
        f"max |params difference| = {rows[-1][1]:.1e}"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "accumulation.csv"
        path.write_text(
            "step,max_param_diff,loss\n" + "".join(f"{i},{d},{v}\n" for i, d, v in rows)
        )
        print(f"history written to {path}")


if __name__ == "__main__":
    main()
