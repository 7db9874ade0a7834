# SPDX-License-Identifier: Apache-2.0
"""Run the inner transform only at some steps: `conditionally_transform` and friend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._numerics import safe_int32_increment
from gradtx.wrappers import _spec

ConditionFn = Callable[..., Any]  # (int32 step, **extra_args) -> scalar bool


class ConditionallyTransformState(NamedTuple):
    """State of `conditionally_transform`: the inner state and the int32 step."""

    inner_state: Any
    step: jax.Array


class ConditionallyMaskState(NamedTuple):
    """State of `conditionally_mask`: the int32 step and the inner state."""

    step: jax.Array
    inner_state: Any


def _cast_like(tree: Any, reference: Any) -> Any:
    """Casts leaves of `tree` whose dtype differs from the matching `reference` leaf."""

    def cast(x, r):
        dtype = jnp.asarray(r).dtype
        x = jnp.asarray(x)
        return x if x.dtype == dtype else x.astype(dtype)

    return jax.tree.map(cast, tree, reference)


def _conditional_update(
    fn: str,
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool,
    reject: Callable[[Any], Any],
) -> Callable[..., tuple[Any, Any, jax.Array]]:
    """The shared update: `lax.cond` between `inner.update` and `reject(updates)`."""

    def update(updates, inner_state, step, params, extra_args):
        kwargs = extra_args if forward_extra_args else {}
        pred = jnp.asarray(should_transform_fn(step, **kwargs))
        if pred.shape != ():
            raise TypeError(
                f"gradtx.{fn}: should_transform_fn must return a scalar, got shape "
                f"{pred.shape}"
            )

        # Both branches must agree on dtypes (optax#377, #1038): the inner transform's
        # outputs are cast to the incoming updates' and state's dtypes.
        def accept(_):
            new, state = inner.update(updates, inner_state, params, **extra_args)
            return _cast_like(new, updates), _cast_like(state, inner_state)

        skip = lambda _: (reject(updates), inner_state)
        if isinstance(pred, jax.core.Tracer):
            new, inner_state = lax.cond(pred, accept, skip, None)
        else:  # eager: a concrete predicate picks the branch without tracing both
            new, inner_state = accept(None) if bool(pred) else skip(None)
        return new, inner_state, safe_int32_increment(step)

    return update


def _checked(fn: str, inner: Any, should_transform_fn: Any, forward: Any) -> Any:
    _spec.check_transform(fn, "inner", inner)
    if not callable(should_transform_fn):
        raise TypeError(
            f"gradtx.{fn}: should_transform_fn must be callable, "
            f"got {should_transform_fn!r}"
        )
    _spec.check_flag(fn, "forward_extra_args", forward)
    return with_extra_args_support(inner)


def conditionally_transform(
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool = False,
) -> GradientTransformation:
    """Runs `inner` only when `should_transform_fn(step)` is True; else passes through.

    On other steps the updates and the inner state are returned unchanged; `step`
    counts every call. To zero the updates instead, use `conditionally_mask`.

    Args:
        inner: The transformation to run conditionally.
        should_transform_fn: Maps the int32 step (0 at the first update) to a scalar
            bool; it also receives the extra keyword arguments if `forward_extra_args`.
        forward_extra_args: Pass `update`'s extra keyword arguments to
            `should_transform_fn` too (`inner` always gets them).

    Returns:
        A transformation with `ConditionallyTransformState(inner_state, step)`.

    Raises:
        TypeError: If `should_transform_fn` is not callable.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.conditionally_transform(gradtx.scale(2.0), lambda s: s % 2 == 1)
        >>> u, state = tx.update(jnp.ones(1), tx.init(jnp.ones(1)))
        >>> u, tx.update(jnp.ones(1), state)[0]
        (Array([1.], dtype=float32), Array([2.], dtype=float32))
    """
    fn = "conditionally_transform"
    tx = _checked(fn, inner, should_transform_fn, forward_extra_args)
    step_fn = _conditional_update(
        fn, tx, should_transform_fn, forward_extra_args, lambda u: u
    )

    def init(params):
        return ConditionallyTransformState(
            inner_state=tx.init(params), step=jnp.zeros([], jnp.int32)
        )

    def update(updates, state, params=None, **extra_args):
        updates, inner_state, step = step_fn(
            updates, state.inner_state, state.step, params, extra_args
        )
        return updates, ConditionallyTransformState(inner_state, step)

    return GradientTransformation(init, update)


def conditionally_mask(
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool = False,
) -> GradientTransformation:
    """Runs `inner` only when `should_transform_fn(step)` is True; else zero updates.

    On other steps the updates are zeros of the same shape and dtype and the inner
    state is unchanged. Arguments are those of `conditionally_transform`.

    Args:
        inner: The transformation to run conditionally.
        should_transform_fn: Maps the int32 step (0 at the first update) to a scalar
            bool; see `conditionally_transform`.
        forward_extra_args: Pass extra keyword arguments to `should_transform_fn`.

    Returns:
        A transformation with `ConditionallyMaskState(step, inner_state)`.

    Raises:
        TypeError: If `should_transform_fn` is not callable.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.conditionally_mask(gradtx.scale(2.0), lambda s: s % 2 == 1)
        >>> u, state = tx.update(jnp.ones(1), tx.init(jnp.ones(1)))
        >>> u, tx.update(jnp.ones(1), state)[0]
        (Array([0.], dtype=float32), Array([2.], dtype=float32))
    """
    fn = "conditionally_mask"
    tx = _checked(fn, inner, should_transform_fn, forward_extra_args)
    zeros = lambda u: jax.tree.map(jnp.zeros_like, u)
    step_fn = _conditional_update(
        fn, tx, should_transform_fn, forward_extra_args, zeros
    )

    def init(params):
        return ConditionallyMaskState(
            step=jnp.zeros([], jnp.int32), inner_state=tx.init(params)
        )

    def update(updates, state, params=None, **extra_args):
        updates, inner_state, step = step_fn(
            updates, state.inner_state, state.step, params, extra_args
        )
        return updates, ConditionallyMaskState(step=step, inner_state=inner_state)

    return GradientTransformation(init, update)
