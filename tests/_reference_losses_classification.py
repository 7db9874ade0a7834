"""Float64 NumPy references of the classification losses and divergences.

Written from the definitions (not from any implementation): loops where a loop is
the clearest statement, and the convention `0 log 0 = 0` throughout.
"""

from __future__ import annotations

import numpy as np


def f64(x):
    return np.asarray(x, np.float64)


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else axis
    return tuple(a % ndim for a in axis)


def _expand(where, ndim, axis):
    if where is None:
        return None
    where = np.asarray(where, bool)
    if where.ndim != ndim:
        where = np.expand_dims(where, _axes(axis, ndim))
    return where


def log_softmax(x, axis=-1, where=None):
    x = f64(x)
    mask = np.ones(x.shape, bool) if where is None else np.broadcast_to(where, x.shape)
    masked = np.where(mask, x, -np.inf)
    m = np.max(masked, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    total = np.sum(np.where(mask, np.exp(masked - m), 0.0), axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        return x - (m + np.log(total))


def _xlogy_sum(y, log_p, axis, where):
    """`sum(y * log_p)` with `0 * log 0 = 0`, over the elements in `where`."""
    y = np.broadcast_to(f64(y), log_p.shape)
    mask = (
        np.ones(log_p.shape, bool)
        if where is None
        else np.broadcast_to(where, log_p.shape)
    )
    with np.errstate(invalid="ignore"):
        terms = np.where(y == 0, 0.0, y * log_p)
    return np.sum(np.where(mask, terms, 0.0), axis=_axes(axis, log_p.ndim))


def softmax_cross_entropy(logits, labels, axis=-1, where=None):
    where = _expand(where, np.ndim(logits), axis)
    return -_xlogy_sum(
        labels, log_softmax(logits, _axes(axis, np.ndim(logits)), where), axis, where
    )


def softmax_cross_entropy_with_integer_labels(logits, labels, axis=-1, where=None):
    x = f64(logits)
    class_axes = _axes(axis, x.ndim)
    batch = tuple(a for a in range(x.ndim) if a not in class_axes)
    x = np.transpose(x, batch + class_axes).reshape(*(x.shape[a] for a in batch), -1)
    if where is not None:
        w = _expand(where, f64(logits).ndim, axis)
        w = np.broadcast_to(w, f64(logits).shape)
        w = np.transpose(w, batch + class_axes).reshape(x.shape)
    else:
        w = np.ones(x.shape, bool)
    out = np.zeros(x.shape[:-1])
    for idx in np.ndindex(*x.shape[:-1]):
        row, mask = x[idx], w[idx]
        if mask.any():
            out[idx] = np.log(np.sum(np.exp(row[mask]))) - row[int(labels[idx])]
    return out


def poly_loss_cross_entropy(logits, labels, epsilon=2.0, axis=-1, where=None):
    log_p = log_softmax(logits, axis, where)
    mask = np.ones(log_p.shape, bool) if where is None else where
    pt_gap = np.sum(np.where(mask, f64(labels) * (1 - np.exp(log_p)), 0.0), axis=axis)
    return softmax_cross_entropy(logits, labels, axis, where) + epsilon * pt_gap


def smooth_labels(labels, alpha, axis=-1, where=None):
    y = f64(labels)
    if where is None:
        n = np.prod([y.shape[a] for a in _axes(axis, y.ndim)])
    else:
        n = np.sum(where, axis=axis, keepdims=True)
    return (1 - alpha) * y + alpha / n


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -f64(x))


def sigmoid_binary_cross_entropy(logits, labels):
    y = f64(labels)
    return -y * _log_sigmoid(logits) - (1 - y) * _log_sigmoid(-f64(logits))


def sigmoid_focal_loss(logits, labels, alpha=None, gamma=2.0):
    y, p = f64(labels), np.exp(_log_sigmoid(logits))
    p_t = y * p + (1 - y) * (1 - p)
    loss = sigmoid_binary_cross_entropy(logits, labels) * (1 - p_t) ** gamma
    if alpha is None:
        return loss
    return (alpha * y + (1 - alpha) * (1 - y)) * loss


def hinge_loss(outputs, targets):
    return np.maximum(0.0, 1 - f64(outputs) * f64(targets))


def perceptron_loss(outputs, targets):
    return np.maximum(0.0, -f64(outputs) * f64(targets))


def _per_example(scores, labels, fn):
    s = f64(scores)
    out = np.zeros(s.shape[:-1])
    for idx in np.ndindex(*s.shape[:-1]):
        out[idx] = fn(s[idx], int(labels[idx]))
    return out


def multiclass_hinge_loss(scores, labels):
    def one(s, y):
        return max(s[j] + (j != y) for j in range(len(s))) - s[y]

    return _per_example(scores, labels, one)


def multiclass_perceptron_loss(scores, labels):
    return _per_example(scores, labels, lambda s, y: np.max(s) - s[y])


def sparsemax_loss(logits, labels):
    z = np.where(np.asarray(labels) != 0, -f64(logits), f64(logits))
    return np.where(z <= -1, 0.0, np.where(z >= 1, z, (z + 1) ** 2 / 4))


def sparsemax(s):
    """Euclidean projection onto the simplex, by bisection on the threshold."""
    lo, hi = np.min(s) - 1, np.max(s)
    for _ in range(200):
        tau = (lo + hi) / 2
        if np.sum(np.maximum(s - tau, 0)) > 1:
            lo = tau
        else:
            hi = tau
    return np.maximum(s - (lo + hi) / 2, 0)


def multiclass_sparsemax_loss(scores, labels):
    def one(s, y):
        p = sparsemax(s)
        return p @ s - s[y] + 0.5 * (1 - p @ p)

    return _per_example(scores, labels, one)


def logsumexp_fenchel_young(scores, targets):
    s = f64(scores)
    m = np.max(s, axis=-1)
    return (
        m + np.log(np.sum(np.exp(s - m[..., None]), -1)) - np.sum(f64(targets) * s, -1)
    )


def kl_divergence(log_predictions, targets, axis=-1, where=None):
    t, lq = f64(targets), f64(log_predictions)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(t == 0, 0.0, t * (np.log(t) - lq))
    mask = True if where is None else where
    return np.sum(np.where(mask, terms, 0.0), axis=axis)


def kl_divergence_with_log_targets(log_predictions, log_targets, axis=-1, where=None):
    return kl_divergence(log_predictions, np.exp(f64(log_targets)), axis, where)


def generalized_kl_divergence(log_predictions, targets, axis=-1, where=None):
    mass = np.exp(f64(log_predictions)) - f64(targets)
    mask = True if where is None else where
    extra = np.sum(np.where(mask, mass, 0.0), axis=axis)
    return kl_divergence(log_predictions, targets, axis, where) + extra


def ranking_softmax_loss(logits, labels, where=None, weights=None, reduce="mean"):
    x, y = f64(logits), f64(labels)
    w = np.ones(x.shape, bool) if where is None else np.asarray(where, bool)
    if weights is not None:
        y = y * f64(weights)
    losses = np.zeros(x.shape[:-1])
    for idx in np.ndindex(*x.shape[:-1]):
        if w[idx].any():
            ls = log_softmax(x[idx][w[idx]])
            losses[idx] = -_xlogy_sum(y[idx][w[idx]], ls, -1, None)
    valid = w.any(axis=-1)
    if reduce is None:
        return losses
    if reduce == "sum":
        return np.sum(losses[valid])
    return np.mean(losses[valid]) if valid.any() else 0.0


def ntxent(embeddings, labels, temperature=0.07):
    e = f64(embeddings)
    eps = np.finfo(np.asarray(embeddings).dtype).eps
    unit = e / np.sqrt(np.maximum(np.sum(e * e, -1, keepdims=True), eps))
    s = unit @ unit.T / temperature
    n, losses = len(labels), []
    for i in range(n):
        negatives = [s[i, k] for k in range(n) if labels[k] != labels[i]]
        for j in range(n):
            if j != i and labels[j] == labels[i]:
                denom = np.exp(s[i, j]) + sum(np.exp(v) for v in negatives)
                losses.append(-(s[i, j] - np.log(denom)))
    return np.mean(losses) if losses else 0.0
