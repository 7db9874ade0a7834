# SPDX-License-Identifier: Apache-2.0
"""Sigmoid, margin, perceptron, sparsemax and Fenchel-Young losses (`optax.losses`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _validate
from gradtx.losses import _checks_classification as _checks
from gradtx.projections import _unit_simplex


def _log_sigmoid(x: jax.Array) -> jax.Array:
    """`log(1 / (1 + exp(-x)))` without overflow: `-log(1 + exp(-x))`."""
    return -jnp.logaddexp(jnp.zeros((), x.dtype), -x)


def _log_or_neginf(v: jax.Array) -> jax.Array:
    """`log(v)` with `log 0 = -inf` and a zero (not NaN) derivative at 0."""
    positive = v > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, v, 1)), -jnp.inf)


def sigmoid_binary_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Element-wise binary cross-entropy of `sigmoid(logits)` against `labels`.

    `-y log sigmoid(x) - (1 - y) log sigmoid(-x)`, with log-sigmoid computed stably.

    Args:
        logits: Floating log-odds of the positive class.
        labels: Labels in {0, 1} or target probabilities, broadcastable to
            `logits`; cast to `logits`' dtype.

    Returns:
        The loss per element, of the broadcast shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import sigmoid_binary_cross_entropy
        >>> sigmoid_binary_cross_entropy(jnp.array([0.0, 100.0]), jnp.array([1, 0]))
        Array([  0.6931472, 100.       ], dtype=float32)
    """
    logits = _checks.floating("sigmoid_binary_cross_entropy", "logits", logits)
    labels = jnp.asarray(labels).astype(logits.dtype)
    return -labels * _log_sigmoid(logits) - (1.0 - labels) * _log_sigmoid(-logits)


def sigmoid_focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: ArrayLike | None = None,
    gamma: ArrayLike = 2.0,
) -> jax.Array:
    """Focal loss: binary cross-entropy scaled by `(1 - p_t) ** gamma`.

    `1 - p_t = (1 - y) p + y (1 - p)` is formed in log space, so the weight is
    accurate for any `gamma` and extreme logits; `alpha` weights positives by
    `alpha` and negatives by `1 - alpha`.

    Args:
        logits: Floating log-odds of the positive class.
        labels: Labels in {0, 1} or soft targets in [0, 1], broadcastable to
            `logits`.
        alpha: Optional positive-class weight in [0, 1]; `None` weights nothing.
        gamma: Focusing exponent, >= 0 (0 gives binary cross-entropy).

    Returns:
        The loss per element.

    Raises:
        HyperparameterError: If a concrete `alpha` or `gamma` is out of range.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import sigmoid_focal_loss
        >>> sigmoid_focal_loss(jnp.array([0.0]), jnp.array([1.0]), gamma=1.0)
        Array([0.3465736], dtype=float32)

    References:
        Lin et al., 2017: https://arxiv.org/abs/1708.02002
    """
    fn = "losses.sigmoid_focal_loss"
    if alpha is not None:
        _validate.check_range(fn, "alpha", alpha, 0.0, 1.0)
    _validate.check_range(fn, "gamma", gamma, 0.0)
    logits = _checks.floating("sigmoid_focal_loss", "logits", logits)
    labels = jnp.asarray(labels).astype(logits.dtype)
    log_p, log_q = _log_sigmoid(logits), _log_sigmoid(-logits)
    ce = -labels * log_p - (1.0 - labels) * log_q
    log_one_minus_pt = jnp.logaddexp(
        _log_or_neginf(1.0 - labels) + log_p, _log_or_neginf(labels) + log_q
    )
    loss = ce * jnp.exp(gamma * log_one_minus_pt)
    if alpha is None:
        return loss
    return (alpha * labels + (1.0 - alpha) * (1.0 - labels)) * loss


def hinge_loss(predictor_outputs: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Binary hinge loss `max(0, 1 - y * f)` for targets `y` in {-1, 1}.

    Args:
        predictor_outputs: Decision-function values `f`.
        targets: Targets in {-1, 1}, broadcastable to `predictor_outputs`.

    Returns:
        The loss per element.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import hinge_loss
        >>> hinge_loss(jnp.array([0.5, 2.0]), jnp.array([1.0, -1.0]))
        Array([0.5, 3. ], dtype=float32)
    """
    margin = jnp.asarray(predictor_outputs) * jnp.asarray(targets)
    return jnp.maximum(0, 1 - margin)


def perceptron_loss(predictor_outputs: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Binary perceptron loss `max(0, -y * f)` for targets `y` in {-1, 1}.

    Args:
        predictor_outputs: Model scores `f`.
        targets: Targets in {-1, 1}, of the same shape.

    Returns:
        The loss per element.

    Raises:
        ValueError: If the two shapes differ.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import perceptron_loss
        >>> perceptron_loss(jnp.array([0.5, 2.0]), jnp.array([1.0, -1.0]))
        Array([0., 2.], dtype=float32)
    """
    outputs, targets = jnp.asarray(predictor_outputs), jnp.asarray(targets)
    if outputs.shape != targets.shape:
        raise ValueError(
            "gradtx.losses.perceptron_loss: predictor_outputs and targets must "
            f"have the same shape, got {outputs.shape} and {targets.shape}"
        )
    return jnp.maximum(0, -outputs * targets)


def _one_hot(fn: str, scores: jax.Array, labels: ArrayLike) -> jax.Array:
    """One-hot rows of `labels` over the last axis of `scores`, in its dtype."""
    n = scores.shape[-1]
    _checks.class_labels(fn, labels, n)
    labels = jnp.asarray(labels)
    classes = jnp.arange(n, dtype=labels.dtype).reshape((1,) * labels.ndim + (n,))
    return (labels[..., None] == classes).astype(scores.dtype)


def multiclass_hinge_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Multiclass hinge loss `max_j (s_j + [j != y]) - s_y`.

    Args:
        scores: Model scores, `[..., num_classes]`.
        labels: Integer classes in `[0, num_classes)`, of shape `[...]`.

    Returns:
        The loss per example, of shape `[...]`.

    Raises:
        HyperparameterError: If concrete labels are out of range.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import multiclass_hinge_loss
        >>> multiclass_hinge_loss(jnp.array([[2.0, 1.5, 0.0]]), jnp.array([0]))
        Array([0.5], dtype=float32)
    """
    scores = jnp.asarray(scores)
    one_hot = _one_hot("multiclass_hinge_loss", scores, labels)
    return jnp.max(scores + 1.0 - one_hot, axis=-1) - jnp.sum(scores * one_hot, -1)


def multiclass_perceptron_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Multiclass perceptron loss `max_j s_j - s_y`.

    Args:
        scores: Model scores, `[..., num_classes]`.
        labels: Integer classes in `[0, num_classes)`, of shape `[...]`.

    Returns:
        The loss per example, of shape `[...]`.

    Raises:
        HyperparameterError: If concrete labels are out of range.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import multiclass_perceptron_loss
        >>> multiclass_perceptron_loss(jnp.array([[2.0, 1.5, 0.0]]), jnp.array([1]))
        Array([0.5], dtype=float32)

    References:
        Collins, 2002: https://aclanthology.org/W02-1001/
    """
    scores = jnp.asarray(scores)
    one_hot = _one_hot("multiclass_perceptron_loss", scores, labels)
    return jnp.max(scores, axis=-1) - jnp.sum(scores * one_hot, axis=-1)


def _sparse_plus(x: jax.Array) -> jax.Array:
    """0 below -1, `(x + 1)^2 / 4` on [-1, 1], `x` above 1 (a smoothed ReLU)."""
    inner = jnp.square(x + 1) / 4
    return jnp.where(x <= -1, jnp.zeros_like(x), jnp.where(x >= 1, x, inner))


def sparsemax_loss(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Binary sparsemax loss: `sparse_plus(-x)` for label 1, `sparse_plus(x)` for 0.

    Zero exactly when `sparse_sigmoid(logits) == labels`.

    Args:
        logits: Model scores.
        labels: Labels in {0, 1} (any nonzero counts as 1).

    Returns:
        The loss per element.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import sparsemax_loss
        >>> sparsemax_loss(jnp.array([-2.0, 0.5, 3.0]), jnp.array([1, 0, 1]))
        Array([2.    , 0.5625, 0.    ], dtype=float32)

    References:
        Blondel et al., 2020, section 4.4: https://arxiv.org/abs/1901.02324
    """
    logits = jnp.asarray(logits)
    positive = jnp.asarray(labels) != 0
    return _sparse_plus(jnp.where(positive, -logits, logits))


def multiclass_sparsemax_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Multiclass sparsemax loss `<p, s> - s_y + (1 - ||p||^2) / 2`, `p = sparsemax(s)`.

    `sparsemax` is the Euclidean projection of the scores onto the simplex; the
    loss is zero when `p` is the one-hot vector of the label. Its gradient with
    respect to the scores is `p - one_hot(y)`.

    Args:
        scores: Model scores, `[..., num_classes]`.
        labels: Integer classes in `[0, num_classes)`, of shape `[...]`.

    Returns:
        The loss per example, of shape `[...]`.

    Raises:
        HyperparameterError: If concrete labels are out of range.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import multiclass_sparsemax_loss
        >>> multiclass_sparsemax_loss(jnp.array([[1.0, 0.0]]), jnp.array([1]))
        Array([1.], dtype=float32)

    References:
        Martins and Astudillo, 2016: https://arxiv.org/abs/1602.02068
    """
    scores = jnp.asarray(scores)
    one_hot = _one_hot("multiclass_sparsemax_loss", scores, labels)
    proba = jnp.vectorize(_unit_simplex, signature="(n)->(n)")(scores)
    gap = scores - jnp.sum(scores * one_hot, axis=-1, keepdims=True)
    # Off the support `p = 0`; zeroing those terms keeps `0 * inf` out of the sum.
    linear = jnp.sum(jnp.where(proba > 0, proba * gap, 0), axis=-1)
    return linear + 0.5 * (1 - jnp.sum(jnp.square(proba), axis=-1))


def make_fenchel_young_loss(
    max_fun: Callable[..., ArrayLike],
) -> Callable[..., jax.Array]:
    """Builds the Fenchel-Young loss `max_fun(s) - <targets, s>` of a max function.

    The loss works on the last axis with any leading batch axes; extra positional
    and keyword arguments of the loss go to `max_fun` unchanged (optax's own loss
    rejects them). With `max_fun = logsumexp` it is softmax cross-entropy.

    Args:
        max_fun: A convex function of a 1-D score vector returning a scalar.

    Returns:
        `fenchel_young_loss(scores, targets, *args, **kwargs)`, of shape `[...]`.

    Raises:
        TypeError: If `max_fun` is not callable.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradtx.losses import make_fenchel_young_loss
        >>> loss = make_fenchel_young_loss(jax.nn.logsumexp)
        >>> loss(jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]))
        Array(0.6931472, dtype=float32)

    References:
        Blondel et al., 2020: https://arxiv.org/abs/1901.02324
    """
    if not callable(max_fun):
        raise TypeError(
            "gradtx.losses.make_fenchel_young_loss: max_fun must be callable, "
            f"got {max_fun!r}"
        )

    def fenchel_young_loss(
        scores: ArrayLike, targets: ArrayLike, *args: Any, **kwargs: Any
    ) -> jax.Array:
        scores, targets = jnp.asarray(scores), jnp.asarray(targets)
        rows = scores.reshape(-1, scores.shape[-1])
        maxes = jax.vmap(lambda s: jnp.asarray(max_fun(s, *args, **kwargs)))(rows)
        return maxes.reshape(scores.shape[:-1]) - jnp.sum(targets * scores, axis=-1)

    return fenchel_young_loss
