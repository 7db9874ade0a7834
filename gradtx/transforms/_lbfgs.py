# SPDX-License-Identifier: Apache-2.0
"""L-BFGS preconditioner: `scale_by_lbfgs` (Nocedal & Wright, Algorithm 7.4)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _numerics, _tree
from gradtx._base import GradientTransformation
from gradtx.transforms import _linesearch_util as ls

_FN = "scale_by_lbfgs"


class ScaleByLBFGSState(NamedTuple):
    """State of `scale_by_lbfgs` (optax's fields and layout).

    `diff_params_memory` / `diff_updates_memory` stack the last `memory_size` pairs
    `s = w_k - w_{k-1}`, `y = u_k - u_{k-1}` along a leading axis, as a ring buffer:
    the pair made at step `count` sits at `(count - 1) % memory_size`.
    `weights_memory[i] = 1 / <s_i, y_i>` (0 for an empty or skipped slot).
    """

    count: jax.Array
    params: Any
    updates: Any
    diff_params_memory: Any
    diff_updates_memory: Any
    weights_memory: jax.Array


def _two_loop(updates, s_mem, y_mem, rhos, gamma, memory_idx):
    """`P_k u`: the two-loop recursion over the ring buffer, newest pair first."""
    size = rhos.shape[0]
    indices = (memory_idx + jnp.arange(size)) % size  # oldest ... newest
    pick = lambda i: jax.tree.map(lambda x: x[i], (s_mem, y_mem))

    def right(q, i):
        s, y = pick(i)
        alpha = rhos[i] * ls.vdot(s, q).astype(rhos.dtype)
        return ls.add_scale(q, -alpha, y), alpha

    q, alphas = jax.lax.scan(right, updates, indices, reverse=True)
    r = ls.scale(gamma, q)

    def left(r, i_alpha):
        i, alpha = i_alpha
        s, y = pick(i)
        beta = rhos[i] * ls.vdot(y, r).astype(rhos.dtype)
        return ls.add_scale(r, alpha - beta, s), beta

    r, _ = jax.lax.scan(left, r, (indices, alphas))
    return r


def _sub(a, b):
    """`a - b` leaf by leaf, in each leaf's compute dtype."""

    def leaf(x, y):
        xc = _numerics.up(x)
        return xc - _numerics.up(y).astype(xc.dtype)

    return jax.tree.map(leaf, a, b)


def scale_by_lbfgs(
    memory_size: int = 10, scale_init_precond: bool = True
) -> GradientTransformation:
    """Multiplies the updates by the L-BFGS approximation of the inverse Hessian.

    Call it with the gradient as updates and `params`. It first stores the newest
    pair `(w_k - w_{k-1}, g_k - g_{k-1})`, then returns `P_k g_k`; chain a line
    search after it (see `lbfgs`). A pair with an inf or NaN entry is not stored
    (its slot is zeroed) and the last finite params/gradient are kept, so one bad
    gradient cannot poison the memory; the update for it is still non-finite.

    Update rule:
        two-loop recursion with H_0 = gamma I, rho_i = 1 / <s_i, y_i>;
        gamma = <s, y> / <y, y> of the newest pair (1 if <y, y> = 0, or if
        `scale_init_precond=False`); first step: gamma = min(1, 1 / ||g||)

    Args:
        memory_size: Number of pairs kept, an integer >= 1.
        scale_init_precond: Scale the initial inverse Hessian by `gamma`.

    Returns:
        A transformation with `ScaleByLBFGSState`; `update` needs `params`.

    Raises:
        HyperparameterError: If `memory_size` is not an integer >= 1.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_lbfgs()
        >>> w = jnp.array([3.0, 4.0])
        >>> tx.update(w, tx.init(w), w)[0]  # first step: g / ||g||
        Array([0.6, 0.8], dtype=float32)

    References:
        Nocedal & Wright, Numerical Optimization, 2006, Algorithms 7.4-7.5;
        Liu & Nocedal, 1989: https://doi.org/10.1007/BF01589116
    """
    ls.check_int(_FN, "memory_size", memory_size, 1)

    def init(params):
        stacked = jax.tree.map(
            lambda x: jnp.zeros((memory_size, *jnp.shape(x)), x.dtype), params
        )
        return ScaleByLBFGSState(
            count=jnp.zeros([], jnp.int32),
            params=_tree.zeros_like(params),
            updates=_tree.zeros_like(params),
            diff_params_memory=stacked,
            diff_updates_memory=stacked,
            weights_memory=jnp.zeros([memory_size], _numerics.hparam_dtype()),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        _tree.require_params(_FN, params)
        _tree.check_structure(_FN, state.params, updates)
        dtype = state.weights_memory.dtype
        memory_idx = state.count % memory_size
        prev_idx = (state.count - 1) % memory_size
        s, y = _sub(params, state.params), _sub(updates, state.updates)
        sy = ls.vdot(y, s).astype(dtype)
        weight = jnp.where(sy == 0.0, jnp.zeros([], dtype), 1.0 / sy)
        # gradtx: a non-finite pair is skipped (stored as zeros, weight 0), and the
        # last finite point stays the reference for the next pair.
        finite = _tree.all_finite((s, y)) & jnp.isfinite(weight)
        keep = (state.count > 0) & finite
        s, y = (_tree.select(keep, t, _tree.zeros_like(t)) for t in (s, y))
        weight = jnp.where(keep, weight, jnp.zeros([], dtype))

        def put(mem, new):
            return mem.at[prev_idx].set(new.astype(mem.dtype))

        s_mem = jax.tree.map(put, state.diff_params_memory, s)
        y_mem = jax.tree.map(put, state.diff_updates_memory, y)
        rhos = state.weights_memory.at[prev_idx].set(weight)
        if scale_init_precond:
            yy = _tree.sum_sq(y).astype(dtype)
            gamma = jnp.where(yy > 0.0, ls.vdot(y, s).astype(dtype) / yy, 1.0)
            norm = jnp.sqrt(_tree.sum_sq(jax.lax.stop_gradient(updates))).astype(dtype)
            gamma = jnp.where(state.count > 0, gamma, jnp.minimum(1.0, 1.0 / norm))
        else:
            gamma = jnp.ones([], dtype)
        direction = _two_loop(updates, s_mem, y_mem, rhos, gamma, memory_idx)
        # The reference point of the next pair: the newest finite one. Until a
        # finite point is seen, `count` stays 0 (the first-step scaling applies).
        point_ok = _tree.all_finite((params, updates))
        ref_params = _tree.select(
            point_ok, _tree.cast_like(params, state.params), state.params
        )
        ref_updates = _tree.select(
            point_ok, _tree.cast_like(updates, state.updates), state.updates
        )
        advance = point_ok | (state.count > 0)
        count = _numerics.safe_int32_increment(state.count)
        return direction, ScaleByLBFGSState(
            count=jnp.where(advance, count, state.count),
            params=ref_params,
            updates=ref_updates,
            diff_params_memory=s_mem,
            diff_updates_memory=y_mem,
            weights_memory=rhos,
        )

    return GradientTransformation(init, update)
