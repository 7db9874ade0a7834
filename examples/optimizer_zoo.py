# SPDX-License-Identifier: Apache-2.0
"""Modern optimizers side by side: two non-convex surfaces and a matrix factorization.

Runs AdamW (the baseline), Lion, LAMB, Adafactor, Sophia, Prodigy, schedule-free AdamW
and Muon, each with one learning rate for every problem, on
- the Rosenbrock valley from (-1.5, 2) and the Himmelblau surface from (-0.3, -0.9): 2-D
  non-convex functions whose trajectories are plotted over the contours (Muon only
  orthogonalizes matrices, so on these 2-vectors it runs its AdamW fallback);
- a rank-4 matrix factorization `min |U V^T - M|^2` (non-convex, with matrix parameters,
  where Muon's orthogonalized updates apply),
then prints a table of final losses and plots the loss curves.

Run:
    python examples/optimizer_zoo.py             # about 20 s on 2 CPU cores
    python examples/optimizer_zoo.py --fast      # CI smoke run (GRADTX_EXAMPLES_FAST=1)
    python examples/optimizer_zoo.py --out DIR   # where the plots go

Needs `pip install gradtx[examples]` (matplotlib); no downloads.
"""

import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import gradtx

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def rosenbrock(p):
    return (1 - p["xy"][0]) ** 2 + 100 * (p["xy"][1] - p["xy"][0] ** 2) ** 2


def himmelblau(p):
    x, y = p["xy"][0], p["xy"][1]
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


SURFACES = {  # name: (function, start, plot box)
    "rosenbrock": (rosenbrock, (-1.5, 2.0), (-2.0, 2.0, -1.0, 3.0)),
    "himmelblau": (himmelblau, (-0.3, -0.9), (-5.0, 5.0, -5.0, 5.0)),
}


def factorization_problem(n=24, rank=4, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, n)) / rank
    target = jnp.asarray(target, jnp.float32)
    init = {
        "u": jnp.asarray(0.1 * rng.standard_normal((n, rank)), jnp.float32),
        "v": jnp.asarray(0.1 * rng.standard_normal((n, rank)), jnp.float32),
    }

    def loss(p):
        return jnp.mean((p["u"] @ p["v"].T - target) ** 2)

    return loss, init


# One learning rate per optimizer, chosen so each makes progress on every problem.
OPTIMIZERS = {
    "adamw": lambda: gradtx.adamw(0.02, weight_decay=0.0),
    "lion": lambda: gradtx.lion(0.01, weight_decay=0.0),
    "lamb": lambda: gradtx.lamb(0.02, weight_decay=0.0),
    "adafactor": lambda: gradtx.adafactor(0.02, multiply_by_parameter_scale=False),
    "sophia": lambda: gradtx.contrib.sophia(0.02, weight_decay=0.0),
    "prodigy": lambda: gradtx.contrib.prodigy(1.0),
    "schedule_free": lambda: gradtx.contrib.schedule_free_adamw(0.1, warmup_steps=20),
    "muon": lambda: gradtx.contrib.muon(0.02),
}


def eval_params(name, state, params):
    """Schedule-free methods are evaluated at their averaged point."""
    if name == "schedule_free":
        return gradtx.contrib.schedule_free_eval_params(state, params)
    return params


def run(name, loss, params, steps):
    """Returns the loss (at the evaluation point) and the iterates of every step."""
    tx = OPTIMIZERS[name]()
    state = tx.init(params)

    def step(carry, key):
        params, state = carry
        value, grads = jax.value_and_grad(loss)(params)
        # Sophia estimates the Hessian diagonal from obj_fn; others ignore it.
        updates, state = tx.update(
            grads, state, params, value=value, obj_fn=loss, key=key
        )
        params = gradtx.apply_updates(params, updates)
        evaluated = eval_params(name, state, params)
        return (params, state), (loss(evaluated), evaluated)

    keys = jax.random.split(jax.random.key(0), steps)
    _, (losses, iterates) = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), keys))(
        params, state
    )
    return np.asarray(losses), jax.tree.map(np.asarray, iterates)


def plot_surface(ax, fn, box, paths, title):
    xs = np.linspace(box[0], box[1], 200)
    ys = np.linspace(box[2], box[3], 200)
    grid_x, grid_y = np.meshgrid(xs, ys)
    z = np.vectorize(lambda x, y: float(fn({"xy": np.array([x, y])})))(grid_x, grid_y)
    ax.contour(grid_x, grid_y, np.log1p(z), levels=30, cmap="Greys", linewidths=0.5)
    for name, path in paths.items():
        ax.plot(path[:, 0], path[:, 1], lw=1.2, label=name)
    ax.set(xlim=box[:2], ylim=box[2:], title=title)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="short CI smoke run")
    parser.add_argument("--out", default="optimizer_zoo_output", help="plot folder")
    args = parser.parse_args()
    fast = args.fast or os.environ.get("GRADTX_EXAMPLES_FAST") == "1"
    steps = 50 if fast else 1000
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    problems = {
        name: (fn, {"xy": jnp.asarray(start, jnp.float32)})
        for name, (fn, start, _) in SURFACES.items()
    }
    problems["factorization"] = factorization_problem()
    finals = {}
    curves = {}
    paths = {name: {} for name in SURFACES}
    for problem, (loss, init) in problems.items():
        for name in OPTIMIZERS:
            losses, iterates = run(name, loss, init, steps)
            curves[problem, name] = losses
            finals[problem, name] = losses[-1]
            if problem in paths:
                paths[problem][name] = iterates["xy"]

    width = max(map(len, OPTIMIZERS))
    print(f"final loss after {steps} steps")
    print(f"{'':{width}}  " + "  ".join(f"{p:>13}" for p in problems))
    for name in OPTIMIZERS:
        row = "  ".join(f"{finals[p, name]:13.3e}" for p in problems)
        print(f"{name:{width}}  {row}")

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, problem in zip(axes, problems, strict=True):
        for name in OPTIMIZERS:
            ax.semilogy(np.maximum(curves[problem, name], 1e-12), label=name)
        ax.set(title=problem, xlabel="step", ylabel="loss")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=110)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (problem, (fn, _, box)) in zip(axes, SURFACES.items(), strict=True):
        plot_surface(ax, fn, box, paths[problem], problem)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "trajectories.png", dpi=110)
    print(f"plots written to {out}/")


if __name__ == "__main__":
    main()
