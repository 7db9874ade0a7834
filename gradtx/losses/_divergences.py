# SPDX-License-Identifier: Apache-2.0
"""Kullback-Leibler divergences (`optax.losses`).

A target probability of exactly 0 contributes 0 whatever the prediction (the
convention `0 log(0 / q) = 0`), with finite gradients; optax returns NaN when such a
target meets a `-inf` log-prediction, or when log-targets are `-inf`.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx.losses import _checks_classification as _checks

Axis = int | tuple[int, ...] | None


def _where(where: ArrayLike | None) -> jax.Array | None:
    return None if where is None else jnp.asarray(where)


def kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """KL divergence `sum(t * (log t - log q))` of predictions `q` from targets `t`.

    Args:
        log_predictions: Floating log-probabilities `log q`, `[..., dim]`.
        targets: Floating probabilities `t`, broadcastable to `log_predictions`;
            zeros contribute 0.
        axis: Axis or axes summed over.
        where: Mask of included elements.

    Returns:
        The divergence per example, of shape `[...]`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import kl_divergence
        >>> kl_divergence(jnp.log(jnp.array([0.5, 0.5])), jnp.array([1.0, 0.0]))
        Array(0.6931472, dtype=float32)

    References:
        Kullback and Leibler, 1951: https://doi.org/10.1214/aoms/1177729694
    """
    log_q = _checks.floating("kl_divergence", "log_predictions", log_predictions)
    t = _checks.floating("kl_divergence", "targets", targets)
    zero = t == 0
    log_t = jnp.log(jnp.where(zero, jnp.ones((), t.dtype), t))
    safe_log_q = jnp.where(zero, jnp.zeros((), log_q.dtype), log_q)
    terms = jnp.where(zero, jnp.zeros((), t.dtype), t * (log_t - safe_log_q))
    return jnp.sum(terms, axis=axis, where=_where(where))


def kl_divergence_with_log_targets(
    log_predictions: ArrayLike,
    log_targets: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """KL divergence `sum(exp(log t) * (log t - log q))`, targets given as logs.

    Args:
        log_predictions: Floating log-probabilities `log q`, `[..., dim]`.
        log_targets: Floating log-probabilities `log t`; `-inf` entries contribute 0.
        axis: Axis or axes summed over.
        where: Mask of included elements.

    Returns:
        The divergence per example, of shape `[...]`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import kl_divergence_with_log_targets
        >>> kl_divergence_with_log_targets(
        ...     jnp.log(jnp.array([0.5, 0.5])), jnp.array([0.0, -jnp.inf]))
        Array(0.6931472, dtype=float32)
    """
    fn = "kl_divergence_with_log_targets"
    log_q = _checks.floating(fn, "log_predictions", log_predictions)
    log_t = _checks.floating(fn, "log_targets", log_targets)
    zero = jnp.isneginf(log_t)
    safe_log_t = jnp.where(zero, jnp.zeros((), log_t.dtype), log_t)
    safe_log_q = jnp.where(zero, jnp.zeros((), log_q.dtype), log_q)
    terms = jnp.exp(safe_log_t) * (safe_log_t - safe_log_q)
    terms = jnp.where(zero, jnp.zeros((), terms.dtype), terms)
    return jnp.sum(terms, axis=axis, where=_where(where))


def generalized_kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Generalized KL divergence `sum(t log(t / q) - t + q)` of unnormalized `q`, `t`.

    The Bregman divergence of `x log x - x`; equals `kl_divergence` when both sum
    to 1.

    Args:
        log_predictions: Floating log-values `log q`, `[..., dim]`.
        targets: Floating non-negative values `t`; zeros contribute `q`.
        axis: Axis or axes summed over.
        where: Mask of included elements.

    Returns:
        The divergence per example, of shape `[...]`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.losses import generalized_kl_divergence
        >>> generalized_kl_divergence(jnp.log(jnp.array([2.0])), jnp.array([1.0]))
        Array(0.30685282, dtype=float32)

    References:
        Boyd and Vandenberghe, Convex Optimization, 2004, p. 90:
        https://stanford.edu/~boyd/cvxbook/
    """
    kl = kl_divergence(log_predictions, targets, axis=axis, where=where)
    mass = jnp.exp(jnp.asarray(log_predictions)) - jnp.asarray(targets)
    return kl + jnp.sum(mass, axis=axis, where=_where(where))


def convex_kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    axis: int | tuple[int, ...] | None = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Deprecated name of `generalized_kl_divergence` (warns, as optax does).

    Args:
        log_predictions: See `generalized_kl_divergence`.
        targets: See `generalized_kl_divergence`.
        axis: See `generalized_kl_divergence`.
        where: See `generalized_kl_divergence`.

    Returns:
        `generalized_kl_divergence(log_predictions, targets, axis, where)`.
    """
    warnings.warn(
        "gradtx.losses.convex_kl_divergence is deprecated (as in optax); use "
        "generalized_kl_divergence instead.",
        DeprecationWarning,
        stacklevel=2,
    )
    return generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)
