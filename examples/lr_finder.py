# SPDX-License-Identifier: Apache-2.0
"""The learning-rate range test (Smith 2017) for Adam on a small MLP on digits.

`gradtx.lr_finder` trains a copy of a 64-64-10 MLP on scikit-learn's bundled digits
(no download) while the learning rate grows geometrically from 1e-6 to 10, one
mini-batch per step, and stops once the smoothed loss blows up. The script plots the
raw and smoothed loss against the learning rate (log axis) with the suggested
learning rate marked, and prints the suggestion. The whole sweep is one `lax.scan`
that compiles once.

Run:
    python examples/lr_finder.py              # 200 steps, a few seconds
    python examples/lr_finder.py --fast       # CI smoke (GRADTX_EXAMPLES_FAST=1)
    python examples/lr_finder.py --out DIR    # where the plot goes (./lr_finder_output)
"""

import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from sklearn.datasets import load_digits

import gradtx

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def init_params(sizes=(64, 64, 10), seed=0):
    keys = jax.random.split(jax.random.key(seed), len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) / m**0.5, "b": jnp.zeros(n)}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def cross_entropy(params, batch):
    x, y = batch
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    logits = x @ params[-1]["w"] + params[-1]["b"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))


def stacked_batches(num_steps, batch=64, seed=0):
    """`num_steps` random mini-batches, stacked along a leading axis for `lax.scan`."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    idx = np.random.default_rng(seed).integers(0, len(x), (num_steps, batch))
    return jnp.asarray(x[idx]), jnp.asarray(y[idx].astype(np.int32))


def plot(res, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(res.learning_rates, res.losses, alpha=0.3, label="loss")
    ax.plot(res.learning_rates, res.smoothed_losses, label="smoothed loss")
    ax.axvline(res.suggested_lr, color="k", ls="--", label="suggested lr")
    ax.set(xscale="log", xlabel="learning rate", ylabel="cross-entropy")
    ax.set(title="LR range test: Adam, MLP on digits")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny run for CI smoke")
    parser.add_argument("--out", type=Path, default=Path("lr_finder_output"))
    args = parser.parse_args()
    fast = args.fast or os.environ.get("GRADTX_EXAMPLES_FAST") == "1"
    num_steps = 40 if fast else 200
    res = gradtx.lr_finder(
        cross_entropy,
        init_params(),
        stacked_batches(num_steps),
        gradtx.adam,
        start_lr=1e-6,
        end_lr=10.0,
        num_steps=num_steps,
    )
    stop = "diverged" if res.diverged else "did not diverge"
    print(
        f"{len(res.losses)} of {num_steps} steps ran ({stop}), up to lr "
        f"{res.learning_rates[-1]:.3g}"
    )
    print(f"suggested learning rate: {res.suggested_lr:.3g}")
    args.out.mkdir(parents=True, exist_ok=True)
    plot(res, args.out / "lr_finder.png")
    print(f"plot: {args.out / 'lr_finder.png'}")


if __name__ == "__main__":
    main()
