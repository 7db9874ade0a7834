# SPDX-License-Identifier: Apache-2.0
"""Shared setup of the 8-device checks (run in their own process, see test_sharding).

Not a test module: `tests/test_sharding.py` starts `python -m pytest` on the files
of this folder with `XLA_FLAGS=--xla_force_host_platform_device_count=8`, which must
be set before JAX is imported. None of these files match `test_*.py`, so the normal
`pytest tests` run never collects or imports them.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _registry import step_fn  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

assert jax.device_count() == 8, (
    "run through tests/test_sharding.py (XLA_FLAGS=--xla_force_host_platform_"
    f"device_count=8 before JAX is imported); got {jax.device_count()} devices"
)

# The registry's keys with shapes that split evenly over 8 devices along each axis.
SHAPES = {"w": (8, 16), "b": (16,), "s": ()}

# Params sharded along each axis, and replicated.
LAYOUTS = {
    "rows": {"w": P("x", None), "b": P("x"), "s": P()},
    "cols": {"w": P(None, "x"), "b": P("x"), "s": P()},
    "replicated": {"w": P(), "b": P(), "s": P()},
}


def well_posed(entry: Any) -> Any:
    """The entry as the 8-device checks run it: SOAP on the left factor only.

    SOAP builds its basis from the first gradient alone. For the (8, 16) matrix its
    16 x 16 right factor `GᵀG` has rank 8, so 8 eigenvalues are 0 up to rounding
    and any basis of that null space is as valid as another: which one `eigh`
    returns depends on the last bits of the factor, which a sharded product sums
    in another order. Limiting the eigenbasis to sides of at most 8 keeps the
    full-rank 8 x 8 left factor, whose basis is unique up to the signs SOAP fixes;
    `test_soap_right_factor_on_sharded_columns` covers the right side on a
    transposed matrix.
    """
    if entry.name in ("scale_by_soap", "soap"):
        kwargs = dict(entry.kwargs)
        kwargs["max_precond_dim"] = min(kwargs.get("max_precond_dim", 10000), 8)
        return dataclasses.replace(entry, kwargs=kwargs)
    return entry


# Entries whose numbers amplify rounding (by name). SOAP's eigenbases: flipping the
# last bit of a third of the gradient entries moves its updates by up to 5e-6 of
# their largest value (measured on these shapes), so a sharded product that sums
# in another order cannot meet 1e-6; a wrong layout or permutation moves them by
# O(1).
RTOL = {"scale_by_soap": 1e-4, "soap": 1e-4}


def rtol(entry: Any, default: float = 1e-6) -> float:
    return max(RTOL.get(entry.name, default), default)


def trees(n_steps: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """Params and `n_steps` gradients as NumPy float32 (placed by the caller)."""
    rng = np.random.default_rng(seed)
    draw = lambda: {
        k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()
    }
    return draw(), [draw() for _ in range(n_steps)]


def put(tree: dict, mesh: Any, layout: dict) -> dict:
    return {
        k: jax.device_put(jnp.asarray(v), NamedSharding(mesh, layout[k]))
        for k, v in tree.items()
    }


def single(tree: dict) -> dict:
    """The same values on one device (the unsharded run)."""
    return {
        k: jax.device_put(jnp.asarray(v), jax.devices()[0]) for k, v in tree.items()
    }


def norm_spec(spec: Any) -> tuple:
    """A spec as a tuple without trailing Nones: P(), P(None) and P(None, None)
    lay out a vector the same way (`device_put` keeps P(), `jit` returns the
    padded form on Explicit meshes)."""
    t = tuple(spec)
    while t and t[-1] is None:
        t = t[:-1]
    return t


def layout(x: Any) -> Any:
    """The placement of a leaf: mesh, normalized spec and memory kind."""
    s = x.sharding
    if isinstance(s, NamedSharding):
        return (s.mesh, norm_spec(s.spec), s.memory_kind)
    return s


def types(tree: Any) -> Any:
    """`jax.typeof` and the concrete placement of every leaf."""
    return jax.tree.map(lambda x: (jax.typeof(x), layout(x)), tree)


def assert_close(actual: Any, expected: Any, rtol: float = 1e-6) -> None:
    """f32 parity (RELIABILITY.md C8): rtol 1e-6, atol 1e-7 of max(1, max |e|).

    A different partitioning may fuse (and round) a multiply-add differently, which
    a cancelling moment such as Adam's `m` turns into a large relative error on a
    near-zero element; the absolute tolerance covers those.
    """
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
        scale = max(float(np.max(np.abs(e), initial=0.0)), 1.0)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=0.1 * rtol * scale)


def single_device_run(tx: Any, params_np: dict, grads_np: list) -> tuple[list, Any]:
    """Updates per step and the final state of the unsharded run on one device."""
    step = jax.jit(step_fn(tx))
    params, state = single(params_np), tx.init(single(params_np))
    updates = []
    for g in grads_np:
        params, state, u = step(params, state, single(g))
        updates.append(u)
    return updates, state
