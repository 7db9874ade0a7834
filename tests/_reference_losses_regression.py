"""Float64 NumPy references for the regression, cosine, CTC and Dice losses.

Written from the definitions (Huber 1964; Graves et al. 2006; Milletari et al. 2016;
Sudre et al. 2017), independently of gradtx and optax.
"""

import itertools
import math

import numpy as np


def squared_error(p, t=None):
    d = np.asarray(p, np.float64) - (0.0 if t is None else np.asarray(t, np.float64))
    return d * d


def l2_loss(p, t=None):
    return 0.5 * squared_error(p, t)


def huber_loss(p, t=None, delta=1.0):
    d = np.abs(np.asarray(p, np.float64) - (0.0 if t is None else np.asarray(t)))
    return np.where(d <= delta, 0.5 * d * d, delta * d - 0.5 * delta * delta)


def log_cosh(p, t=None):
    x = np.abs(np.asarray(p, np.float64) - (0.0 if t is None else np.asarray(t)))
    # Small x: the Taylor series (log(cosh(x)) would cancel); large x: cosh
    # overflows past ~710, and x - log(2) is exact to double precision from 20.
    series = x**2 / 2 - x**4 / 12 + x**6 / 45
    safe = np.minimum(x, 20.0)
    direct = np.where(x < 20.0, np.log(np.cosh(safe)), x - math.log(2.0))
    return np.where(x < 1e-2, series, direct)


def cosine_similarity(p, t, epsilon=0.0, axis=-1, where=None):
    p, t = np.broadcast_arrays(np.asarray(p, np.float64), np.asarray(t, np.float64))
    w = np.ones(p.shape, bool) if where is None else np.broadcast_to(where, p.shape)
    p, t = np.where(w, p, 0.0), np.where(w, t, 0.0)
    # epsilon floors the squared norm (optax 0.2.8's definition).
    norm_p = np.sqrt(np.maximum(np.sum(p * p, axis=axis), epsilon))
    norm_t = np.sqrt(np.maximum(np.sum(t * t, axis=axis), epsilon))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(p * t, axis=axis) / (norm_p * norm_t)


def _log_softmax(logits):
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _collapse(path, blank):
    out, prev = [], None
    for s in path:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return out


def ctc_brute_force(logits, labels, blank=0):
    """-log p(labels | logits) by summing every length-T path that collapses to it."""
    logp = _log_softmax(logits)
    t_len, k = logp.shape
    total = 0.0
    for path in itertools.product(range(k), repeat=t_len):
        if _collapse(path, blank) == list(labels):
            total += math.exp(sum(logp[t, s] for t, s in enumerate(path)))
    return -math.log(total) if total > 0 else math.inf


def ctc_forward(logits, labels, blank=0):
    """Log alphas of the blank after n labels and of label n, `(T, N+1)`, `(T, N)`.

    Dynamic programming over frames (Graves et al. 2006, eq. 6-7); unreachable
    states are -inf. Returns (loss, alpha_blank, alpha_label).
    """
    logp = _log_softmax(logits)
    t_len, n = logp.shape[0], len(labels)
    a_b = np.full((t_len, n + 1), -np.inf)
    a_l = np.full((t_len, n), -np.inf)
    a_b[0, 0] = logp[0, blank]
    if n:
        a_l[0, 0] = logp[0, labels[0]]
    for t in range(1, t_len):
        for j in range(n + 1):
            came = [a_b[t - 1, j]] + ([a_l[t - 1, j - 1]] if j else [])
            a_b[t, j] = np.logaddexp.reduce(came) + logp[t, blank]
        for j in range(n):
            came = [a_l[t - 1, j], a_b[t - 1, j]]
            if j and labels[j] != labels[j - 1]:
                came.append(a_l[t - 1, j - 1])
            a_l[t, j] = np.logaddexp.reduce(came) + logp[t, labels[j]]
    last = a_b[-1, n] if n == 0 else np.logaddexp(a_b[-1, n], a_l[-1, n - 1])
    return -last, a_b, a_l


def dice(
    p,
    t,
    *,
    class_weights=None,
    smooth=1.0,
    alpha=0.5,
    beta=0.5,
    apply_softmax=True,
    reduction="mean",
    ignore_background=False,
    axis=None,
):
    p = np.asarray(p, np.float64)
    t = np.asarray(t, np.float64)
    if apply_softmax and p.shape[-1] == 1:
        p = 1.0 / (1.0 + np.exp(-p))  # one channel: a sigmoid
    elif apply_softmax:
        p = np.exp(_log_softmax(p))
    axis = tuple(range(1, p.ndim - 1)) if axis is None else axis
    inter = np.sum(p * t, axis=axis)
    fp = np.sum(p, axis=axis) - inter
    fn = np.sum(t, axis=axis) - inter
    loss = 1.0 - (inter + smooth) / (inter + alpha * fp + beta * fn + smooth)
    if class_weights is not None:
        loss = loss * np.asarray(class_weights, np.float64)
    if ignore_background:
        loss = loss[..., 1:]
    if reduction == "none":
        return loss
    return loss.mean(-1) if reduction == "mean" else loss.sum(-1)


def generalized_dice(p, t, *, smooth=1.0, apply_softmax=True, ignore_background=False):
    """Sudre et al.'s weights 1/count**2 (+1e-7), scaled to sum to C, as optax."""
    t = np.asarray(t, np.float64)
    counts = t.reshape(-1, t.shape[-1]).sum(0)
    w = 1.0 / (counts * counts + 1e-7)
    w = w / w.sum() * w.size
    per = dice(
        p,
        t,
        class_weights=w,
        smooth=smooth,
        apply_softmax=apply_softmax,
        ignore_background=ignore_background,
    )
    return per.mean()
