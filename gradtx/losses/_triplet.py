# SPDX-License-Identifier: Apache-2.0
"""The triplet margin loss (`optax.losses.triplet_margin_loss`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _validate
from gradtx.losses import _checks_classification as _checks


def triplet_margin_loss(
    anchors: ArrayLike,
    positives: ArrayLike,
    negatives: ArrayLike,
    axis: int = -1,
    norm_degree: ArrayLike = 2,
    margin: ArrayLike = 1.0,
    eps: ArrayLike = 1e-6,
) -> jax.Array:
    """Triplet loss `max(d(a, p) - d(a, n) + margin, 0)` of each triplet.

    `d(x, y) = (sum |x - y|**norm_degree + eps)**(1 / norm_degree)` along `axis`:
    the `norm_degree`-norm of the difference, with `eps` inside the root so that
    the gradient stays finite when two embeddings coincide. For even degrees (the
    default 2) this is optax's formula; optax leaves out the absolute value, so an
    odd degree gives it a signed sum (1) or NaN (3).

    Args:
        anchors: Floating anchor embeddings, e.g. `[batch, features]`.
        positives: Embeddings that should be close to the anchors, same shape.
        negatives: Embeddings that should be far from the anchors, same shape.
        axis: The feature axis the distances sum over.
        norm_degree: The degree p of the distance's p-norm, > 0.
        margin: How much closer than the negative the positive must be, finite.
        eps: Added to the sum of powers before the root, >= 0.

    Returns:
        The loss of each triplet: the inputs' shape without `axis`.

    Raises:
        TypeError: If an embedding's dtype is not floating.
        HyperparameterError: If a concrete `norm_degree`, `margin` or `eps` is out
            of range.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import triplet_margin_loss
        >>> a, p, n = jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.array([[3.0, 4.0]])
        >>> triplet_margin_loss(a, p, n, margin=6.0, eps=0.0)
        Array([1.], dtype=float32)

    References:
        Balntas et al., 2016: https://bmva-archive.org.uk/bmvc/2016/papers/paper119/
    """
    fn = "triplet_margin_loss"
    _validate.check_range(fn, "norm_degree", norm_degree, 0.0, low_open=True)
    _validate.check_range(fn, "margin", margin)
    _validate.check_nonnegative(fn, "eps", eps)
    a = _checks.floating(fn, "anchors", anchors)
    p = _checks.floating(fn, "positives", positives)
    n = _checks.floating(fn, "negatives", negatives)
    (axis,) = _checks.axes(axis, a.ndim, fn)

    def distance(x: jax.Array, y: jax.Array) -> jax.Array:
        powers = jnp.abs(x - y) ** jnp.asarray(norm_degree, x.dtype)
        total = jnp.sum(powers, axis=axis) + jnp.asarray(eps, x.dtype)
        return total ** (1 / jnp.asarray(norm_degree, x.dtype))

    return jnp.maximum(distance(a, p) - distance(a, n) + margin, 0)
