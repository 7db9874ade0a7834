# SPDX-License-Identifier: Apache-2.0
"""Momentum-style accumulators: `trace` and `ema`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._numerics import like


class TraceState(NamedTuple):
    """State of `trace`: the momentum buffer."""

    trace: Any


class EmaState(NamedTuple):
    """State of `ema`: the step count and the (not debiased) moving average."""

    count: jax.Array
    ema: Any


def trace(
    decay: ArrayLike, nesterov: bool = False, accumulator_dtype: Any | None = None
) -> GradientTransformation:
    """Heavy-ball momentum: `t = g + decay * t`, returning `t` (or `g + decay * t`).

    Update rule:
        t_k = g_k + decay * t_{k-1};  u_k = t_k, or g_k + decay * t_k with nesterov.

    Args:
        decay: Momentum coefficient in [0, 1).
        nesterov: Use Nesterov's look-ahead form.
        accumulator_dtype: Storage dtype of the buffer; None keeps the params' dtype.

    Returns:
        A transformation with `TraceState`.

    Raises:
        HyperparameterError: If a concrete `decay` is outside [0, 1).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.trace(0.5)
        >>> u, s = tx.update(jnp.ones(1), tx.init(jnp.ones(1)))
        >>> tx.update(jnp.ones(1), s)[0]
        Array([1.5], dtype=float32)

    References:
        Sutskever et al., 2013: https://proceedings.mlr.press/v28/sutskever13.html
    """
    _validate.check_decay("trace", "decay", decay)
    accumulator_dtype = _validate.check_dtype(
        "trace", "accumulator_dtype", accumulator_dtype
    )

    def init(params):
        return TraceState(trace=_tree.zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("trace", state.trace, updates)
        d = _numerics.hparam(decay)

        def leaf(g, t):
            cd = _numerics.leaf_dtype(g, t)
            gc, dc = g.astype(cd), like(d, g.astype(cd))
            t_store, new_t = _numerics.store(gc + dc * t.astype(cd), t.dtype)
            u = gc + dc * new_t if nesterov else new_t
            return u.astype(g.dtype), t_store

        out = jax.tree.map(leaf, updates, state.trace)
        u, t = _tree.unzip(out, updates, 2)
        return u, TraceState(trace=t)

    return GradientTransformation(init, update)


def ema(
    decay: ArrayLike, debias: bool = True, accumulator_dtype: Any | None = None
) -> GradientTransformation:
    """Exponential moving average of the updates, optionally debiased.

    Update rule:
        e_k = decay * e_{k-1} + (1 - decay) * g_k
        u_k = e_k / (1 - decay**k) if debias, else e_k

    Args:
        decay: Averaging coefficient in [0, 1].
        debias: Divide by `1 - decay**k` (Adam's bias correction).
        accumulator_dtype: Storage dtype of the average; None keeps the params' dtype.

    Returns:
        A transformation with `EmaState`; the stored average is not debiased.

    Raises:
        HyperparameterError: If a concrete `decay` is outside [0, 1].

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.ema(0.9)
        >>> tx.update(jnp.ones(1), tx.init(jnp.ones(1)))[0]
        Array([1.], dtype=float32)
    """
    _validate.check_decay("ema", "decay", decay, closed=True)
    accumulator_dtype = _validate.check_dtype(
        "ema", "accumulator_dtype", accumulator_dtype
    )

    def init(params):
        return EmaState(
            count=jnp.zeros([], jnp.int32),
            ema=_tree.zeros_like(params, accumulator_dtype),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        _tree.check_structure("ema", state.ema, updates)
        d = _numerics.hparam(decay)
        count = _numerics.safe_int32_increment(state.count)
        correction = _numerics.bias_correction(d, count)

        def leaf(g, e):
            cd = _numerics.leaf_dtype(g, e)
            new_e = _numerics.moment(g.astype(cd), e.astype(cd), like(d, g.astype(cd)))
            e_store, new_e = _numerics.store(new_e, e.dtype)
            u = new_e / like(correction, new_e) if debias else new_e
            return u.astype(g.dtype), e_store

        u, e = _tree.unzip(jax.tree.map(leaf, updates, state.ema), updates, 2)
        return u, EmaState(count=count, ema=e)

    return GradientTransformation(init, update)
