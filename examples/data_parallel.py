# SPDX-License-Identifier: Apache-2.0
"""Data parallelism with ZeRO-1 on 8 (simulated) devices, checked against one device.

An MLP on scikit-learn's digits (bundled, nothing is downloaded) is trained twice
from the same start with AdamW:

1. on one device, the whole batch at once;
2. data-parallel on a mesh of 8 devices: every batch is split over the mesh axis
   "data" (`NamedSharding(mesh, P("data"))`), the params are replicated, `jit`
   computes per-device gradients and all-reduces them, and `gradtx.zero1` keeps
   1/8 of the AdamW moments on each device.

Both runs see the same batches, so the loss curves agree to float32 rounding (the
all-reduce sums in another order); the script checks that and prints the state
bytes per device of ZeRO-1 against plain data parallelism. On a machine without 8
accelerators, XLA's host platform simulates them: XLA_FLAGS is set below, before
JAX is imported, as it must be.

Run:
    python examples/data_parallel.py            # 300 steps, a few seconds
    python examples/data_parallel.py --fast     # CI smoke (GRADTX_EXAMPLES_FAST=1)
    python examples/data_parallel.py --out DIR  # + DIR/data_parallel.csv
"""

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import argparse  # (imports after setting XLA_FLAGS)
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from sklearn.datasets import load_digits

import gradtx

BATCH, HIDDEN = 128, 128


def init(key):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (64, HIDDEN)) / 8.0,
        "b1": jnp.zeros(HIDDEN),
        "w2": jax.random.normal(k2, (HIDDEN, 10)) / np.sqrt(HIDDEN),
        "b2": jnp.zeros(10),
    }


def loss(params, x, onehot):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    logp = jax.nn.log_softmax(h @ params["w2"] + params["b2"])
    return -jnp.mean(jnp.sum(onehot * logp, axis=1))


def make_step(tx):
    @jax.jit
    def step(params, state, x, onehot):
        value, grads = jax.value_and_grad(loss)(params, x, onehot)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state, value

    return step


def train(tx, params, batches, put_batch):
    step = make_step(tx)
    state = tx.init(params)
    losses = []
    for x, onehot in batches:
        params, state, value = step(params, state, *put_batch(x, onehot))
        losses.append(float(value))
    return np.asarray(losses), state


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    fast = args.fast or os.environ.get("GRADTX_EXAMPLES_FAST") == "1"
    steps = 20 if fast else 300

    digits = load_digits()
    x_all = (digits.data / 16.0).astype(np.float32)
    y_all = np.eye(10, dtype=np.float32)[digits.target]
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(steps):
        idx = rng.choice(len(x_all), BATCH, replace=False)
        batches.append((x_all[idx], y_all[idx]))
    params = init(jax.random.key(0))
    make_tx = lambda: gradtx.adamw(3e-3, weight_decay=1e-4)

    # 1. One device.
    one = jax.devices()[0]
    single, _ = train(
        make_tx(),
        jax.device_put(params, one),
        batches,
        lambda x, y: (jax.device_put(x, one), jax.device_put(y, one)),
    )

    # 2. Data parallel on 8 devices, ZeRO-1 state.
    n = len(jax.devices())
    mesh = jax.make_mesh((n,), ("data",))
    replicated = NamedSharding(mesh, P())
    split = NamedSharding(mesh, P("data"))
    with jax.set_mesh(mesh):
        tx = gradtx.zero1(make_tx(), mesh, "data")
        parallel, state = train(
            tx,
            jax.device_put(params, replicated),
            batches,
            lambda x, y: (jax.device_put(x, split), jax.device_put(y, split)),
        )
        plain_state = make_tx().init(jax.device_put(params, replicated))

    zero_bytes = max(gradtx.bytes_per_device(state).values())
    plain_bytes = max(gradtx.bytes_per_device(plain_state).values())
    diff = float(np.max(np.abs(parallel - single) / single))
    print(f"{n} devices, {steps} steps of batch {BATCH} ({BATCH // n} per device)")
    print(f"loss: {single[0]:.4f} -> {single[-1]:.4f} (one device)")
    print(f"loss: {parallel[0]:.4f} -> {parallel[-1]:.4f} (data parallel, ZeRO-1)")
    print(f"largest relative difference of the loss curves: {diff:.2e}")
    print(
        f"AdamW state bytes per device: {plain_bytes} replicated, {zero_bytes} "
        f"with zero1 ({zero_bytes / plain_bytes:.3f})"
    )
    assert diff < 1e-5, "the data-parallel loss curve left the single-device one"
    # The count and the (10,) moments of the last bias (10 is not a multiple of 8)
    # stay replicated; everything else is split 8 ways.
    assert zero_bytes < plain_bytes / n + 256, "zero1 did not shard the state"

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = ["step,loss_single_device,loss_data_parallel"]
        rows += [
            f"{i},{a:.8f},{b:.8f}"
            for i, (a, b) in enumerate(zip(single, parallel, strict=True))
        ]
        (args.out / "data_parallel.csv").write_text("\n".join(rows) + "\n")
        print(f"wrote {args.out / 'data_parallel.csv'}")


if __name__ == "__main__":
    main()
