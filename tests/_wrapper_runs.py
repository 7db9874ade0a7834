"""Helpers shared by the wrapper tests: run a transform over steps, compare trees."""

import functools

import jax
import numpy as np

import gradtx


def run(tx, grads, params, jit, **extra):
    """Applies `tx` to each gradient in turn; returns (updates, state, params)."""
    update = jit(functools.partial(tx.update, **extra))
    state, out = tx.init(params), []
    for g in grads:
        u, state = update(g, state, params)
        params = gradtx.apply_updates(params, u)
        out.append((u, state, params))
    return out


def leaves_close(a, b):
    """Implementation parity (RELIABILITY.md): f32 rtol 1e-6, atol 1e-7 of max |b|.

    The atol covers eager runs, where optax's lax.cond compiles the inner update (XLA
    may fuse a multiply-add) while gradtx dispatches it op by op.
    """
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7 * max(1, np.abs(y).max()))
