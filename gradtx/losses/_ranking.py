# SPDX-License-Identifier: Apache-2.0
"""Listwise ranking and contrastive losses (`optax.losses`)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _validate
from gradtx.losses import _checks_classification as _checks
from gradtx.losses._classification import cross_entropy, log_softmax


def _mean_or_zero(loss: jax.Array, valid: jax.Array | None) -> jax.Array:
    """`jnp.mean(loss, where=valid)`, but 0 (with zero gradient) if nothing is valid."""
    if valid is None:
        valid = jnp.ones(loss.shape, bool)
    count = jnp.sum(valid).astype(loss.dtype)
    total = jnp.sum(loss, where=valid)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0)


def ranking_softmax_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: Callable[..., ArrayLike] | None = jnp.mean,
) -> jax.Array:
    """Listwise softmax loss `-sum_i y_i log softmax(s)_i` of each list, then reduced.

    Items outside `where` leave both the softmax and the sum; lists with no valid
    item are left out of the reduction, and a `jnp.mean` over no list gives 0. An
    unmasked `-inf` score with label 0 adds 0 (optax: NaN).

    Args:
        logits: Floating item scores, `[..., list_size]`.
        labels: Relevance labels, `[..., list_size]`; cast to `logits`' dtype.
        where: Optional mask of valid items, `[..., list_size]`.
        weights: Optional per-item weights multiplying the labels.
        reduce_fn: Called as `reduce_fn(losses, where=valid_lists)` (e.g.
            `jnp.sum`, `jnp.mean`); `None` returns the per-list losses, 0 for
            lists with no valid item.

    Returns:
        The reduced loss, or per-list losses of shape `[...]`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import ranking_softmax_loss
        >>> ranking_softmax_loss(jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]))
        Array(0.6931472, dtype=float32)
    """
    logits = _checks.floating("ranking_softmax_loss", "logits", logits)
    labels = jnp.asarray(labels).astype(logits.dtype)
    valid = None
    if where is not None:
        where = jnp.asarray(where)
        labels = jnp.where(where, labels, jnp.zeros((), labels.dtype))
        valid = jnp.any(where, axis=-1)
    if weights is not None:
        labels = labels * jnp.asarray(weights)
    loss = cross_entropy(log_softmax(logits, -1, where), labels, -1, where)
    if reduce_fn is None:
        return loss if valid is None else jnp.where(valid, loss, 0)
    if reduce_fn is jnp.mean:
        return _mean_or_zero(loss, valid)
    return jnp.asarray(reduce_fn(loss, where=valid))


def ntxent(
    embeddings: ArrayLike, labels: ArrayLike, temperature: ArrayLike = 0.07
) -> jax.Array:
    """Normalized temperature-scaled cross-entropy (NT-Xent, SimCLR's loss).

    With `s_ij` the cosine similarity over `temperature` (norms floored at
    `sqrt(eps)` of the dtype), each positive pair `(i, j)` (same label, `i != j`)
    costs `-log(exp(s_ij) / (exp(s_ij) + sum_{k: label differs} exp(s_ik)))`; the
    result is the mean over positive pairs. With no positive pair it is 0 with a
    zero gradient (optax: NaN).

    Args:
        embeddings: Floating `[batch, features]` embeddings.
        labels: `[batch]` group ids; equal ids mark positive pairs.
        temperature: Positive temperature.

    Returns:
        The scalar loss.

    Raises:
        ValueError: If `labels` and `embeddings` have different batch sizes.
        HyperparameterError: If a concrete `temperature` is not positive.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import ntxent
        >>> emb = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
        >>> f"{ntxent(emb, jnp.array([0, 0, 1]), temperature=1.0):.4f}"
        '0.3285'

    References:
        Chen et al., 2020: https://arxiv.org/abs/2002.05709
    """
    _validate.check_range(
        "losses.ntxent", "temperature", temperature, 0.0, low_open=True
    )
    emb = _checks.floating("ntxent", "embeddings", embeddings)
    labels = jnp.asarray(labels)
    if labels.shape[:1] != emb.shape[:1]:
        raise ValueError(
            "gradtx.losses.ntxent: labels and embeddings must have the same "
            f"leading dimension, got {labels.shape[:1]} and {emb.shape[:1]}"
        )
    eps = jnp.finfo(emb.dtype).eps
    norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(emb), -1, keepdims=True), eps))
    unit = emb / norm
    sim = jnp.sum(unit[None, :, :] * unit[:, None, :], axis=-1) / temperature
    same = labels[:, None] == labels[None, :]
    positive = same & ~jnp.eye(labels.shape[0], dtype=bool)
    lse_negative = jax.nn.logsumexp(sim, axis=1, where=~same, keepdims=True)
    pair_loss = jnp.logaddexp(sim, lse_negative) - sim
    total = jnp.sum(pair_loss, where=positive)
    count = jnp.sum(positive).astype(total.dtype)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0)
