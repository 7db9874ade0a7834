# SPDX-License-Identifier: Apache-2.0
"""Param trees shaped like real models, for the benchmarks (not part of gradtx)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# (vocab, context, width, layers): GPT-2 small, and a tiny tree with the same leaves.
GPT2_SMALL = (50257, 1024, 768, 12)
GPT2_TINY = (512, 64, 64, 12)


def gpt2_shapes(vocab: int, ctx: int, d: int, layers: int) -> dict:
    """Nested dict of leaf shapes laid out like GPT-2 (148 leaves for 12 layers)."""

    def ln():
        return {"scale": (d,), "bias": (d,)}

    def dense(n_in, n_out):
        return {"kernel": (n_in, n_out), "bias": (n_out,)}

    block = {
        "ln1": ln(),
        "attn": {"qkv": dense(d, 3 * d), "proj": dense(d, d)},
        "ln2": ln(),
        "mlp": {"fc": dense(d, 4 * d), "proj": dense(4 * d, d)},
    }
    return {
        "wte": (vocab, d),
        "wpe": (ctx, d),
        **{f"h{i:02d}": block for i in range(layers)},
        "ln_f": ln(),
    }


def is_shape(x) -> bool:
    return isinstance(x, tuple) and all(isinstance(n, int) for n in x)


def random_tree(shapes: dict, key: jax.Array, scale: float = 1.0) -> dict:
    """Float32 normal leaves with the given shapes, times `scale`."""
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=is_shape)
    keys = jax.random.split(key, len(leaves))
    out = [
        scale * jax.random.normal(k, s, jnp.float32)
        for k, s in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def count(shapes: dict) -> tuple[int, int]:
    """(number of leaves, number of parameters)."""
    leaves = jax.tree.leaves(shapes, is_leaf=is_shape)
    return len(leaves), sum(math.prod(s) for s in leaves)


# --- helpers shared by compile.py, overhead.py, state_dtype.py and memory.py ---


def canonical_chain(lib):
    """The issue's canonical chain, built from `lib` (gradtx or optax) alone."""
    return lib.chain(
        lib.clip_by_global_norm(1.0),
        lib.scale_by_adam(),
        lib.add_decayed_weights(1e-4),
        lib.scale_by_learning_rate(
            lib.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 10_000)
        ),
    )


def make_step(lib, tx):
    """A fresh (never cached) `step(params, state, grads) -> (params, state)`."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return lib.apply_updates(params, updates), state

    return step


def uniform_shapes(n_leaves: int, shape: tuple[int, ...]) -> dict:
    """A flat dict of `n_leaves` leaves of the same `shape`."""
    return {f"w{i:05d}": tuple(shape) for i in range(n_leaves)}


def abstract_tree(shapes: dict, dtype=jnp.float32) -> dict:
    """`jax.ShapeDtypeStruct` leaves with the given shapes: no memory is allocated."""
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s, dtype), shapes, is_leaf=is_shape
    )


def nbytes(tree) -> int:
    """Sum of `nbytes` of the (concrete or abstract) array leaves of `tree`."""
    return sum(
        math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
    )


def max_abs_diff(a, b) -> float:
    """Largest |a - b| over all leaves of two trees of the same structure."""
    return max(
        float(jnp.max(jnp.abs(x - y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def header(extra: str = "") -> str:
    """Version, backend and machine lines printed at the top of every benchmark."""
    import os
    import platform

    import optax

    import gradtx

    dev = jax.devices()[0]
    lines = [
        f"jax {jax.__version__}, optax {optax.__version__}, "
        f"gradtx {gradtx.__version__}",
        f"backend {jax.default_backend()} ({dev.device_kind}), {os.cpu_count()} CPUs",
        f"python {platform.python_version()}, {platform.platform()}",
        f"flat layout: {flat_source()}",
    ]
    if extra:
        lines.append(extra)
    return "\n".join(lines)


# --- the flat layout: gradtx.flat when it exists, else a stand-in with its API ---


def have_gradtx_flat() -> bool:
    try:
        import gradtx.flat  # noqa: F401
    except ImportError:
        return False
    return True


def flat_source() -> str:
    if have_gradtx_flat():
        return "gradtx.flat"
    return "emulated in benchmarks/_trees.py (gradtx.flat not importable yet)"


class EmulatedLayout:
    """Stand-in for `gradtx.flat.layout(params)` until that module lands.

    `ravel(tree)` concatenates the leaves of each dtype into one 1-D buffer and
    returns `{dtype name: buffer}`; `unravel(flat)` slices them back into the tree.
    The optimizer applied to the flat dict sees one leaf per dtype, exactly what it
    will see with `gradtx.flat`.
    """

    def __init__(self, params):
        leaves, self.treedef = jax.tree.flatten(params)
        self.shapes = [tuple(x.shape) for x in leaves]
        self.dtypes = [jnp.dtype(x.dtype) for x in leaves]
        self.names = sorted({d.name for d in self.dtypes})
        self.sizes = dict.fromkeys(self.names, 0)
        self.offsets = []
        for s, d in zip(self.shapes, self.dtypes, strict=True):
            self.offsets.append(self.sizes[d.name])
            self.sizes[d.name] += math.prod(s)

    def ravel(self, tree) -> dict:
        leaves = self.treedef.flatten_up_to(tree)
        return {
            n: jnp.concatenate(
                [
                    jnp.ravel(x)
                    for x, d in zip(leaves, self.dtypes, strict=True)
                    if d.name == n
                ]
            )
            for n in self.names
        }

    def unravel(self, flat: dict):
        out = [
            jax.lax.dynamic_slice_in_dim(flat[d.name], o, math.prod(s)).reshape(s)
            for s, d, o in zip(self.shapes, self.dtypes, self.offsets, strict=True)
        ]
        return self.treedef.unflatten(out)

    def abstract(self) -> dict:
        """The flat dict as `jax.ShapeDtypeStruct`s (what the optimizer sees)."""
        return {n: jax.ShapeDtypeStruct((self.sizes[n],), n) for n in self.names}


def flat_layout(params):
    """`gradtx.flat.layout(params)` if importable, else an `EmulatedLayout`."""
    if have_gradtx_flat():
        import gradtx.flat

        return gradtx.flat.layout(params)
    return EmulatedLayout(params)


def abstract_flat(params) -> dict:
    """The flat dict of `params` (concrete or abstract) as ShapeDtypeStructs.

    Uses `jax.eval_shape` on the layout's `ravel`, so nothing is allocated.
    """
    layout = flat_layout(params)
    return jax.eval_shape(layout.ravel, params)


def flat_random(shapes: dict, key: jax.Array, scale: float = 1.0) -> dict:
    """`random_tree(shapes, key, scale)` raveled by the flat layout."""
    tree = random_tree(shapes, key, scale)
    return flat_layout(tree).ravel(tree)


def time_interleaved(runs: dict, steps: int, rotate: bool = True) -> dict:
    """Runs each `runs[name]()` `steps` times, interleaved; returns seconds per call.

    Each entry is a zero-argument callable that performs one step and blocks until it
    is done (it keeps its own carry). The order of the entries rotates every round,
    so no library always runs first (or right after the other).
    """
    import time

    names = list(runs)
    times = {n: [] for n in names}
    for i in range(steps):
        k = i % len(names) if rotate else 0
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            runs[n]()
            times[n].append(time.perf_counter() - t0)
    return times


# --- torch.optim rows for step.py and overhead.py; torch is never required ---

NO_TORCH = "torch not importable: no torch rows"


def cpu_threads() -> int:
    """CPUs this process may run on, the size of XLA:CPU's intra-op thread pool."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def import_torch():
    """`torch` with `set_num_threads(cpu_threads())`, or None if not importable.

    Sets `OMP_WAIT_POLICY=PASSIVE` first unless it is set already: with OpenMP's
    default spin-waiting, torch's two threads stalled each other on this shared,
    oversubscribed 2-core VM (a GPT-2-small AdamW step took 1.2 s instead of 80 ms).
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when libgomp loads
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(cpu_threads())
    return torch


def torch_line(torch) -> str:
    """The header line that says whether, and how, torch rows are run."""
    import os

    if torch is None:
        return NO_TORCH
    n = torch.get_num_threads()
    return (
        f"torch {torch.__version__}: torch.set_num_threads({n}), the {n} CPUs "
        f"XLA:CPU's thread pool uses; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    )


def warmup_cosine(step: int) -> float:
    """The canonical chain's `warmup_cosine_decay_schedule(0.0, 1e-3, 100, 10_000)`.

    Plain Python, for torch's `LambdaLR`: linear from 0 to 1e-3 over 100 steps, then
    a half cosine down to 0 at step 10,000 (optax's formula, end value 0).
    """
    peak, warmup, decay = 1e-3, 100, 10_000
    if step < warmup:
        return peak * step / warmup
    t = min(step - warmup, decay - warmup) / (decay - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * t))


# Keyed like the optimizers of step.py and overhead.py: AdamW's weight decay (as
# printed), the clip_grad_norm_ max norm, whether the lr follows `warmup_cosine`.
TORCH_EQUIVALENTS = {
    "adamw(1e-3, wd=0.1)": {"weight_decay": "0.1", "clip": None, "schedule": False},
    "clip+adam+wd+cosine chain": {
        "weight_decay": "1e-4",
        "clip": 1.0,
        "schedule": True,
    },
}


class TorchAdamW:
    """`torch.optim.AdamW` on copies of a JAX param tree, with fixed gradients.

    The leaves become `torch.from_numpy` copies and each gets its gradient as `.grad`
    (no autograd). `step()` runs `clip_grad_norm_` (if `clip`), `AdamW.step()` and,
    with `schedule`, `LambdaLR.step()` following `warmup_cosine`; otherwise the
    learning rate is a constant 1e-3. AdamW is `fused=True` when this torch has a
    fused kernel for the device, else `foreach=True`; `kind` says which. As in a
    training loop, `clip_grad_norm_` scales `.grad` in place, so from the second step
    on the stored gradients already have norm 1 and the clip factor is about 1: the
    same values the JAX chain's clip computes from its fixed gradients every step.
    With `threads`, `step()` first sets `torch.set_num_threads(threads)` if needed.
    """

    def __init__(self, torch, name: str, params, grads, threads: int | None = None):
        import numpy as np

        cfg = TORCH_EQUIVALENTS[name]
        self.torch, self.clip, self.threads = torch, cfg["clip"], threads
        self.leaves = [
            torch.from_numpy(np.array(x)).requires_grad_(True)
            for x in jax.tree.leaves(params)
        ]
        for p, g in zip(self.leaves, jax.tree.leaves(grads), strict=True):
            p.grad = torch.from_numpy(np.array(g))
        kw = {"lr": 1e-3, "weight_decay": float(cfg["weight_decay"])}
        try:
            self.opt = torch.optim.AdamW(self.leaves, fused=True, **kw)
            self.kind = "fused"
        except RuntimeError:  # no fused AdamW kernel for this device in this torch
            self.opt = torch.optim.AdamW(self.leaves, foreach=True, **kw)
            self.kind = "foreach"
        self.sched = None
        if cfg["schedule"]:
            self.sched = torch.optim.lr_scheduler.LambdaLR(
                self.opt, lambda s: warmup_cosine(s) / 1e-3
            )
        self.name = f"AdamW({self.kind}, wd={cfg['weight_decay']})"
        if self.clip is not None:
            self.name = f"clip_grad_norm_+{self.name}"
        if self.sched is not None:
            self.name += "+LambdaLR"

    def step(self, k: int = 1) -> None:
        """Runs `k` steps (torch on CPU is synchronous: done when this returns)."""
        if self.threads is not None and self.torch.get_num_threads() != self.threads:
            self.torch.set_num_threads(self.threads)
        for _ in range(k):
            if self.clip is not None:
                self.torch.nn.utils.clip_grad_norm_(self.leaves, self.clip)
            self.opt.step()
            if self.sched is not None:
                self.sched.step()

    def max_diff(self, params) -> float:
        """Largest |torch param - param| over the leaves of the JAX tree `params`."""
        import numpy as np

        return max(
            float(np.max(np.abs(p.detach().numpy() - np.asarray(x))))
            for p, x in zip(self.leaves, jax.tree.leaves(params), strict=True)
        )
