# SPDX-License-Identifier: Apache-2.0
"""Float64 NumPy references for gradtx.experimental.aggregating, from the definitions.

Each function takes a list of per-step inputs (one leaf: a NumPy array) and returns
what the transform must emit at every step. The mean and variance are computed with
two passes over all the samples of a group (the textbook definition), not with the
streaming merge that gradtx uses, so the two are independent.
"""

from __future__ import annotations

import numpy as np


def _axes(axis):
    return (axis,) if isinstance(axis, int) else tuple(axis)


def average_per_element(x, axis):
    return np.mean(np.asarray(x, np.float64), axis=_axes(axis))


def accumulate_avg(steps_updates, accumulation_steps):
    """Mean of each consecutive group of `accumulation_steps` updates; zeros between."""
    out, group = [], []
    for u in steps_updates:
        group.append(np.asarray(u, np.float64))
        if len(group) == accumulation_steps:
            out.append(np.mean(group, axis=0))
            group = []
        else:
            out.append(np.zeros_like(group[-1]))
    return out


def group_mean_and_sum_sq_diff(steps_batches, accumulation_steps, axis):
    """Per ready step: (mean, sum of squared deviations, sample size) of the group.

    The samples of a group are all batch elements of its `accumulation_steps`
    microbatches; non-ready steps give zeros and sample size 0.
    """
    axes = _axes(axis)
    out, group = [], []
    for batch in steps_batches:
        b = np.asarray(batch, np.float64)
        # Move the batch axes to the front and flatten them: one row per sample.
        b = np.moveaxis(b, axes, tuple(range(len(axes))))
        group.append(b.reshape((-1, *b.shape[len(axes) :])))
        if len(group) == accumulation_steps:
            samples = np.concatenate(group, axis=0)
            mean = samples.mean(axis=0)
            out.append((mean, ((samples - mean) ** 2).sum(axis=0), len(samples)))
            group = []
        else:
            zeros = np.zeros(b.shape[len(axes) :])
            out.append((zeros, zeros, 0))
    return out


def ema_mean_variance(ready_stats, decay):
    """EMAs of the mean and of the unbiased variance, updated on ready steps only.

    Returns, after each step, (mean_ema, var_ema, count, unbiased_mean, unbiased_var).
    """
    mean_ema = var_ema = None
    count = 0
    history = []
    for mean, sq, n in ready_stats:
        if n == 0:  # not a ready step: the tracker does not run
            history.append(history[-1] if history else None)
            continue
        if mean_ema is None:
            mean_ema, var_ema = np.zeros_like(mean), np.zeros_like(mean)
        mean_ema = (1 - decay) * mean + decay * mean_ema
        var_ema = (1 - decay) * sq / (n - 1) + decay * var_ema
        count += 1
        corr = 1 - decay**count
        history.append((mean_ema, var_ema, count, mean_ema / corr, var_ema / corr))
    return history
