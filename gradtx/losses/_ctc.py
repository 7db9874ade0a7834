# SPDX-License-Identifier: Apache-2.0
"""Connectionist temporal classification (CTC) loss by a log-space forward scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from gradtx._errors import HyperparameterError
from gradtx._validate import check_range


def _check_shapes(fn: str, logits, logit_paddings, labels, label_paddings) -> None:
    if logits.ndim != 3:
        raise ValueError(
            f"gradtx.{fn}: logits must have shape (B, T, K), got shape {logits.shape}"
        )
    b, t, _ = logits.shape
    expected = {
        "logit_paddings": (logit_paddings, (b, t), "(B, T)"),
        "labels": (labels, None, "(B, N)"),
        "label_paddings": (label_paddings, labels.shape, "(B, N), like labels"),
    }
    for name, (arr, shape, text) in expected.items():
        if arr.ndim != 2 or arr.shape[0] != b or (shape and arr.shape != shape):
            raise ValueError(
                f"gradtx.{fn}: {name} must have shape {text} with B={b}, T={t}, "
                f"got shape {arr.shape}"
            )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"gradtx.{fn}: labels must be an integer array, got dtype {labels.dtype}"
        )


def _check_blank_id(fn: str, blank_id, num_classes: int) -> None:
    if isinstance(blank_id, jax.core.Tracer):
        return
    allowed = f"an integer in [0, {num_classes})"
    if isinstance(blank_id, bool) or not isinstance(blank_id, (int, np.integer)):
        raise HyperparameterError(
            f"gradtx.{fn}: blank_id must be {allowed}, got {blank_id!r}"
        )
    if not 0 <= blank_id < num_classes:
        raise HyperparameterError(
            f"gradtx.{fn}: blank_id must be {allowed}, got {blank_id!r}"
        )


# Jitted once per shape, so that eager calls do not re-trace the scan every time.
@jax.jit
def _forward(logits, logit_paddings, labels, label_paddings, blank_id, log_epsilon):
    """Returns the loss and the per-frame alphas (the last blank row finalized)."""
    # The recursion runs in float32 or wider (a bf16 sum of many frames drifts);
    # the outputs come back in the logits' dtype.
    out_dtype = logits.dtype
    if jnp.finfo(out_dtype).bits < 32:
        logits = logits.astype(jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    logit_paddings = logit_paddings.astype(logp.dtype)
    b, _, _ = logp.shape
    n = labels.shape[1]
    dtype = logp.dtype
    log_epsilon = jnp.asarray(log_epsilon, dtype)
    logp_blank = logp[:, :, blank_id]  # (B, T)
    index = jnp.broadcast_to(labels[:, None, :], (*logp.shape[:2], n))
    logp_label = jnp.take_along_axis(logp, index, axis=2, mode="clip")  # (B, T, N)
    # A label equal to its predecessor cannot be reached from it without a blank:
    # that path gets the weight exp(log_epsilon), i.e. log(0), as in optax.
    repeat = jnp.concatenate(
        [jnp.zeros((b, 1), bool), labels[:, 1:] == labels[:, :-1]], axis=1
    )
    skip_penalty = jnp.where(repeat, log_epsilon, jnp.zeros((), dtype))
    eps_col = jnp.full((b, 1), log_epsilon, dtype)
    eps_row = jnp.full((b, n), log_epsilon, dtype)
    # Before the first frame: no label emitted yet, with probability one.
    init_blank = jnp.concatenate([jnp.zeros((b, 1), dtype), eps_row], axis=1)
    init_label = eps_row

    def step(carry, frame):
        a_blank, a_label = carry
        lp_blank, lp_label, padded = frame
        # Blank after n labels: stay in it, or come from the n-th label.
        from_label = jnp.concatenate([eps_col, a_label], axis=1)
        new_blank = jnp.logaddexp(a_blank, from_label) + lp_blank[:, None]
        # The n-th label: stay in it, come from the blank before it, or skip
        # that blank from the previous label when the two labels differ.
        skip = jnp.concatenate([eps_col, a_label[:, :-1]], axis=1) + skip_penalty
        stay = jnp.logaddexp(a_label, a_blank[:, :-1])
        new_label = jnp.logaddexp(stay, skip) + lp_label
        hold = padded[:, None] > 0.5  # padded frames leave the alphas unchanged
        new_blank = jnp.where(hold, a_blank, new_blank)
        new_label = jnp.where(hold, a_label, new_label)
        return (new_blank, new_label), (new_blank, new_label)

    frames = (
        jnp.swapaxes(logp_blank, 0, 1),
        jnp.swapaxes(logp_label, 0, 1),
        jnp.swapaxes(logit_paddings, 0, 1),
    )
    (last_blank, last_label), (hist_blank, hist_label) = lax.scan(
        step, (init_blank, init_label), frames
    )
    # "n labels emitted" at the end: in the blank after label n, or on label n.
    final = jnp.logaddexp(last_blank, jnp.concatenate([eps_col, last_label], axis=1))
    final = final.at[:, 0].set(last_blank[:, 0])
    hist_blank = hist_blank.at[-1].set(final)
    num_labels = jnp.sum(label_paddings < 0.5, axis=1)
    loss = -jnp.take_along_axis(final, num_labels[:, None], axis=1)[:, 0]
    return (
        loss.astype(out_dtype),
        hist_blank.astype(out_dtype),
        hist_label.astype(out_dtype),
    )


def ctc_loss_with_forward_probs(
    logits: ArrayLike,
    logit_paddings: ArrayLike,
    labels: ArrayLike,
    label_paddings: ArrayLike,
    *,
    blank_id: int = 0,
    log_epsilon: ArrayLike = -1e5,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns the CTC loss and the log forward probabilities of each frame.

    With `log_softmax(logits)` as per-frame class log-probabilities, the loss is
    `-log p(labels | logits)` summed over all blank-inserted alignments (Graves et
    al., 2006), computed by one `lax.scan` over time in log space. `log_epsilon`
    stands for `log(0)`; padded frames leave the alphas unchanged.

    Args:
        logits: `(B, T, K)` floating logits; K counts the blank class.
        logit_paddings: `(B, T)`, 1.0 where a frame is padding, else 0.0.
        labels: `(B, N)` integer labels.
        label_paddings: `(B, N)`, 1.0 where a label is padding; right-padded.
        blank_id: Class index of the blank, an integer in `[0, K)`.
        log_epsilon: Finite negative stand-in for `log(0)`.

    Returns:
        `(loss, logalpha_blank, logalpha_label)`: `(B,)` losses, then `(T, B, N+1)`
        and `(T, B, N)` log-probabilities of being, after frame t, on the blank
        that follows n labels and on label n. The last frame's blank row holds
        the total for "n labels emitted" (blank or label), as optax's does.

    Raises:
        ValueError: If the shapes do not fit together.
        HyperparameterError: If `blank_id` or a concrete `log_epsilon` is bad.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> loss, _, _ = gradtx.ctc_loss_with_forward_probs(
        ...     jnp.zeros((1, 2, 2)), jnp.zeros((1, 2)), jnp.array([[1]]),
        ...     jnp.zeros((1, 1)))
        >>> loss  # 3 alignments of prob 1/4: -log(3/4)
        Array([0.2876821], dtype=float32)

    References:
        Graves et al., Connectionist temporal classification, 2006.
        https://dl.acm.org/doi/10.1145/1143844.1143891
    """
    fn = "ctc_loss_with_forward_probs"
    logits = jnp.asarray(logits)
    logit_paddings = jnp.asarray(logit_paddings)
    labels = jnp.asarray(labels)
    label_paddings = jnp.asarray(label_paddings)
    _check_shapes(fn, logits, logit_paddings, labels, label_paddings)
    _check_blank_id(fn, blank_id, logits.shape[2])
    check_range(fn, "log_epsilon", log_epsilon, high=0.0, high_open=True)
    return _forward(
        logits, logit_paddings, labels, label_paddings, blank_id, log_epsilon
    )


def ctc_loss(
    logits: ArrayLike,
    logit_paddings: ArrayLike,
    labels: ArrayLike,
    label_paddings: ArrayLike,
    *,
    blank_id: int = 0,
    log_epsilon: ArrayLike = -1e5,
) -> jax.Array:
    """Returns the `(B,)` CTC losses; see `ctc_loss_with_forward_probs`.

    Args:
        logits: `(B, T, K)` floating logits; K counts the blank class.
        logit_paddings: `(B, T)`, 1.0 where a frame is padding, else 0.0.
        labels: `(B, N)` integer labels.
        label_paddings: `(B, N)`, 1.0 where a label is padding; right-padded.
        blank_id: Class index of the blank, an integer in `[0, K)`.
        log_epsilon: Finite negative stand-in for `log(0)`.

    Returns:
        `-log p(labels | logits)` per sequence.

    Raises:
        ValueError: If the shapes do not fit together.
        HyperparameterError: If `blank_id` or a concrete `log_epsilon` is bad.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.ctc_loss(jnp.zeros((1, 2, 2)), jnp.zeros((1, 2)),
        ...                 jnp.array([[1]]), jnp.zeros((1, 1)))
        Array([0.2876821], dtype=float32)
    """
    try:
        loss, _, _ = ctc_loss_with_forward_probs(
            logits,
            logit_paddings,
            labels,
            label_paddings,
            blank_id=blank_id,
            log_epsilon=log_epsilon,
        )
    except (TypeError, ValueError) as e:
        if "ctc_loss_with_forward_probs" not in str(e):
            raise
        raise type(e)(str(e).replace("ctc_loss_with_forward_probs", "ctc_loss")) from e
    return loss
