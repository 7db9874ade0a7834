# SPDX-License-Identifier: Apache-2.0
"""Per-element gradient mean and variance for `gradtx.experimental.aggregating`.

`get_per_element_mean_and_sum_sq_diff_grads` reduces a batch of per-example
gradients to their mean and their sum of squared deviations, merging microbatches
with the pairwise update of Chan, Golub and LeVeque (exact, unlike a naive sum of
squares); `track_per_element_mean_and_variance_with_ema` keeps exponential moving
averages of the mean and of the unbiased sample variance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx import _tree_math
from gradtx._base import GradientTransformation, identity, init_empty_state
from gradtx._combine import chain
from gradtx._errors import HyperparameterError, MissingValueError, TreeMismatchError
from gradtx._numerics import compute_dtype, safe_int32_increment
from gradtx._types import OptState, PyTree
from gradtx._validate import check_decay, check_positive_int
from gradtx.experimental._aggregator import Aggregator, process
from gradtx.tree import get as _tree_get

_MODULE = "experimental.aggregating"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def axis_of(fn: str, per_elt_axis: Any) -> int | tuple[int, ...]:
    """Returns `per_elt_axis` as an int or a tuple of ints (jnp wants a tuple)."""
    if _is_int(per_elt_axis):
        return int(per_elt_axis)
    if (
        isinstance(per_elt_axis, Sequence)
        and len(per_elt_axis) > 0
        and all(_is_int(a) for a in per_elt_axis)
    ):
        return tuple(int(a) for a in per_elt_axis)
    raise HyperparameterError(
        f"gradtx.{fn}: per_elt_axis must be an int or a non-empty sequence of ints, "
        f"got {per_elt_axis!r}"
    )


def get_batch_size_from_per_elt_updates(
    per_elt_updates: PyTree, per_elt_axis: int | list[int]
) -> int:
    """Returns the number of elements along `per_elt_axis`, the same for every leaf.

    Args:
        per_elt_updates: Per-element updates, each leaf shaped `[*batch, *params]`.
        per_elt_axis: The batch axis, or a sequence of batch axes (their sizes
            multiply).

    Returns:
        The batch size, a Python int.

    Raises:
        TreeMismatchError: If the leaves disagree on the batch size, or there are none.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> g = {"w": jnp.zeros((4, 3, 2)), "b": jnp.zeros((4, 3))}
        >>> aggregating.get_batch_size_from_per_elt_updates(g, [0, 1])
        12
    """
    fn = f"{_MODULE}.get_batch_size_from_per_elt_updates"
    axis = axis_of(fn, per_elt_axis)
    axes = (axis,) if isinstance(axis, int) else axis
    leaves = jax.tree.leaves(per_elt_updates)
    sizes = [math.prod(jnp.shape(x)[a] for a in axes) for x in leaves]
    if not sizes or any(s != sizes[0] for s in sizes):
        raise TreeMismatchError(
            f"gradtx.{fn}: every leaf of per_elt_updates must have the same batch "
            f"size along per_elt_axis={per_elt_axis!r}, got sizes {sizes}"
        )
    return sizes[0]


class PerElementMeanAndSumSqDiffGradsState(NamedTuple):
    """State of `get_per_element_mean_and_sum_sq_diff_grads` over microbatches."""

    micro_step: jax.Array  # microbatches merged since the last ready step (int32)
    ready: jax.Array  # bool: the last update emitted the statistics
    mean_grads: PyTree
    sum_sq_diff_grads: PyTree


def _batch_stats(per_elt_updates: PyTree, axis: Any) -> tuple[PyTree, PyTree]:
    """Per-leaf mean over `axis` and sum of squared deviations from that mean."""

    def mean(x):
        return jnp.mean(x, axis=axis, keepdims=True)

    means = jax.tree.map(mean, per_elt_updates)
    sq = jax.tree.map(
        lambda x, m: jnp.sum(jnp.square(x - m), axis=axis), per_elt_updates, means
    )
    return jax.tree.map(lambda m: jnp.squeeze(m, axis=axis), means), sq


def get_per_element_mean_and_sum_sq_diff_grads(
    per_elt_axis: int | Sequence[int] = 0, accumulation_steps: int = 1
) -> Aggregator:
    """Aggregates per-element updates into their mean and sum of squared deviations.

    `update` returns `(mean, {"sum_sq_diff_grads": M2, "sample_size": n})`, so use
    it in `process(..., aggregator_has_aux=True)`. With microbatches, each batch
    (size B) is merged into the running totals; non-ready steps return zeros.

    Update rule:
        k = micro_step + 1;  delta = batch_mean - mean;  mean <- mean + delta / k
        M2 <- M2 + batch_M2 + delta**2 * (k - 1) * B / k;  n = k * B

    Args:
        per_elt_axis: The batch axis, or a sequence of batch axes.
        accumulation_steps: Number of microbatches per emitted result, >= 1.

    Returns:
        An `Aggregator`, stateless if `accumulation_steps == 1`, else with a
        `PerElementMeanAndSumSqDiffGradsState`.

    Raises:
        HyperparameterError: If `per_elt_axis` or `accumulation_steps` is invalid.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> agg = aggregating.get_per_element_mean_and_sum_sq_diff_grads()
        >>> (mean, aux), _ = agg.update(jnp.array([[1.0], [3.0]]), agg.init(None))
        >>> mean, aux["sum_sq_diff_grads"], aux["sample_size"]
        (Array([2.], dtype=float32), Array([2.], dtype=float32), 2)

    References:
        Chan, Golub, LeVeque, "Algorithms for computing the sample variance" (1983).
    """
    fn = f"{_MODULE}.get_per_element_mean_and_sum_sq_diff_grads"
    axis = axis_of(fn, per_elt_axis)
    check_positive_int(fn, "accumulation_steps", accumulation_steps)

    def update_once(per_elt_updates, state, params=None, **extra_args):
        del params, extra_args
        n = get_batch_size_from_per_elt_updates(per_elt_updates, axis)
        mean, sq = _batch_stats(per_elt_updates, axis)
        return (mean, {"sum_sq_diff_grads": sq, "sample_size": n}), state

    if accumulation_steps == 1:
        return Aggregator(init_empty_state, update_once)

    def init(params):
        return PerElementMeanAndSumSqDiffGradsState(
            micro_step=jnp.asarray(0, dtype=jnp.int32),
            ready=jnp.asarray(False),
            mean_grads=_tree_math.zeros_like(params),
            sum_sq_diff_grads=_tree_math.zeros_like(params),
        )

    def update(per_elt_updates, state, params=None, **extra_args):
        del params, extra_args
        size = get_batch_size_from_per_elt_updates(per_elt_updates, axis)
        batch_mean, batch_sq = _batch_stats(per_elt_updates, axis)
        k = state.micro_step + 1
        delta = jax.tree.map(jnp.subtract, batch_mean, state.mean_grads)

        def merge_mean(m, d):
            return (m + d / k.astype(d.dtype)).astype(m.dtype)

        def merge_sq(a, b, d):
            # Chan et al.'s cross term delta**2 * n_a * n_b / (n_a + n_b), with
            # n_a = (k - 1) * size and n_b = size; the weight in at least float32.
            wdt = compute_dtype(d.dtype)
            weight = state.micro_step.astype(wdt) * size / k.astype(wdt)
            return (
                a + b + (jnp.square(d.astype(wdt)) * weight).astype(d.dtype)
            ).astype(a.dtype)

        mean = jax.tree.map(merge_mean, state.mean_grads, delta)
        sq = jax.tree.map(merge_sq, state.sum_sq_diff_grads, batch_sq, delta)
        done = k == accumulation_steps
        out = (mean, {"sum_sq_diff_grads": sq, "sample_size": k * size})
        new_state = PerElementMeanAndSumSqDiffGradsState(
            micro_step=jnp.where(done, jnp.zeros_like(k), k),
            ready=done,
            mean_grads=_tree_math.where(done, _tree_math.zeros_like(mean), mean),
            sum_sq_diff_grads=_tree_math.where(done, _tree_math.zeros_like(sq), sq),
        )
        return _tree_math.where(done, out, _tree_math.zeros_like(out)), new_state

    return Aggregator(init, update)


class PerElementMeanAndVarianceEMAState(NamedTuple):
    """State of `track_per_element_mean_and_variance_with_ema`."""

    count: jax.Array  # int32 number of updates
    ema_decay: jax.Array  # the decay, read back by get_unbiased_mean_and_variance_ema
    mean_grads_ema: PyTree
    variance_grads_ema: PyTree


def track_per_element_mean_and_variance_with_ema(
    ema_decay: ArrayLike = 0.9,
) -> GradientTransformation:
    """Keeps EMAs of the per-element gradient mean and sample variance.

    Put it first in the postprocessor of `process(..., aggregator_has_aux=True)`
    after `get_per_element_mean_and_sum_sq_diff_grads`, whose `sum_sq_diff_grads`
    and `sample_size` it reads as keyword arguments. Updates pass unchanged. A
    sample of one element has no sample variance: its variance is NaN (as optax).

    Update rule:
        mean_ema <- (1 - d) * mean + d * mean_ema
        var_ema <- (1 - d) * sum_sq_diff_grads / (sample_size - 1) + d * var_ema

    Args:
        ema_decay: Decay `d` in [0, 1); a traced array is allowed.

    Returns:
        A transformation with a `PerElementMeanAndVarianceEMAState`.

    Raises:
        HyperparameterError: If a concrete `ema_decay` is outside [0, 1).
        MissingValueError: If `update` is called without the two keyword arguments.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> tx = aggregating.track_per_element_mean_and_variance_with_ema(0.5)
        >>> aux = {"sum_sq_diff_grads": jnp.array([6.0]), "sample_size": 4}
        >>> _, state = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)), **aux)
        >>> state.mean_grads_ema, state.variance_grads_ema
        (Array([1.], dtype=float32), Array([1.], dtype=float32))
    """
    fn = f"{_MODULE}.track_per_element_mean_and_variance_with_ema"
    check_decay(fn, "ema_decay", ema_decay)

    def init(params):
        return PerElementMeanAndVarianceEMAState(
            count=jnp.zeros([], jnp.int32),
            ema_decay=jnp.asarray(ema_decay),
            mean_grads_ema=_tree_math.zeros_like(params),
            variance_grads_ema=_tree_math.zeros_like(params),
        )

    def update(
        updates, state, params=None, *, sum_sq_diff_grads=None, sample_size=None, **kw
    ):
        del params, kw
        if sum_sq_diff_grads is None or sample_size is None:
            raise MissingValueError(
                f"gradtx.{fn}: update needs the keyword arguments sum_sq_diff_grads "
                "and sample_size; use it after get_per_element_mean_and_sum_sq_diff_"
                "grads in process(..., aggregator_has_aux=True)"
            )
        dof = jnp.asarray(sample_size) - 1

        def ema(new, old):
            d = jnp.asarray(ema_decay).astype(old.dtype)
            return ((1 - d) * new + d * old).astype(old.dtype)

        variance = jax.tree.map(lambda s: s / dof.astype(s.dtype), sum_sq_diff_grads)
        new_state = state._replace(
            count=safe_int32_increment(state.count),
            mean_grads_ema=jax.tree.map(ema, updates, state.mean_grads_ema),
            variance_grads_ema=jax.tree.map(ema, variance, state.variance_grads_ema),
        )
        return updates, new_state

    return GradientTransformation(init, update)


def get_unbiased_mean_and_variance_ema(state: OptState) -> tuple[PyTree, PyTree]:
    """Returns the bias-corrected mean and variance EMAs found anywhere in `state`.

    Each EMA is divided by `1 - ema_decay**count` (as Adam's moments); before the
    first update `count` is 0 and the result is NaN.

    Args:
        state: A state holding one `PerElementMeanAndVarianceEMAState`, e.g. the
            state of `add_mean_variance_to_opt`.

    Returns:
        `(mean, variance)`, each shaped like the params.

    Raises:
        ValueError: If `state` holds no `PerElementMeanAndVarianceEMAState`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> state = aggregating.PerElementMeanAndVarianceEMAState(
        ...     jnp.asarray(1), jnp.asarray(0.5), jnp.array([1.0]), jnp.array([2.0])
        ... )
        >>> aggregating.get_unbiased_mean_and_variance_ema(state)
        (Array([2.], dtype=float32), Array([4.], dtype=float32))
    """
    ema = _tree_get(state, "PerElementMeanAndVarianceEMAState", None)
    if ema is None:
        raise ValueError(
            f"gradtx.{_MODULE}.get_unbiased_mean_and_variance_ema: state must hold a "
            "PerElementMeanAndVarianceEMAState (from track_per_element_mean_and_"
            f"variance_with_ema), got a {type(state).__name__} without one"
        )
    decay = jnp.asarray(ema.ema_decay)
    correction = 1 - decay ** jnp.asarray(ema.count).astype(decay.dtype)

    def unbias(x):
        return x / correction.astype(x.dtype)

    return (
        jax.tree.map(unbias, ema.mean_grads_ema),
        jax.tree.map(unbias, ema.variance_grads_ema),
    )


def add_mean_variance_to_opt(
    opt: GradientTransformation,
    ema_decay: ArrayLike = 0.9,
    per_elt_axis: int | list[int] = 0,
    accumulation_steps: int = 1,
) -> Aggregator:
    """Wraps `opt` so that it also tracks per-element gradient mean and variance.

    The result takes per-example gradients, feeds their (microbatch-accumulated)
    mean to `opt`, and keeps EMAs of the mean and variance in its state; read them
    with `get_unbiased_mean_and_variance_ema(state)`.

    Args:
        opt: The optimizer of the mean gradient.
        ema_decay: Decay of the EMAs, in [0, 1).
        per_elt_axis: The batch axis, or a sequence of batch axes.
        accumulation_steps: Number of microbatches per optimizer step, >= 1.

    Returns:
        `process(identity(), get_per_element_mean_and_sum_sq_diff_grads(...),
        chain(track_per_element_mean_and_variance_with_ema(ema_decay), opt),
        aggregator_has_aux=True)`, an `Aggregator`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> from gradtx.experimental import aggregating as agg
        >>> tx = agg.add_mean_variance_to_opt(gradtx.sgd(1.0))
        >>> grads = jnp.array([[1.0], [3.0]])
        >>> _, state = tx.update(grads, tx.init(jnp.zeros(1)))
        >>> agg.get_unbiased_mean_and_variance_ema(state)[1]
        Array([2.], dtype=float32)
    """
    return process(
        preprocessor=identity(),
        aggregator=get_per_element_mean_and_sum_sq_diff_grads(
            per_elt_axis, accumulation_steps
        ),
        postprocessor=chain(
            track_per_element_mean_and_variance_with_ema(ema_decay), opt
        ),
        aggregator_has_aux=True,
    )
