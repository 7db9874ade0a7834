# SPDX-License-Identifier: Apache-2.0
"""Aggregators of per-example gradients, as `optax.experimental.aggregating`.

An aggregator's `update` takes per-example updates shaped `[*batch, *params]` (from
`jax.vmap(jax.grad(loss))`) and returns one update shaped like the params. `process`
puts one between a per-example preprocessor and an ordinary optimizer; where the
aggregator's state has a `ready` flag (it accumulates microbatches), the optimizer runs
only on ready steps and the other steps return zeros. `Aggregator` and `process`
live in `_aggregator.py`, the mean and variance tools in `_aggregating_stats.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _tree_math
from gradtx._base import GradientTransformation, identity, init_empty_state
from gradtx._combine import chain
from gradtx._types import PyTree
from gradtx._validate import check_positive_int
from gradtx.experimental._aggregating_stats import (
    PerElementMeanAndSumSqDiffGradsState,
    PerElementMeanAndVarianceEMAState,
    add_mean_variance_to_opt,
    axis_of,
    get_batch_size_from_per_elt_updates,
    get_per_element_mean_and_sum_sq_diff_grads,
    get_unbiased_mean_and_variance_ema,
    track_per_element_mean_and_variance_with_ema,
)
from gradtx.experimental._aggregator import (
    AggregatedUpdates,
    Aggregator,
    AggregatorUpdateFn,
    PerElementUpdates,
    process,
)

__all__ = [
    "AccumulateAvgUpdatesState",
    "AggregatedUpdates",
    "Aggregator",
    "AggregatorUpdateFn",
    "MaybeAxis",
    "PerElementMeanAndSumSqDiffGradsState",
    "PerElementMeanAndVarianceEMAState",
    "PerElementUpdates",
    "accumulate_avg_updates",
    "add_mean_variance_to_opt",
    "average_incrementally_updates",
    "average_per_element_updates",
    "get_batch_size_from_per_elt_updates",
    "get_per_element_mean_and_sum_sq_diff_grads",
    "get_unbiased_mean_and_variance_ema",
    "process",
    "track_per_element_mean_and_variance_with_ema",
]

MaybeAxis = int | Sequence[int] | None

_MODULE = "experimental.aggregating"


class AccumulateAvgUpdatesState(NamedTuple):
    """State of `accumulate_avg_updates`: the running mean over microbatches."""

    micro_step: jax.Array  # microbatches seen since the last ready step (int)
    ready: jax.Array  # bool: the last update emitted the average
    avg_grad: PyTree


def average_per_element_updates(per_elt_axis: int | Sequence[int] = 0) -> Aggregator:
    """Averages per-element updates over `per_elt_axis` (the batch axis or axes).

    Args:
        per_elt_axis: An axis, or a sequence of axes, of each leaf to average over.

    Returns:
        A stateless `Aggregator`.

    Raises:
        HyperparameterError: If `per_elt_axis` is not an int or a sequence of ints.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> agg = aggregating.average_per_element_updates()
        >>> agg.update(jnp.array([[1.0, 2.0], [3.0, 6.0]]), agg.init(None))[0]
        Array([2., 4.], dtype=float32)
    """
    axis = axis_of(f"{_MODULE}.average_per_element_updates", per_elt_axis)

    def update(per_elt_updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(lambda x: jnp.mean(x, axis=axis), per_elt_updates), state

    return Aggregator(init_empty_state, update)


def accumulate_avg_updates(accumulation_steps: int) -> GradientTransformation:
    """Averages updates over `accumulation_steps` microbatches, then emits the mean.

    Steps that complete a group return the mean of its updates and set `ready`;
    the others return zeros. Use it inside `process` so that the optimizer only
    steps on ready steps. With `accumulation_steps=1` it is `identity()`.

    Update rule:
        k = micro_step + 1;  avg <- avg + (u - avg) / k
        if k == accumulation_steps: emit avg, reset avg and micro_step to 0

    Args:
        accumulation_steps: Number of microbatches per emitted average, >= 1.

    Returns:
        A transformation with an `AccumulateAvgUpdatesState`.

    Raises:
        HyperparameterError: If `accumulation_steps` is not an integer >= 1.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> tx = aggregating.accumulate_avg_updates(2)
        >>> state = tx.init(jnp.zeros(1))
        >>> out, state = tx.update(jnp.array([1.0]), state)
        >>> tx.update(jnp.array([3.0]), state)[0]
        Array([2.], dtype=float32)
    """
    fn = f"{_MODULE}.accumulate_avg_updates"
    check_positive_int(fn, "accumulation_steps", accumulation_steps)
    if accumulation_steps == 1:
        return identity()

    def init(params):
        return AccumulateAvgUpdatesState(
            micro_step=jnp.asarray(0),
            ready=jnp.asarray(False),
            avg_grad=_tree_math.zeros_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        step = state.micro_step + 1

        def running_mean(u, a):
            d = u - a
            # Stored in the state's dtype, so the state keeps its dtypes (lax.scan).
            return (a + d / step.astype(d.dtype)).astype(a.dtype)

        avg = jax.tree.map(running_mean, updates, state.avg_grad)
        done = step == accumulation_steps
        zeros = _tree_math.zeros_like(avg)
        new_state = AccumulateAvgUpdatesState(
            micro_step=jnp.where(done, jnp.zeros_like(step), step),
            ready=done,
            avg_grad=_tree_math.where(done, zeros, avg),
        )
        return _tree_math.where(done, avg, zeros), new_state

    return GradientTransformation(init, update)


def average_incrementally_updates(
    per_elt_axis: MaybeAxis, accumulation_steps: int
) -> Aggregator | GradientTransformation:
    """Averages per-element updates, then averages the result over microbatches.

    Args:
        per_elt_axis: The batch axis (or axes) to average over, or `None` if the
            updates are already averaged over the batch.
        accumulation_steps: Number of microbatches per emitted average, >= 1.

    Returns:
        `accumulate_avg_updates(accumulation_steps)` if `per_elt_axis` is None, else
        an `Aggregator` chaining `average_per_element_updates` with it.

    Raises:
        HyperparameterError: If `per_elt_axis` or `accumulation_steps` is invalid.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> agg = aggregating.average_incrementally_updates(0, 1)
        >>> agg.update(jnp.array([[1.0], [3.0]]), agg.init(jnp.zeros(1)))[0]
        Array([2.], dtype=float32)
    """
    fn = f"{_MODULE}.average_incrementally_updates"
    check_positive_int(fn, "accumulation_steps", accumulation_steps)
    if per_elt_axis is None:
        return accumulate_avg_updates(accumulation_steps)
    axis = axis_of(fn, per_elt_axis)
    tx = chain(
        average_per_element_updates(axis), accumulate_avg_updates(accumulation_steps)
    )
    return Aggregator(tx.init, tx.update)
