# SPDX-License-Identifier: Apache-2.0
"""Accumulators of `gradtx.microbatching`: how per-microbatch outputs are combined."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._errors import HyperparameterError

_Fn = Callable[..., Any]


class AccumulationType(enum.Enum):
    """How the outputs of the microbatches are combined."""

    MEAN = 1
    """Mean over all microbatches (the sum divided by their number)."""
    SUM = 2
    """Sum over the microbatches."""
    RUNNING_MEAN = 3
    """Mean over the microbatches actually run (`num_real_microbatches`)."""
    CONCAT = 4
    """Concatenation along axis 0, in the original batch order."""


@dataclasses.dataclass(frozen=True)
class Accumulator:
    """Combines per-microbatch values: a fold with a per-microbatch reduction.

    Over outputs `x_0, ..., x_{n-1}` a microbatched function computes
    `c = init(shapes of x_0)`, then `c = update(c, x_k, k)` for each `k`, and returns
    `finalize(c)`. `micro_vmap` first reduces each microbatch's vmapped outputs with
    `aggregate(values)` (stacked along axis 0).

    Attributes:
        init: Maps the `jax.ShapeDtypeStruct` tree of one output to the carry.
        update: `update(carry, value, index) -> carry`.
        finalize: Maps the last carry to the result.
        aggregate: Reduces values stacked along axis 0 (used by `micro_vmap`).
    """

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], Any]
    finalize: Callable[[Any], Any]
    aggregate: Callable[[Any], Any]


class Aux(NamedTuple):
    """Per-example outputs of `micro_grad`: loss values, metrics and `fun`'s aux."""

    values: Any
    metrics: Any
    aux: Any


def _is_accumulator(x: Any) -> bool:
    # Duck-typed, so optax's own Accumulator objects are accepted too.
    return isinstance(x, AccumulationType) or all(
        callable(getattr(x, f, None)) for f in ("init", "update", "finalize")
    )


def _leafwise(init: _Fn, update: _Fn, finalize: _Fn, aggregate: _Fn) -> Accumulator:
    """Applies array-level accumulation functions to every leaf of a subtree."""
    return Accumulator(
        init=lambda vals: jax.tree.map(init, vals),
        update=lambda c, vals, k: jax.tree.map(lambda a, b: update(a, b, k), c, vals),
        finalize=lambda c: jax.tree.map(finalize, c),
        aggregate=lambda vals: jax.tree.map(aggregate, vals),
    )


def _zeros_floating(fn: str, kind: str) -> _Fn:
    def init(shape: Any) -> jax.Array:
        if not jnp.issubdtype(shape.dtype, jnp.floating):
            raise HyperparameterError(
                f"gradtx.microbatching.{fn}: accumulator {kind} must be applied to "
                f"floating outputs, got dtype {shape.dtype}"
            )
        return jnp.zeros(shape.shape, shape.dtype)

    return init


def _running_update(carry: jax.Array, value: jax.Array, k: Any) -> jax.Array:
    keep = (k / (k + 1)).astype(carry.dtype)
    return carry * keep + value * (1 - keep)


def _concat_finalize(carry: jax.Array) -> jax.Array:
    # carry[k, r] is row r of microbatch k, i.e. batch row k + n * r.
    if carry.ndim < 2:
        return carry
    return jnp.swapaxes(carry, 0, 1).reshape(-1, *carry.shape[2:])


def _builtin(kind: AccumulationType, n: int, fn: str) -> Accumulator:
    if kind in (AccumulationType.MEAN, AccumulationType.CONCAT) and n <= 0:
        raise HyperparameterError(
            f"gradtx.microbatching.{fn}: the number of microbatches must be >= 1 "
            f"for accumulator {kind.name}, got {n}"
        )
    zeros = lambda s: jnp.zeros(s.shape, s.dtype)
    add = lambda c, v, _: c + v
    same = lambda c: c
    if kind is AccumulationType.SUM:
        return _leafwise(zeros, add, same, lambda x: jnp.sum(x, axis=0))
    if kind is AccumulationType.MEAN:
        return _leafwise(
            _zeros_floating(fn, kind.name),
            add,
            lambda c: c / n,
            lambda x: jnp.mean(x, axis=0),
        )
    if kind is AccumulationType.RUNNING_MEAN:
        return _leafwise(
            _zeros_floating(fn, kind.name),
            _running_update,
            same,
            lambda x: jnp.mean(x, axis=0),
        )
    return _leafwise(
        lambda s: jnp.zeros((n, *s.shape), s.dtype),
        lambda c, v, k: c.at[k].set(v),
        _concat_finalize,
        same,
    )


def resolve(tree: Any, n: int, fn: str) -> Accumulator:
    """One Accumulator from a pytree prefix of Accumulators and AccumulationTypes."""

    def one(acc: Any) -> Any:
        if isinstance(acc, AccumulationType):
            return _builtin(acc, n, fn)
        if _is_accumulator(acc):
            return acc
        raise HyperparameterError(
            f"gradtx.microbatching.{fn}: accumulator must be an AccumulationType or "
            f"an Accumulator (or a pytree of them), got {acc!r}"
        )

    accs = jax.tree.map(one, tree, is_leaf=_is_accumulator)

    def each(method: str, *trees: Any) -> Any:
        return jax.tree.map(
            lambda acc, *xs: getattr(acc, method)(*xs),
            accs,
            *trees,
            is_leaf=_is_accumulator,
        )

    return Accumulator(
        init=lambda vals: each("init", vals),
        update=lambda c, vals, k: jax.tree.map(
            lambda acc, ci, vi: acc.update(ci, vi, k),
            accs,
            c,
            vals,
            is_leaf=_is_accumulator,
        ),
        finalize=lambda c: each("finalize", c),
        aggregate=lambda vals: each("aggregate", vals),
    )
