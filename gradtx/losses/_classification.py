# SPDX-License-Identifier: Apache-2.0
"""Softmax cross-entropy losses, PolyLoss and label smoothing (`optax.losses`).

Every loss here follows the convention `0 * log 0 = 0`: a class with label 0 and
logit `-inf` adds nothing, so masking classes with `-inf` logits gives a finite loss
and finite gradients (optax's `softmax_cross_entropy` returns NaN there).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _validate
from gradtx.losses import _checks_classification as _checks

Axis = int | tuple[int, ...] | None


def _expand_where(where: ArrayLike | None, ndim: int, axis: Axis) -> jax.Array | None:
    """A per-example `where` gains the class axes, so it broadcasts to the logits."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.ndim != ndim and axis is not None:
        where = jnp.expand_dims(where, axis)
    return where


def log_softmax(
    logits: jax.Array, axis: Axis, where: jax.Array | None = None
) -> jax.Array:
    """`logits - logsumexp(logits)` over `axis`, the sum restricted to `where`.

    An example with nothing in `where` gets normalizer 0 instead of `-inf`, so its
    (unused) log-probabilities stay finite and cannot leak NaN into gradients.
    """
    lse = jax.nn.logsumexp(logits, axis=axis, where=where, keepdims=True)
    if where is not None:
        some = jnp.any(where, axis=axis, keepdims=True)
        lse = jnp.where(some, lse, jnp.zeros((), lse.dtype))
    return logits - lse


def cross_entropy(
    log_probs: jax.Array, labels: jax.Array, axis: Axis, where: jax.Array | None
) -> jax.Array:
    """`-sum(labels * log_probs)` with `0 * log 0 = 0`.

    A `-inf` log-probability with label 0 is replaced by 0 before the product, so
    neither the value nor any derivative (forward or reverse mode) meets `0 * inf`.
    """
    zero_term = jnp.isneginf(log_probs) & (labels == 0)
    safe = jnp.where(zero_term, jnp.zeros((), log_probs.dtype), log_probs)
    return -jnp.sum(labels * safe, axis=axis, where=where)


def softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Cross-entropy between `labels` and `softmax(logits)` along `axis`.

    `-sum_j labels_j * log_softmax(logits)_j`, per example. Classes with label 0
    and logit `-inf` add 0 (optax: NaN; its gradient is finite in both).

    Args:
        logits: Unnormalized log-probabilities, floating, `[..., num_classes]`.
        labels: Class probabilities (e.g. one-hot), broadcastable to `logits`.
        axis: Class axis or axes.
        where: Mask of included elements, of `logits`' shape or the batch shape;
            excluded classes are left out of the normalizer and the sum.

    Returns:
        The loss per example, of the batch shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import softmax_cross_entropy
        >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
        >>> labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> [f"{v:.4f}" for v in softmax_cross_entropy(logits, labels)]
        ['0.2761', '2.9518']
    """
    logits = _checks.floating("softmax_cross_entropy", "logits", logits)
    labels = jnp.asarray(labels)
    where = _expand_where(where, logits.ndim, axis)
    return cross_entropy(log_softmax(logits, axis, where), labels, axis, where)


def safe_softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Softmax cross-entropy over the last axis with `0 * log 0 = 0`.

    In gradtx this is `softmax_cross_entropy(logits, labels)`: both treat a label 0
    at a `-inf` logit as 0, and both give finite forward-mode derivatives there.

    Args:
        logits: Unnormalized log-probabilities, floating, `[..., num_classes]`.
        labels: Class probabilities, broadcastable to `logits`.

    Returns:
        The loss per example, of shape `[...]`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import safe_softmax_cross_entropy
        >>> safe_softmax_cross_entropy(
        ...     jnp.array([0.0, -jnp.inf, 0.0]), jnp.array([1.0, 0.0, 0.0]))
        Array(0.6931472, dtype=float32)
    """
    logits = _checks.floating("safe_softmax_cross_entropy", "logits", logits)
    labels = jnp.asarray(labels)
    return cross_entropy(log_softmax(logits, -1), labels, -1, None)


def _classes_last(x: jax.Array, class_axes: tuple[int, ...]) -> jax.Array:
    """Moves `class_axes` to the end and flattens them into one axis."""
    batch = tuple(a for a in range(x.ndim) if a not in class_axes)
    x = jnp.transpose(x, batch + class_axes)
    return x.reshape((*x.shape[: len(batch)], -1))


def softmax_cross_entropy_with_integer_labels(
    logits: ArrayLike,
    labels: ArrayLike,
    axis: int | tuple[int, ...] = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Softmax cross-entropy with integer class labels: `logsumexp(x) - x[label]`.

    With a tuple `axis`, a label is a flat (row-major) index into the class axes.

    Args:
        logits: Unnormalized log-probabilities, floating.
        labels: Integer classes, of the batch shape, in `[0, num_classes)`.
        axis: Class axis or axes.
        where: Mask of included elements, of `logits`' shape or the batch shape;
            an example with no included class gets loss 0.

    Returns:
        The loss per example, of the batch shape.

    Raises:
        TypeError: If `logits` are not floating or `labels` not integer.
        HyperparameterError: If concrete labels of included examples are out of
            range (traced ones are not checked: out of range gives NaN, as optax).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import softmax_cross_entropy_with_integer_labels
        >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
        >>> loss = softmax_cross_entropy_with_integer_labels(logits, jnp.array([0, 1]))
        >>> [f"{v:.4f}" for v in loss]
        ['0.2761', '2.9518']
    """
    fn = "softmax_cross_entropy_with_integer_labels"
    raw_where = where
    logits = _checks.floating(fn, "logits", logits)
    labels_arr = _checks.integer(fn, "labels", labels)
    class_axes = _checks.axes(axis, logits.ndim, fn)
    n = _checks.size_of(logits.shape, class_axes)
    if raw_where is None:
        _checks.class_labels(fn, labels, n)
    elif (rows := _checks.row_mask(raw_where, logits.ndim, class_axes)) is not None:
        _checks.class_labels(fn, labels, n, rows)  # only the included examples
    where = _expand_where(where, logits.ndim, axis)
    flat = _classes_last(logits, class_axes)
    flat_where = None if where is None else _classes_last(where, class_axes)
    if flat_where is not None:
        flat_where = jnp.broadcast_to(flat_where, flat.shape)
    picked = jnp.take_along_axis(flat, labels_arr[..., None], axis=-1)[..., 0]
    lse = jax.nn.logsumexp(flat, axis=-1, where=flat_where)
    out = lse - picked
    if flat_where is not None:
        out = jnp.where(jnp.any(flat_where, axis=-1), out, jnp.zeros((), out.dtype))
    return out


def poly_loss_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    epsilon: ArrayLike = 2.0,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Poly-1 loss: cross-entropy plus `epsilon * sum(labels * (1 - p))`.

    `p = softmax(logits)`; for one-hot labels the extra term is `epsilon * (1 - p_t)`.

    Args:
        logits: Unnormalized log-probabilities, floating, `[..., num_classes]`.
        labels: Floating class probabilities, broadcastable to `logits`.
        epsilon: Weight of the first polynomial term (2 for ImageNet, -1 for
            detection in the paper); any finite value.
        axis: Class axis or axes.
        where: Mask of included elements, of `logits`' shape.

    Returns:
        The loss per example.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import poly_loss_cross_entropy
        >>> poly_loss_cross_entropy(jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]))
        Array(1.6931472, dtype=float32)

    References:
        Leng et al., 2022: https://arxiv.org/abs/2204.12511
    """
    fn = "poly_loss_cross_entropy"
    _validate.check_range(f"losses.{fn}", "epsilon", epsilon)
    logits = _checks.floating(fn, "logits", logits)
    labels = _checks.floating(fn, "labels", labels)
    where = None if where is None else jnp.asarray(where)
    log_probs = log_softmax(logits, axis, where)
    one_minus_pt = jnp.sum(labels * (1 - jnp.exp(log_probs)), axis=axis, where=where)
    return cross_entropy(log_probs, labels, axis, where) + epsilon * one_minus_pt


def smooth_labels(
    labels: ArrayLike,
    alpha: ArrayLike,
    *,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Label smoothing: `(1 - alpha) * labels + alpha / num_classes`.

    With `where`, `num_classes` counts the included classes of each example (the
    excluded ones still get the shift; mask them in the loss).

    Args:
        labels: Floating one-hot labels.
        alpha: Smoothing factor in [0, 1].
        axis: Class axis or axes.
        where: Mask of included classes, of `labels`' shape.

    Returns:
        The smoothed labels, of `labels`' shape.

    Raises:
        HyperparameterError: If a concrete `alpha` is outside [0, 1].

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import smooth_labels
        >>> smooth_labels(jnp.array([0.0, 1.0]), 0.5)
        Array([0.25, 0.75], dtype=float32)

    References:
        Muller et al., 2019: https://arxiv.org/abs/1906.02629
    """
    _validate.check_range("losses.smooth_labels", "alpha", alpha, 0.0, 1.0)
    labels = _checks.floating("smooth_labels", "labels", labels)
    if where is None:
        class_axes = _checks.axes(axis, labels.ndim, "smooth_labels")
        num = _checks.size_of(labels.shape, class_axes)
        return (1.0 - alpha) * labels + alpha / num
    num = jnp.sum(jnp.asarray(where), axis=axis, keepdims=True)
    return (1.0 - alpha) * labels + alpha / num.astype(labels.dtype)
