# SPDX-License-Identifier: Apache-2.0
"""Elementwise regression losses and the cosine similarity (`optax.losses` names)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx._validate import _fail, check_range


def _floating(fn: str, name: str, value: ArrayLike) -> jax.Array:
    """Returns `value` as an array; a non-floating dtype raises TypeError."""
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise _fail(fn, name, arr.dtype, "a floating array", TypeError)
    return arr


def _difference(fn: str, predictions: ArrayLike, targets: ArrayLike | None):
    """Returns `predictions - targets` (targets default to zeros)."""
    p = _floating(fn, "predictions", predictions)
    if targets is None:
        return p
    t = jnp.asarray(targets)
    # Integer or bool targets take the predictions' dtype (also under strict
    # promotion); floating targets promote as jnp arithmetic does, like optax.
    if not jnp.issubdtype(t.dtype, jnp.inexact):
        t = t.astype(p.dtype)
    p, t = jnp.broadcast_arrays(p, t)
    return p - t


def squared_error(
    predictions: ArrayLike, targets: ArrayLike | None = None
) -> jax.Array:
    """Returns the elementwise squared error `(predictions - targets) ** 2`.

    The mean squared error is `squared_error(p, t).mean()`. `targets` broadcast
    against `predictions` (optax 0.2.8 raises on unequal shapes here).

    Args:
        predictions: Floating array of any shape.
        targets: Array broadcastable to `predictions`; `None` means zeros.

    Returns:
        The squared differences, in the broadcast shape.

    Raises:
        TypeError: If `predictions` is not floating.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.losses.squared_error(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0]))
        Array([1., 4.], dtype=float32)
    """
    d = _difference("losses.squared_error", predictions, targets)
    return d * d


def l2_loss(predictions: ArrayLike, targets: ArrayLike | None = None) -> jax.Array:
    """Returns half the squared error, `0.5 * (predictions - targets) ** 2`.

    Args:
        predictions: Floating array of any shape.
        targets: Array broadcastable to `predictions`; `None` means zeros.

    Returns:
        The halved squared differences, in the broadcast shape.

    Raises:
        TypeError: If `predictions` is not floating.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.losses.l2_loss(jnp.array([1.0, 3.0]))
        Array([0.5, 4.5], dtype=float32)
    """
    d = _difference("losses.l2_loss", predictions, targets)
    return 0.5 * (d * d)


def huber_loss(
    predictions: ArrayLike, targets: ArrayLike | None = None, *, delta: ArrayLike = 1.0
) -> jax.Array:
    """Returns the Huber loss: quadratic within `delta` of the target, linear outside.

    With `e = |predictions - targets|` it is `0.5 * e**2` for `e <= delta` and
    `delta * (e - 0.5 * delta)` beyond, so its gradient is the `l2_loss` gradient
    clipped to `[-delta, delta]`.

    Args:
        predictions: Floating array of any shape.
        targets: Array broadcastable to `predictions`; `None` means zeros.
        delta: Positive width of the quadratic zone; a traced array is allowed.

    Returns:
        The elementwise Huber losses, in the broadcast shape.

    Raises:
        TypeError: If `predictions` is not floating.
        HyperparameterError: If a concrete `delta` is not a finite value > 0.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.losses.huber_loss(jnp.array([0.5, 3.0]))
        Array([0.125, 2.5  ], dtype=float32)

    References:
        Huber, Robust Estimation of a Location Parameter, 1964.
    """
    check_range("losses.huber_loss", "delta", delta, 0.0, low_open=True)
    e = jnp.abs(_difference("losses.huber_loss", predictions, targets))
    quadratic = jnp.minimum(e, delta)
    return 0.5 * quadratic * quadratic + delta * (e - quadratic)


def log_cosh(predictions: ArrayLike, targets: ArrayLike | None = None) -> jax.Array:
    """Returns `log(cosh(predictions - targets))`, a smooth Huber-like loss.

    It is about `x**2 / 2` near zero and `|x| - log(2)` far from it. gradtx keeps
    full relative precision for small `|x|` (optax 0.2.8 returns 0 below about
    3e-4 in float32); elsewhere the two agree to rounding.

    Args:
        predictions: Floating array of any shape.
        targets: Array broadcastable to `predictions`; `None` means zeros.

    Returns:
        The elementwise log-cosh losses, in the broadcast shape.

    Raises:
        TypeError: If `predictions` is not floating.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.losses.log_cosh(jnp.array([0.0, 100.0]))
        Array([ 0.      , 99.306854], dtype=float32)

    References:
        Chen et al., Log Hyperbolic Cosine Loss Improves Variational
        Auto-Encoder, 2019. https://openreview.net/forum?id=rkglvsC9Ym
    """
    x = _difference("losses.log_cosh", predictions, targets)
    a = jnp.abs(x)
    small = a < 1.0
    # cosh(x) - 1 = 2 sinh(x/2)**2 avoids the cancellation of log(2) for small x;
    # the large branch never overflows. Each branch sees a safe input, so both
    # the values and the gradients of the unused branch stay finite.
    half = 0.5 * jnp.where(small, x, 0.0)
    near = jnp.log1p(2.0 * jnp.sinh(half) ** 2)
    big = jnp.where(small, 1.0, a)
    far = big + jnp.log1p(jnp.exp(-2.0 * big)) - math.log(2.0)
    return jnp.where(small, near, far).astype(x.dtype)


def cosine_similarity(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    epsilon: ArrayLike = 0.0,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Returns the cosine of the angle between `predictions` and `targets` along `axis`.

    Each vector is divided by `sqrt(max(sum(x**2), epsilon))`, so `epsilon` bounds
    the squared norm from below (optax 0.2.8's numbers; its docstring says "norm").
    Elements where `where` is False take no part in the norms or the dot product.

    Args:
        predictions: Floating vectors, shape `[..., dim]`.
        targets: Floating vectors broadcastable to `predictions`.
        epsilon: Non-negative floor of each squared norm; 0 gives NaN for a zero
            vector, as optax does.
        axis: Axis or axes that hold the vector; `None` means all of them.
        where: Optional bool mask broadcastable to the inputs.

    Returns:
        The similarities, with `axis` reduced away.

    Raises:
        TypeError: If an input is not floating.
        HyperparameterError: If a concrete `epsilon` is negative or not finite.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.cosine_similarity(jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0]))
        Array(0.70710677, dtype=float32)
    """
    fn = "losses.cosine_similarity"
    check_range(fn, "epsilon", epsilon, 0.0)
    p = _floating(fn, "predictions", predictions)
    t = _floating(fn, "targets", targets)
    p, t = jnp.broadcast_arrays(p, t)
    if where is not None:
        where = jnp.broadcast_to(jnp.asarray(where, dtype=bool), p.shape)

    def unit(x: jax.Array) -> jax.Array:
        sq = jnp.sum(x * x, axis=axis, where=where, keepdims=True)
        return x / jnp.sqrt(jnp.maximum(sq, epsilon))

    return jnp.sum(unit(p) * unit(t), axis=axis, where=where)


def cosine_distance(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    epsilon: ArrayLike = 0.0,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Returns `1 - cosine_similarity(predictions, targets, ...)`.

    Args:
        predictions: Floating vectors, shape `[..., dim]`.
        targets: Floating vectors broadcastable to `predictions`.
        epsilon: See `cosine_similarity`.
        axis: See `cosine_similarity`.
        where: See `cosine_similarity`.

    Returns:
        The distances in `[0, 2]`, with `axis` reduced away.

    Raises:
        TypeError: If an input is not floating.
        HyperparameterError: If a concrete `epsilon` is negative or not finite.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.cosine_distance(jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0]))
        Array(1., dtype=float32)
    """
    try:
        sim = cosine_similarity(
            predictions, targets, epsilon=epsilon, axis=axis, where=where
        )
    except (TypeError, ValueError) as e:
        detail = vars(e).get("gradtx_detail")
        if detail is None:
            raise
        _, name, value, allowed = detail
        raise _fail("losses.cosine_distance", name, value, allowed, type(e)) from e
    return 1.0 - sim
