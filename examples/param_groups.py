# SPDX-License-Identifier: Apache-2.0
"""Fine-tuning with parameter groups: a pretrained backbone slow, a new head fast.

A 64-64 MLP backbone is first "pretrained" on scikit-learn's digits 0-4 (bundled with
scikit-learn, nothing is downloaded). A new 10-class head is then put on top and the
whole model fine-tuned on all ten digits with `gradtx.param_groups`: the backbone at a
learning rate of 3e-4, the head at 3e-3, AdamW weight decay 1e-2 on kernels only
(`gradtx.decay_mask` leaves biases alone). The script prints which group each leaf
joined and the test accuracy before and after fine-tuning.

Run:
    python examples/param_groups.py            # a few seconds
    python examples/param_groups.py --fast     # CI smoke (GRADTX_EXAMPLES_FAST=1)
    python examples/param_groups.py --out DIR  # + DIR/param_groups.csv
"""

import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import gradtx


def load():
    """Digits scaled to [0, 1], split 75/25."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


def dense(key, n_in, n_out):
    """A flax-style Dense layer: a kernel and a bias."""
    return {
        "kernel": jax.random.normal(key, (n_in, n_out)) / np.sqrt(n_in),
        "bias": jnp.zeros(n_out),
    }


def init(key, classes):
    k1, k2, k3 = jax.random.split(key, 3)
    backbone = {"Dense_0": dense(k1, 64, 64), "Dense_1": dense(k2, 64, 64)}
    return {"backbone": backbone, "head": dense(k3, 64, classes)}


def logits(params, x):
    h = x
    for layer in params["backbone"].values():
        h = jax.nn.relu(h @ layer["kernel"] + layer["bias"])
    return h @ params["head"]["kernel"] + params["head"]["bias"]


def loss(params, x, y):
    logp = jax.nn.log_softmax(logits(params, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def accuracy(params, x, y):
    return float(jnp.mean(jnp.argmax(logits(params, x), axis=1) == y))


def train(tx, params, x, y, steps):
    """Full-batch training; returns the params and the loss of every step."""

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state, value

    state = tx.init(params)
    losses = []
    for _ in range(steps):
        params, state, value = step(params, state)
        losses.append(float(value))
    return params, losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a short CI run")
    parser.add_argument("--out", type=Path, default=None, help="where the CSV goes")
    args = parser.parse_args()
    fast = args.fast or os.environ.get("GRADTX_EXAMPLES_FAST") == "1"
    steps = 40 if fast else 300

    x_tr, x_te, y_tr, y_te = load()
    few = y_tr < 5
    pretrained, _ = train(
        gradtx.adam(3e-3), init(jax.random.key(0), 5), x_tr[few], y_tr[few], steps
    )
    # A new 10-class head on the pretrained backbone.
    params = init(jax.random.key(1), 10) | {"backbone": pretrained["backbone"]}

    groups = [gradtx.ParamGroup("head", r"^head/", learning_rate=3e-3)]
    tx = gradtx.param_groups(
        gradtx.adamw,
        groups,
        default="backbone",
        learning_rate=3e-4,
        weight_decay=1e-2,
        mask=gradtx.decay_mask,
    )
    report = gradtx.param_group_report(groups, params, default="backbone")
    print(report)
    print(
        "weight decay on:",
        [
            p
            for p, d in zip(
                report, jax.tree.leaves(gradtx.decay_mask(params)), strict=True
            )
            if d
        ],
    )

    before = accuracy(params, x_te, y_te)
    params, losses = train(tx, params, x_tr, y_tr, steps)
    after = accuracy(params, x_te, y_te)
    print(
        f"fine-tuning, {steps} full-batch steps: loss {losses[0]:.3f} -> "
        f"{losses[-1]:.3f}; test accuracy {before:.1%} -> {after:.1%}"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "param_groups.csv"
        path.write_text(
            "step,loss\n" + "".join(f"{i},{v}\n" for i, v in enumerate(losses))
        )
        print(f"history written to {path}")


if __name__ == "__main__":
    main()
