# SPDX-License-Identifier: Apache-2.0
"""The protocol: `GradientTransformation`, `EmptyState` and the stateless helpers."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from gradtx._types import Params, TransformInitFn, TransformUpdateFn, Updates


class GradientTransformation(NamedTuple):
    """A pure `(init, update)` pair: the one transformation type of gradtx.

    `init(params) -> state` builds the state; `update(updates, state, params=None,
    **extra_args) -> (updates, state)` transforms the updates. Every gradtx `update`
    accepts and ignores keyword arguments it does not use, so there is no second
    "extra args" type. The shape is optax's on purpose: gradtx and optax transforms
    can be mixed in either library's `chain`.
    """

    init: TransformInitFn
    update: TransformUpdateFn


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


# optax names the state of some stateless blocks; each is `EmptyState` itself there too.
AdaptiveGradClipState = EmptyState
AddDecayedWeightsState = EmptyState
ClipByGlobalNormState = EmptyState
ClipState = EmptyState
ScaleByTrustRatioState = EmptyState
ScaleState = EmptyState


class _AcceptsExtraArgs(type):
    """Makes `isinstance` ask what optax means by "extra args": `update(**kw)`."""

    def __instancecheck__(cls, obj: Any) -> bool:
        if super().__instancecheck__(obj):
            return True
        update = getattr(obj, "update", None)
        if not (isinstance(obj, tuple) and callable(getattr(obj, "init", None))):
            return False
        return callable(update) and accepts_extra_args(update)


class GradientTransformationExtraArgs(
    GradientTransformation, metaclass=_AcceptsExtraArgs
):
    """optax's name for a transformation whose `update` takes `**extra_args`.

    Every gradtx transformation is one already (DESIGN.md §1), so this class adds
    nothing to `GradientTransformation`; it exists so that optax code runs unchanged.
    `isinstance(tx, GradientTransformationExtraArgs)` is True for any `(init, update)`
    tuple, gradtx's or optax's, whose `update` accepts `**kwargs`.

    Example:
        >>> import gradtx
        >>> isinstance(gradtx.sgd(0.1), gradtx.GradientTransformationExtraArgs)
        True
    """

    __slots__ = ()


def init_empty_state(params: Params) -> EmptyState:
    """Returns `EmptyState()` whatever the params: the `init` of a stateless block.

    Example:
        >>> import gradtx
        >>> gradtx.init_empty_state({"w": 1.0})
        EmptyState()
    """
    del params
    return EmptyState()


def accepts_extra_args(update: Callable[..., Any]) -> bool:
    """Whether `update` takes `**kwargs` (all gradtx updates do; not all optax ones)."""
    try:
        sig = inspect.signature(update)
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def with_extra_args_support(tx: Any) -> GradientTransformation:
    """Wraps a foreign transform so that its `update` accepts and drops extra kwargs."""
    if accepts_extra_args(tx.update):
        return GradientTransformation(tx.init, tx.update)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        return tx.update(updates, state, params)

    return GradientTransformation(tx.init, update)


def identity() -> GradientTransformation:
    """Returns the updates unchanged.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.identity()
        >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
        Array([1., 1.], dtype=float32)
    """

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, state

    return GradientTransformation(init, update)


def set_to_zero() -> GradientTransformation:
    """Replaces every update with zeros of the same shape and dtype (freezes params).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.set_to_zero()
        >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
        Array([0., 0.], dtype=float32)
    """

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(jax.numpy.zeros_like, updates), state

    return GradientTransformation(init, update)


def stateless(f: Callable[[Updates, Params | None], Updates]) -> GradientTransformation:
    """Builds a stateless transformation from `f(updates, params) -> updates`.

    Args:
        f: Maps the whole updates tree (and params, or None) to new updates.

    Returns:
        A transformation with `EmptyState`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.stateless(lambda u, p: {"w": u["w"] * 2})
        >>> tx.update({"w": jnp.ones(1)}, tx.init(None))[0]["w"]
        Array([2.], dtype=float32)
    """

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        return f(updates, params), state

    return GradientTransformation(init, update)


def stateless_with_tree_map(
    f: Callable[[jax.Array, jax.Array | None], jax.Array],
) -> GradientTransformation:
    """Builds a stateless transformation that maps `f(update, param)` over each leaf.

    Args:
        f: Maps one update leaf (and its param leaf, or None) to a new leaf.

    Returns:
        A transformation with `EmptyState`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.stateless_with_tree_map(lambda u, p: -u)
        >>> tx.update(jnp.ones(2), tx.init(None))[0]
        Array([-1., -1.], dtype=float32)
    """

    def g(updates, params):
        if params is None:
            return jax.tree.map(lambda u: f(u, None), updates)
        return jax.tree.map(f, updates, params)

    return stateless(g)
