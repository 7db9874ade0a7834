"""Helpers and the base class of the float64 NumPy references in `_reference.py`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

INT32_MAX = 2**31 - 1
Tree = dict[str, np.ndarray]


def tmap(fn: Callable[..., Any], *trees: Tree) -> Tree:
    """Maps `fn` over the leaves of dicts with the same keys."""
    return {k: fn(*(t[k] for t in trees)) for k in trees[0]}


def store(x: np.ndarray, dtype: Any) -> np.ndarray:
    """Rounds `x` to the storage `dtype` (None: no rounding), returned as float64."""
    if dtype is None:
        return np.asarray(x, np.float64)
    return np.asarray(x, np.dtype(dtype)).astype(np.float64)


def hp(value: Any) -> float:
    """A hyperparameter as gradtx holds it: a float32 value."""
    return float(np.float32(value))


def increment(count: int) -> int:
    """The saturating int32 step counter of gradtx."""
    return min(count + 1, INT32_MAX)


def bias_correction(decay: float, count: int) -> float:
    """`1 - decay**count` (Kingma & Ba, 2014, Algorithm 1)."""
    return 1.0 - decay**count


def zeros(params: Tree) -> Tree:
    return tmap(lambda p: np.zeros(np.shape(p)), params)


def full(params: Tree, value: float) -> Tree:
    return tmap(lambda p: np.full(np.shape(p), hp(value)), params)


class Reference:
    """Base class: a stateless reference with an elementwise rule `leaf(g)`."""

    def init(self, params: Tree) -> Any:
        del params
        return {}

    def update(self, grads: Tree, state: Any, params: Tree | None = None):
        del params
        return tmap(self.leaf, grads), state

    def leaf(self, g: np.ndarray) -> np.ndarray:
        raise NotImplementedError
