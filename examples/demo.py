# SPDX-License-Identifier: Apache-2.0
"""gradtx in a few seconds: five optimizers on two toy functions, then an MLP on digits.

Run:
    python examples/demo.py             # full demo, under 10 s on 2 CPU cores
    python examples/demo.py --fast      # CI smoke test (or GRADTX_EXAMPLES_FAST=1)
    python examples/demo.py --out DIR   # where the plots go (default ./demo_output)

Needs `pip install gradtx[examples]` (matplotlib, scikit-learn, tqdm); no downloads.
"""

import argparse
import itertools
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import gradtx

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def quadratic(p):  # condition number 20
    return 0.5 * (20 * p[0] ** 2 + p[1] ** 2)


PROBLEMS = {  # name: (function of p = (x, y), start point)
    "rosenbrock": (rosenbrock, (-1.0, 1.0)),
    "quadratic": (quadratic, (1.0, 1.0)),
}
LEARNING_RATES = {  # each converges in 500 steps; SGD diverges on Rosenbrock above
    "sgd": {"rosenbrock": 1.5e-3, "quadratic": 0.05},  # 2/1002 (curvature at (1, 1))
    "momentum": {"rosenbrock": 1e-3, "quadratic": 0.02},
    "nesterov": {"rosenbrock": 1e-3, "quadratic": 0.02},
    "adam": {"rosenbrock": 0.03, "quadratic": 0.05},
    "adamw": {"rosenbrock": 0.03, "quadratic": 0.05},
}
OPTIMIZERS = {
    "sgd": gradtx.sgd,
    "momentum": lambda lr: gradtx.sgd(lr, momentum=0.9),
    "nesterov": lambda lr: gradtx.sgd(lr, momentum=0.9, nesterov=True),
    "adam": gradtx.adam,
    "adamw": lambda lr: gradtx.adamw(lr, weight_decay=1e-4),
}
STYLES = {"nesterov": "--", "adamw": "--"}  # dashed: they overlap momentum / adam


def minimize(f, x0, tx, steps):
    """Runs `steps` optimizer steps with `lax.scan`; returns the losses and the path."""

    def step(carry, _):
        x, state = carry
        loss, grad = jax.value_and_grad(f)(x)
        updates, state = tx.update(grad, state, x)
        return (gradtx.apply_updates(x, updates), state), (loss, x)

    x0 = jnp.asarray(x0)
    (x, _), (losses, path) = jax.lax.scan(step, (x0, tx.init(x0)), length=steps)
    return jnp.append(losses, f(x)), jnp.vstack([path, x])


def run_toys(steps):
    """Every optimizer on every problem, jitted together so that XLA compiles once."""
    runs = lambda: {
        p: {
            n: minimize(f, x0, tx(LEARNING_RATES[n][p]), steps)
            for n, tx in OPTIMIZERS.items()
        }
        for p, (f, x0) in PROBLEMS.items()
    }
    return jax.tree.map(np.asarray, jax.jit(runs)())


def mlp(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def cross_entropy(params, x, y):
    logp = jax.nn.log_softmax(mlp(params, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def train_mlp(epochs, batch=64, seed=0):
    """Trains a 64-64-10 MLP on scikit-learn's digits with the canonical chain."""
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x / 16.0, y, test_size=0.2, stratify=y, random_state=seed
    )
    steps = epochs * (len(x_tr) // batch)
    schedule = gradtx.warmup_cosine_decay_schedule(0.0, 3e-3, steps // 10 + 1, steps)
    tx = gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.scale_by_adam(),
        gradtx.add_decayed_weights(1e-4),
        gradtx.scale_by_learning_rate(schedule),
    )

    @jax.jit
    def train_step(params, state, xb, yb):
        loss, grads = jax.value_and_grad(cross_entropy)(params, xb, yb)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(seed)
    params = [  # He-normal init: 64 inputs -> 64 -> 64 -> 10 classes
        {"w": rng.normal(0, (2 / m) ** 0.5, (m, n)), "b": np.zeros(n)}
        for m, n in itertools.pairwise((64, 64, 64, 10))
    ]
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    state, losses = tx.init(params), []
    for _ in (bar := tqdm(range(epochs), desc="MLP on digits", unit="epoch")):
        order = rng.permutation(len(x_tr))
        for i in range(len(x_tr) // batch):
            idx = order[i * batch : (i + 1) * batch]
            params, state, loss = train_step(params, state, x_tr[idx], y_tr[idx])
            losses.append(float(loss))
        bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
    train_loss = float(jax.jit(cross_entropy)(params, x_tr, y_tr))
    test_acc = float(np.mean(np.argmax(jax.jit(mlp)(params, x_te), -1) == y_te))
    lrs = jax.jit(jax.vmap(schedule))(jnp.arange(steps, dtype=jnp.int32))
    return losses, lrs, train_loss, test_acc


def save(fig, path):
    fig.savefig(path, dpi=100, bbox_inches="tight")


def plot_toys(results, out):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for ax, problem in zip(axes, PROBLEMS, strict=True):
        for name in OPTIMIZERS:
            losses = np.maximum(results[problem][name][0], 1e-30)  # log axis: no zeros
            ax.semilogy(losses, STYLES.get(name, "-"), label=name)
        ax.set(title=f"{problem}: loss", xlabel="step", ylabel="f(x, y)")
        ax.legend()
    save(fig, out / "toy_losses.png")
    fig, ax = plt.subplots(figsize=(6, 5))
    xs, ys = np.meshgrid(np.linspace(-1.5, 1.5, 300), np.linspace(-0.5, 1.5, 300))
    levels, norm = np.logspace(-1, 3, 13), matplotlib.colors.LogNorm()
    ax.contour(xs, ys, rosenbrock((xs, ys)), levels, cmap="Greys", norm=norm)
    for name in OPTIMIZERS:
        path = results["rosenbrock"][name][1]
        ax.plot(*path.T, STYLES.get(name, "-"), lw=1.5, label=name)
    ax.plot(1, 1, "k*", ms=12, label="minimum (1, 1)")
    ax.set(title="Rosenbrock trajectories from (-1, 1)", xlabel="x", ylabel="y")
    ax.legend()
    save(fig, out / "rosenbrock_paths.png")


def plot_mlp(losses, lrs, out):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    ax1.semilogy(losses)
    ax1.set(title="MLP on digits: train loss", xlabel="step", ylabel="cross-entropy")
    ax2.plot(lrs)
    ax2.set(title="warmup_cosine_decay_schedule", xlabel="step", ylabel="learning rate")
    save(fig, out / "mlp_training.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny run for CI smoke")
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    args = parser.parse_args()
    fast = args.fast or os.environ.get("GRADTX_EXAMPLES_FAST") == "1"
    steps, epochs = (50, 1) if fast else (500, 40)
    args.out.mkdir(parents=True, exist_ok=True)

    results = run_toys(steps)
    print(f"\nFinal loss after {steps} steps [learning rate]")
    print(f"{'optimizer':10}" + "".join(f"{p:>24}" for p in PROBLEMS))
    for name, lrs in LEARNING_RATES.items():
        cells = [f"{results[p][name][0][-1]:.2e} [{lrs[p]:g}]" for p in PROBLEMS]
        print(f"{name:10}" + "".join(f"{c:>24}" for c in cells))
    plot_toys(results, args.out)

    print()
    losses, lrs, train_loss, test_acc = train_mlp(epochs)
    print(f"MLP, {epochs} epochs: train loss {train_loss:.4f}, test acc {test_acc:.1%}")
    plot_mlp(losses, lrs, args.out)
    print(f"\nPlots saved in {args.out.resolve()}")


if __name__ == "__main__":
    main()
