# SPDX-License-Identifier: Apache-2.0
"""Soft Dice (Tversky) losses for segmentation (`optax.losses` names)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx._errors import HyperparameterError
from gradtx._validate import _fail, check_range

_REDUCTIONS = ("mean", "sum", "none")


def _probabilities(fn: str, predictions: jax.Array, apply_softmax: bool) -> jax.Array:
    """Maps logits to class probabilities; one channel means a sigmoid."""
    if apply_softmax:
        if predictions.shape[-1] == 1:
            return jax.nn.sigmoid(predictions)
        return jax.nn.softmax(predictions, axis=-1)
    if predictions.shape[-1] > 1 and not isinstance(predictions, jax.core.Tracer):
        # Checked only when concrete (optax's check fails under jit) and only for
        # two or more classes (a single channel holds P(foreground), which need
        # not sum to 1; optax 0.2.8 rejects it).
        sums = np.asarray(jnp.sum(predictions, axis=-1), dtype=np.float64)
        if sums.size and not np.allclose(sums, 1.0, rtol=1e-5, atol=1e-8):
            raise ValueError(
                f"gradtx.{fn}: with apply_softmax=False, predictions must sum to 1 "
                f"over the class axis, got sums in [{sums.min():g}, {sums.max():g}]"
            )
    return predictions


def _check(fn: str, smooth, alpha, beta, reduction) -> None:
    check_range(fn, "smooth", smooth, 0.0)
    check_range(fn, "alpha", alpha, 0.0)
    check_range(fn, "beta", beta, 0.0)
    if reduction not in _REDUCTIONS:
        raise HyperparameterError(
            f"gradtx.{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
        )


def dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    class_weights: ArrayLike | None = None,
    smooth: ArrayLike = 1.0,
    alpha: ArrayLike = 0.5,
    beta: ArrayLike = 0.5,
    apply_softmax: bool = True,
    reduction: str = "mean",
    ignore_background: bool = False,
    axis: ArrayLike | None = None,
) -> jax.Array:
    """Returns the soft Dice (Tversky) loss per example, over the last (class) axis.

    For class c, with `I = sum(p * t)`, `P = sum(p)`, `T = sum(t)` over `axis`:
    `loss_c = 1 - (I + smooth) / (I + alpha (P - I) + beta (T - I) + smooth)`;
    `alpha = beta = 0.5` is the Dice coefficient. A single channel takes a
    sigmoid instead of a softmax.

    Args:
        predictions: Logits `[..., C]` (or probabilities, see `apply_softmax`).
        targets: One-hot (or soft) targets of the same shape.
        class_weights: Optional `(C,)` weights multiplying each class's loss.
        smooth: Non-negative smoothing added to both sides of the ratio.
        alpha: Non-negative weight of false positives.
        beta: Non-negative weight of false negatives.
        apply_softmax: If False, `predictions` are probabilities already.
        reduction: `"mean"` or `"sum"` over classes, or `"none"` for `[..., C]`.
        ignore_background: If True, class 0 (and its weight) is left out.
        axis: Axes summed over; `None` means all but the first and the last.

    Returns:
        `[...]` losses (batch axes), or `[..., C]` with `reduction="none"`.

    Raises:
        HyperparameterError: If `smooth`, `alpha`, `beta` or `reduction` is bad.
        ValueError: If probabilities do not sum to 1, or shapes do not fit.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.losses.dice_loss(jnp.zeros((1, 2, 2)), jnp.eye(2)[None])
        Array([0.25], dtype=float32)

    References:
        Milletari et al., V-Net, 2016. https://arxiv.org/abs/1606.04797
    """
    fn = "losses.dice_loss"
    _check(fn, smooth, alpha, beta, reduction)
    p = jnp.asarray(predictions)
    t = jnp.asarray(targets)
    if p.ndim == 0 or p.shape != t.shape:
        raise ValueError(
            f"gradtx.{fn}: predictions and targets must share a shape with a class "
            f"axis, got {p.shape} and {t.shape}"
        )
    p = _probabilities(fn, p, apply_softmax)
    t = t.astype(p.dtype)
    if axis is None:
        axis = tuple(range(1, p.ndim - 1))
    intersection = jnp.sum(p * t, axis=axis)
    pred_sum = jnp.sum(p, axis=axis)
    target_sum = jnp.sum(t, axis=axis)
    denominator = (
        intersection
        + alpha * (pred_sum - intersection)
        + beta * (target_sum - intersection)
        + smooth
    )
    loss = 1.0 - (intersection + smooth) / denominator
    if class_weights is not None:
        weights = jnp.asarray(class_weights, loss.dtype)
        if weights.shape != (p.shape[-1],):
            raise ValueError(
                f"gradtx.{fn}: class_weights must have shape ({p.shape[-1]},), "
                f"got {weights.shape}"
            )
        loss = loss * jnp.broadcast_to(weights, loss.shape)
    if ignore_background:
        if loss.shape[-1] < 2:  # optax 0.2.8 returns a NaN mean over no class
            raise HyperparameterError(
                f"gradtx.{fn}: ignore_background must be False with a single "
                f"class, got {ignore_background!r}"
            )
        loss = loss[..., 1:]
    if reduction == "mean":
        return jnp.mean(loss, axis=-1)
    if reduction == "sum":
        return jnp.sum(loss, axis=-1)
    return loss


def binary_dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    smooth: ArrayLike = 1.0,
    apply_sigmoid: bool = True,
) -> jax.Array:
    """Returns the Dice loss of a binary mask: `dice_loss` on one sigmoid channel.

    A trailing axis of size 1 is added unless the last axis already has size 1.
    With `apply_sigmoid=False` the predictions are foreground probabilities
    (optax 0.2.8 wrongly requires them to sum to 1 and raises).

    Args:
        predictions: Logits `[...]` or `[..., 1]`, with a leading batch axis.
        targets: Binary targets of the same shape.
        smooth: Non-negative smoothing added to both sides of the ratio.
        apply_sigmoid: If False, `predictions` are probabilities already.

    Returns:
        `[...]` losses over the batch axes.

    Raises:
        HyperparameterError: If `smooth` is bad.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.losses.binary_dice_loss(jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]]))
        Array([0.25], dtype=float32)
    """
    p = jnp.asarray(predictions)
    t = jnp.asarray(targets)
    if p.ndim == 0 or p.shape[-1] != 1:
        p, t = p[..., None], t[..., None]
    try:
        return dice_loss(p, t, smooth=smooth, apply_softmax=apply_sigmoid)
    except (TypeError, ValueError) as e:
        detail = vars(e).get("gradtx_detail")
        if detail is None:
            raise
        _, name, value, allowed = detail
        raise _fail("losses.binary_dice_loss", name, value, allowed, type(e)) from e


def multiclass_generalized_dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    smooth: ArrayLike = 1.0,
    apply_softmax: bool = True,
    ignore_background: bool = False,
) -> jax.Array:
    """Returns the generalized Dice loss, weighting classes by `1 / count**2`.

    With `T_c` the target mass of class c over the whole batch, the weights are
    `w = 1 / (T**2 + 1e-7)`, scaled to sum to C; the result is the mean over the
    batch of `dice_loss(..., class_weights=w)` (background's weight is dropped,
    not renormalized, with `ignore_background`; optax 0.2.8's numbers).

    Args:
        predictions: Logits `[..., C]` (or probabilities, see `apply_softmax`).
        targets: One-hot targets of the same shape.
        smooth: Non-negative smoothing added to both sides of each ratio.
        apply_softmax: If False, `predictions` are probabilities already.
        ignore_background: If True, class 0 is left out.

    Returns:
        A scalar loss.

    Raises:
        HyperparameterError: If `smooth` is bad.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.losses.multiclass_generalized_dice_loss(
        ...     jnp.zeros((1, 2, 2)), jnp.eye(2)[None])
        Array(0.25, dtype=float32)

    References:
        Sudre et al., Generalised Dice overlap, 2017. https://arxiv.org/abs/1707.03237
    """
    fn = "losses.multiclass_generalized_dice_loss"
    check_range(fn, "smooth", smooth, 0.0)
    t = jnp.asarray(targets)
    p = jnp.asarray(predictions)
    dtype = p.dtype if jnp.issubdtype(p.dtype, jnp.floating) else jnp.float32
    counts = jnp.sum(t.astype(dtype), axis=tuple(range(t.ndim - 1)))
    weights = 1.0 / (counts * counts + 1e-7)
    weights = weights / jnp.sum(weights) * counts.shape[0]
    per_example = dice_loss(
        p,
        t,
        class_weights=weights,
        smooth=smooth,
        apply_softmax=apply_softmax,
        ignore_background=ignore_background,
    )
    return jnp.mean(per_example)
