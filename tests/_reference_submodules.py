# SPDX-License-Identifier: Apache-2.0
"""Float64 NumPy references for second_order, perturbations, assignment, nnls."""

from __future__ import annotations

import itertools

import numpy as np

# A regression loss with a closed-form gradient and Hessian:
# loss(p) = sum((X w + b - y)**2) + sum(w**4), params {"b": scalar, "w": (d,)}.
# ravel_pytree orders the dict keys, so the flat vector is [b, w_0, ..., w_{d-1}].


def regression_loss(p, x, y, xp):
    return xp.sum((x @ p["w"] + p["b"] - y) ** 2) + xp.sum(p["w"] ** 4)


def regression_grad_hessian(w, b, x, y):
    w, x, y = (np.asarray(a, np.float64) for a in (w, x, y))
    design = np.concatenate([np.ones((x.shape[0], 1)), x], axis=1)  # [1, X]
    resid = x @ w + float(b) - y
    grad = 2 * design.T @ resid + np.concatenate([[0.0], 4 * w**3])
    hess = 2 * design.T @ design + np.diag(np.concatenate([[0.0], 12 * w**2]))
    return grad, hess


def perturbed_value_and_grad(f, x, sigma, z, log_prob_grad, use_baseline):
    """The Monte-Carlo estimate and its score-function gradient, from the definition.

    With samples z_k: value = mean_k f(x + sigma z_k); gradient = mean_k
    (f(x + sigma z_k) - baseline) * d/dx log p((y_k - x) / sigma), which is
    (f(y_k) - baseline) * (-log_p'(z_k) / sigma).
    """
    x, z = np.asarray(x, np.float64), np.asarray(z, np.float64)
    vals = np.array([f(x + sigma * zk) for zk in z])
    base = f(x) if use_baseline else 0.0
    weights = -log_prob_grad(z) / sigma
    grad = np.mean((vals - base)[:, None] * weights, axis=0)
    return np.mean(vals), grad


def brute_force_assignment_cost(cost):
    """The least total cost over all ways to pair min(n, m) rows and columns."""
    cost = np.asarray(cost, np.float64)
    if cost.shape[0] > cost.shape[1]:
        cost = cost.T
    n, m = cost.shape
    rows = np.arange(n)
    return min(
        cost[rows, list(cols)].sum() for cols in itertools.permutations(range(m), n)
    )


def nnls_fista(a, b, iters, lipschitz=None):
    """Projected FISTA for min ||A x - b|| s.t. x >= 0, momentum from t_0 = 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    q, c = a.T @ a, a.T @ b
    if lipschitz is None:
        lipschitz = min(np.linalg.norm(q, "fro"), np.abs(q).sum(axis=0).max())
    lipschitz = lipschitz or 1.0
    x = y = np.zeros((a.shape[1], *b.shape[1:]))
    t = 0.0
    for _ in range(iters):
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        x_next = np.maximum(y - (q @ y - c) / lipschitz, 0)
        y = x_next + (t - 1) / t_next * (x_next - x)
        x, t = x_next, t_next
    return x
