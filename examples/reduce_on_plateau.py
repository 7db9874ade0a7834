"""Reduce-on-plateau on a noisy least-squares problem, printing the lr drops.

SGD with a constant learning rate stalls on a noise floor: the minibatch gradients
never vanish, so the loss stops falling well above its minimum. Chaining
`gradtx.reduce_on_plateau` after it averages the minibatch losses (passed as
`value=`) over one epoch (`accumulation_size`) and divides the step by 4 whenever that
average stops improving for `patience` epochs; each drop lowers the noise floor.

Run:
    python examples/reduce_on_plateau.py            # 200 epochs, a few seconds
    python examples/reduce_on_plateau.py --fast     # CI smoke (GRADTX_EXAMPLES_FAST=1)
    python examples/reduce_on_plateau.py --out DIR  # plot to DIR/reduce_on_plateau.png
"""

import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp

import gradtx

LR = 0.05


def make_data(n=512, d=16, noise=0.5):
    kx, kw, kn = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (n, d))
    y = x @ jax.random.normal(kw, (d,)) + noise * jax.random.normal(kn, (n,))
    return x, y


def loss_fn(w, x, y):
    return 0.5 * jnp.mean((x @ w - y) ** 2)


def train(epochs, x, y, batch=8):
    """Returns per-epoch (full loss, lr) for SGD + reduce_on_plateau."""
    steps = x.shape[0] // batch  # one plateau window per epoch
    plateau = gradtx.reduce_on_plateau(
        factor=0.25, patience=5, cooldown=3, rtol=1e-3, accumulation_size=steps
    )
    opt = gradtx.chain(gradtx.sgd(LR), plateau)
    w = jnp.zeros(x.shape[1])
    state = opt.init(w)

    @jax.jit
    def epoch(w, state, key):
        perm = jax.random.permutation(key, x.shape[0])
        xb = x[perm].reshape(-1, batch, x.shape[1])
        yb = y[perm].reshape(-1, batch)

        def step(carry, b):
            w, state = carry
            loss, g = jax.value_and_grad(loss_fn)(w, *b)
            u, state = opt.update(g, state, w, value=loss)
            return (gradtx.apply_updates(w, u), state), None

        (w, state), _ = jax.lax.scan(step, (w, state), (xb, yb))
        return w, state, loss_fn(w, x, y)

    history = []
    for i in range(epochs):
        w, state, loss = epoch(w, state, jax.random.key(i + 1))
        scale = float(gradtx.tree.get(state, "scale"))
        if history and scale < history[-1][1] / LR:
            print(f"epoch {i:4d}: loss {float(loss):.5f} -> lr {LR * scale:.2e}")
        history.append((float(loss), LR * scale))
    return history


def plot(history, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy([h[0] for h in history], label="full-data loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.semilogy([h[1] for h in history], color="tab:red", label="learning rate")
    ax2.set_ylabel("learning rate")
    fig.legend(loc="upper right")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "reduce_on_plateau.png", dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reduce_on_plateau_output"))
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args()
    fast = args.fast or os.environ.get("GRADTX_EXAMPLES_FAST") == "1"
    x, y = make_data()
    history = train(40 if fast else 200, x, y)
    print(f"final loss {history[-1][0]:.5f}, final lr {history[-1][1]:.2e}")
    plot(history, args.out)


if __name__ == "__main__":
    main()
