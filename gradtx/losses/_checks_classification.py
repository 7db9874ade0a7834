# SPDX-License-Identifier: Apache-2.0
"""Argument checks shared by the classification losses.

Dtype checks raise `TypeError` (as optax's do); concrete labels outside the class
range raise `HyperparameterError`. Traced values cannot be checked and pass through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx._errors import HyperparameterError


def floating(fn: str, name: str, value: ArrayLike) -> jax.Array:
    """Returns `value` as an array; raises `TypeError` unless its dtype is floating."""
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(
            f"gradtx.losses.{fn}: {name} must have a floating dtype, got {arr.dtype}"
        )
    return arr


def integer(fn: str, name: str, value: ArrayLike) -> jax.Array:
    """Returns `value` as an array; raises `TypeError` unless its dtype is integer."""
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(
            f"gradtx.losses.{fn}: {name} must have an integer dtype, got {arr.dtype}"
        )
    return arr


def axes(axis: int | Sequence[int] | None, ndim: int, fn: str) -> tuple[int, ...]:
    """Canonical non-negative axes; `None` means every axis."""
    if axis is None:
        return tuple(range(ndim))
    items = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError(
                f"gradtx.losses.{fn}: axis must be an int or a tuple of ints, "
                f"got {axis!r}"
            )
        if not -ndim <= a < ndim:
            raise HyperparameterError(
                f"gradtx.losses.{fn}: axis must be in [{-ndim}, {ndim}) for an "
                f"input of rank {ndim}, got {axis!r}"
            )
        out.append(int(a) % ndim)
    return tuple(out)


def _concrete(value: Any) -> np.ndarray | None:
    if value is None or isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def class_labels(fn: str, labels: Any, num_classes: int, rows: Any = None) -> None:
    """Raises `HyperparameterError` if concrete labels are not classes in [0, n).

    Args:
        fn: The loss's name, for the message.
        labels: The labels as passed (a traced value is not checked).
        num_classes: The number of classes.
        rows: Optional boolean mask broadcastable to the labels: only labels where
            it is True are checked (masked rows may hold any placeholder, e.g. -1).
    """
    values = _concrete(labels)
    if values is None:
        return
    if rows is not None:
        values = values[np.broadcast_to(np.asarray(rows, bool), values.shape)]
    values = values.ravel()
    bad = (values < 0) | (values >= num_classes)
    if values.dtype.kind == "f":
        bad |= values != np.floor(values)
    if bad.any():
        raise HyperparameterError(
            f"gradtx.losses.{fn}: labels must be integers in [0, {num_classes}), "
            f"got {values[bad][0]!r}"
        )


def row_mask(where: Any, ndim: int, class_axes: tuple[int, ...]) -> Any:
    """The per-example mask of a concrete `where` (None if absent or traced)."""
    mask = _concrete(where)
    if mask is None:
        return None
    if mask.ndim == ndim:
        return np.any(mask, axis=class_axes)
    return mask


def size_of(shape: tuple[int, ...], class_axes: tuple[int, ...]) -> int:
    """Number of elements in the `class_axes` of `shape`."""
    return math.prod(shape[a] for a in class_axes)
