# SPDX-License-Identifier: Apache-2.0
"""gradtx training over 2 processes x 4 CPU devices with `jax.distributed` (gloo).

Not a test module: `tests/test_multiprocess.py` imports it for `launch` and for the
problem, and compares what the processes write with a run on one device. Each
process joins a coordinator on localhost, builds the global mesh of 8 devices
(axis "data") and trains a small MLP regression for `STEPS` steps three ways:

- `adamw`: AdamW, params replicated, every batch split over "data";
- `zero1_adamw`: the same inside `gradtx.zero1`, so each process holds half of the
  moments (each device 1/8 of the large leaves);
- `clip_adam_sharded`: `chain(clip_by_global_norm(1.0), adam(1e-2))` with the params
  sharded over "data" (gathered in the forward pass), so the gradients are sharded
  across the processes and the clip's global norm reduces over both.

Every process builds its part of each batch with
`jax.make_array_from_process_local_data`; process 0 writes the final params and the
loss curves, gathered with `multihost_utils.process_allgather`, to an .npz file.

Run by hand (starts the two processes on a free localhost port):
    python tests/multiprocess/worker.py --out /tmp/multiprocess.npz
One process of the pair, as `launch` starts it:
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python \
        tests/multiprocess/worker.py --process-id 0 --port PORT --out FILE.npz
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx

NUM_PROCESSES, LOCAL_DEVICES = 2, 4
STEPS, BATCH = 20, 64
SHAPES = {"w1": (8, 16), "b1": (16,), "w2": (16, 1), "b2": (1,)}
ROOT = Path(__file__).resolve().parents[2]

# Every leaf whose first dimension splits over 8 devices is sharded; b2 cannot be.
REPLICATED = {k: P() for k in SHAPES}
SHARDED = {"w1": P("data", None), "b1": P("data"), "w2": P("data", None), "b2": P()}


def adamw() -> gradtx.GradientTransformation:
    return gradtx.adamw(1e-2, weight_decay=1e-2)


def clipped_adam() -> gradtx.GradientTransformation:
    return gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adam(1e-2))


# name -> (transformation on the mesh, params layout, one-device transformation).
# zero1 moves the state, not the numbers: its one-device run is the inner AdamW.
RUNS = {
    "adamw": (lambda mesh: adamw(), REPLICATED, adamw),
    "zero1_adamw": (
        lambda mesh: gradtx.zero1(adamw(), mesh, "data"),
        REPLICATED,
        adamw,
    ),
    "clip_adam_sharded": (lambda mesh: clipped_adam(), SHARDED, clipped_adam),
}


def problem(seed: int = 0) -> tuple[dict, list[tuple[np.ndarray, np.ndarray]]]:
    """Initial params and `STEPS` global batches `(x, y)`, float32 NumPy."""
    rng = np.random.default_rng(seed)
    params = {
        k: (rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32)
        for k, s in SHAPES.items()
    }
    teacher = rng.standard_normal((SHAPES["w1"][0], 1))
    batches = []
    for _ in range(STEPS):
        x = rng.standard_normal((BATCH, SHAPES["w1"][0]))
        y = 3.0 * np.sin(x @ teacher) + 0.1 * rng.standard_normal((BATCH, 1))
        batches.append((x.astype(np.float32), y.astype(np.float32)))
    return params, batches


def loss(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    return jnp.mean((h @ params["w2"] + params["b2"][None, :] - y) ** 2)


def make_step(tx: gradtx.GradientTransformation, gather: Any = None) -> Any:
    """A jitted step; `gather` (if given) lays the params out for the forward pass."""

    def objective(params, x, y):
        return loss(params if gather is None else gather(params), x, y)

    @jax.jit
    def step(params, state, x, y):
        value, grads = jax.value_and_grad(objective)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state, value

    return step


def train(tx, params, batches, put_batch, gather=None) -> tuple[dict, Any, list]:
    """Final params, final state and the per-step losses (as arrays)."""
    step = make_step(tx, gather)
    state = tx.init(params)
    losses = []
    for x, y in batches:
        params, state, value = step(params, state, put_batch(x), put_batch(y))
        losses.append(value)
    return params, state, losses


def process_local(sharding: NamedSharding, batch: np.ndarray) -> jax.Array:
    """The global batch as a sharded array, each process giving only its own rows."""
    index = sharding.addressable_devices_indices_map(batch.shape)
    spans = sorted({(s[0].start or 0, s[0].stop or len(batch)) for s in index.values()})
    local = np.concatenate([batch[a:b] for a, b in spans])
    return jax.make_array_from_process_local_data(sharding, local, batch.shape)


def local_part(x: jax.Array) -> float:
    """The fraction of the elements of `x` held by this process's devices."""
    if x.size == 0:
        return 1.0
    held = {str(s.index): s.data.size for s in x.addressable_shards}
    return sum(held.values()) / x.size


def run_on_mesh(name: str, mesh: Any) -> dict[str, Any]:
    """One entry of `RUNS` on the global mesh; what process 0 writes of it."""
    make_tx, layout, _ = RUNS[name]
    params_np, batches = problem()
    params = {
        k: jax.make_array_from_callback(
            v.shape, NamedSharding(mesh, layout[k]), lambda i, v=v: v[i]
        )
        for k, v in params_np.items()
    }
    # With sharded params, the forward pass all-gathers them (FSDP style); the
    # gradients come back sharded like the params.
    gather = None
    if layout is SHARDED:
        gather = lambda p: jax.tree.map(lambda x: jax.sharding.reshard(x, P()), p)
    split = NamedSharding(mesh, P("data"))
    put_batch = lambda b: process_local(split, b)
    params, state, losses = train(make_tx(mesh), params, batches, put_batch, gather)
    leaves = jax.tree.leaves(params) + jax.tree.leaves(state)
    gathered = multihost_utils.process_allgather(params, tiled=True)
    losses = multihost_utils.process_allgather(jnp.stack(losses), tiled=True)
    return {
        f"{name}/smallest_local_part": min(map(local_part, leaves)),
        f"{name}/losses": np.asarray(losses),
        **{f"{name}/params/{k}": np.asarray(v) for k, v in gathered.items()},
    }


def run_process(process_id: int, port: int, out: Path) -> None:
    """One process of the pair: join, train every run, process 0 writes `out`."""
    # gloo is jax 0.10.2's default; named here because it is the piece that makes
    # collectives cross processes on CPU (older JAX also offered "none").
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # The test process's promotion rules (tests/conftest.py), so both run the same.
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=NUM_PROCESSES,
        process_id=process_id,
        initialization_timeout=60,
    )
    assert jax.local_device_count() == LOCAL_DEVICES, (
        f"XLA_FLAGS=--xla_force_host_platform_device_count={LOCAL_DEVICES} must be "
        f"set before JAX is imported; got {jax.local_device_count()} local devices"
    )
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    result = {"process_count": jax.process_count(), "device_count": jax.device_count()}
    with jax.set_mesh(mesh):
        for name in RUNS:
            result.update(run_on_mesh(name, mesh))
    if process_id == 0:
        np.savez(out, **result)
    jax.distributed.shutdown()


def free_port() -> int:
    """A localhost TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    """This environment, plus 4 CPU devices, CPU only and the repository on the path."""
    env = dict(os.environ)
    flag = f"--xla_force_host_platform_device_count={LOCAL_DEVICES}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def launch(out: Path, timeout: float = 300.0) -> list[tuple[int, str, str]]:
    """Starts the two processes and waits; `(returncode, stdout, stderr)` of each.

    A failing process exits at once (see `main`); its peer, which would wait for
    it in a collective until gloo's 30 s deadline, is killed 10 s later. After
    `timeout` seconds both are killed. Killed processes report returncode -9.
    """
    port, env, procs, logs = free_port(), child_env(), [], []
    for i in range(NUM_PROCESSES):
        cmd = [sys.executable, __file__, "--process-id", str(i), "--port", str(port)]
        logs.append((Path(f"{out}.{i}.stdout"), Path(f"{out}.{i}.stderr")))
        with open(logs[i][0], "w") as o, open(logs[i][1], "w") as e:
            cmd += ["--out", str(out)]
            procs.append(subprocess.Popen(cmd, env=env, stdout=o, stderr=e))
    deadline, failed_at = time.monotonic() + timeout, None
    while any(p.poll() is None for p in procs):
        now = time.monotonic()
        if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
            failed_at = now
        if now > deadline or (failed_at is not None and now > failed_at + 10):
            for p in procs:
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(0.05)
    return [
        (p.wait(), o.read_text(), e.read_text())
        for p, (o, e) in zip(procs, logs, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--process-id", type=int, default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    if args.process_id is not None:
        try:
            run_process(args.process_id, args.port, args.out)
        except BaseException:
            # Exit now: a normal exit would first wait for the peer in JAX's
            # distributed shutdown, and the peer waits for this process.
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        return
    start = time.perf_counter()
    results = launch(args.out)
    for i, (code, stdout, stderr) in enumerate(results):
        print(f"process {i}: exit {code}\n{stdout[-2000:]}{stderr[-2000:]}")
    if any(code != 0 for code, _, _ in results):
        sys.exit(1)
    data = np.load(args.out)
    print(f"{time.perf_counter() - start:.1f} s; wrote {args.out}:")
    for key in data.files:
        if key.endswith("/losses"):
            print(f"  {key}: {data[key][0]:.4f} -> {data[key][-1]:.4f}")


if __name__ == "__main__":
    main()
