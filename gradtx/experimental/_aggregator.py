# SPDX-License-Identifier: Apache-2.0
"""`Aggregator`, the per-element transformation type, and `process`, which runs one.

Split from `gradtx.experimental.aggregating` so that its private mean and variance
module can build aggregators without an import cycle.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

from gradtx import _tree_math
from gradtx._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    _AcceptsExtraArgs,
    with_extra_args_support,
)
from gradtx._types import OptState, Params, PyTree
from gradtx.tree import get as _tree_get

PerElementUpdates = PyTree
AggregatedUpdates = PyTree


class AggregatorUpdateFn(Protocol):
    """Maps per-element updates (and the state) to one aggregated update."""

    def __call__(
        self,
        per_elt_updates: PerElementUpdates,
        state: OptState,
        params: Params | None = None,
        **extra_args: Any,
    ) -> tuple[AggregatedUpdates, OptState]:
        """Returns the aggregated update, shaped like the params, and the new state."""


class _ExactInstanceCheck(_AcceptsExtraArgs):
    """`isinstance(x, Aggregator)` is true only for real `Aggregator` instances.

    `GradientTransformationExtraArgs` accepts any `(init, update)` tuple whose update
    takes `**kwargs`; an aggregator is a different contract (per-element inputs), so
    `process` must not mistake an ordinary transform for one.
    """

    def __instancecheck__(cls, obj: Any) -> bool:
        return type.__instancecheck__(cls, obj)


class Aggregator(GradientTransformationExtraArgs, metaclass=_ExactInstanceCheck):
    """An `(init, update)` pair whose `update` aggregates per-element updates.

    `update(per_elt_updates, state, params=None, **extra_args)` takes updates shaped
    `[*batch, *params]` (e.g. from `jax.vmap(jax.grad(loss), (None, 0))`) and returns
    one update shaped like the params; an ordinary transform maps params-shaped
    updates to params-shaped updates. The tuple layout is the same, so an aggregator
    is also a `GradientTransformationExtraArgs`.
    """

    __slots__ = ()


def _is_aggregator(tx: Any) -> bool:
    # optax's own `Aggregator` counts too, so optax aggregators can be processed.
    return isinstance(tx, Aggregator) or (
        isinstance(tx, tuple) and type(tx).__name__ == "Aggregator"
    )


def process(
    preprocessor: GradientTransformation,
    aggregator: GradientTransformation | Aggregator,
    postprocessor: GradientTransformation,
    aggregator_has_aux: bool = False,
) -> GradientTransformation | Aggregator:
    """Chains a per-element preprocessor, an aggregator and an optimizer.

    The state is `(preprocessor_state, aggregator_state, postprocessor_state)`. If
    the aggregator's state has a `ready` field, the postprocessor runs (under
    `lax.cond`) only when it is true; other steps return zeros and keep its state.

    Args:
        preprocessor: Maps per-element gradients to per-element updates.
        aggregator: Maps per-element updates to one update shaped like the params.
        postprocessor: An ordinary transform (an optimizer) of the aggregated update.
        aggregator_has_aux: Whether the aggregator returns `(update, aux)`, with
            `aux` a dict passed to the postprocessor as extra keyword arguments.

    Returns:
        An `Aggregator` if `aggregator` is one, else a
        `GradientTransformationExtraArgs`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> from gradtx.experimental import aggregating
        >>> tx = aggregating.process(
        ...     gradtx.identity(),
        ...     aggregating.average_per_element_updates(0),
        ...     gradtx.sgd(0.5),
        ... )
        >>> per_example = jnp.array([[1.0, 2.0], [3.0, 4.0]])
        >>> tx.update(per_example, tx.init(jnp.zeros(2)))[0]
        Array([-1. , -1.5], dtype=float32)
    """
    pre = with_extra_args_support(preprocessor)
    agg = with_extra_args_support(aggregator)
    post = with_extra_args_support(postprocessor)

    def init(params):
        return pre.init(params), agg.init(params), post.init(params)

    def update(updates, state, params=None, **extra_args):
        pre_state, agg_state, post_state = state
        per_elt, pre_state = pre.update(updates, pre_state, params, **extra_args)
        aggregated, agg_state = agg.update(per_elt, agg_state, params, **extra_args)
        if aggregator_has_aux:
            aggregated, aux = aggregated
            extra_args = {**extra_args, **aux}
        ready = _tree_get(agg_state, "ready", True)
        if ready is True:  # no `ready` flag: every step is a ready step
            out, post_state = post.update(aggregated, post_state, params, **extra_args)
        else:
            # The branches close over the arguments, so non-array extra arguments
            # (callables, strings) reach the postprocessor unchanged.
            out, post_state = jax.lax.cond(
                ready,
                lambda s: post.update(aggregated, s, params, **extra_args),
                lambda s: (_tree_math.zeros_like(aggregated), s),
                post_state,
            )
        return out, (pre_state, agg_state, post_state)

    if _is_aggregator(aggregator):
        return Aggregator(init, update)
    return GradientTransformationExtraArgs(init, update)
