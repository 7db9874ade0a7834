# SPDX-License-Identifier: Apache-2.0
"""Protocol types shared by every part of gradtx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeAlias, runtime_checkable

import jax
from jax.typing import ArrayLike

PyTree: TypeAlias = Any
Params: TypeAlias = PyTree
Updates: TypeAlias = PyTree
OptState: TypeAlias = PyTree
Schedule: TypeAlias = Callable[[ArrayLike], ArrayLike]
ScalarOrSchedule: TypeAlias = "float | jax.Array | Schedule"
MaskOrFn: TypeAlias = Any  # a tree of bools, or a callable params -> tree of bools


class TransformInitFn(Protocol):
    """Builds the initial state from the params (or their shapes)."""

    def __call__(self, params: Params) -> OptState:
        """Returns the initial state."""


class TransformUpdateFn(Protocol):
    """Maps `(updates, state, params)` to `(new_updates, new_state)`."""

    def __call__(
        self,
        updates: Updates,
        state: OptState,
        params: Params | None = None,
        **extra_args: Any,
    ) -> tuple[Updates, OptState]:
        """Returns the transformed updates and the next state."""


# `TransformUpdateFn` already takes `**extra_args`: optax's second name is that type.
TransformUpdateExtraArgsFn: TypeAlias = TransformUpdateFn


class ConditionFn(Protocol):
    """`(step, **extra_args) -> bool` for `conditionally_transform` / `_mask`."""

    def __call__(self, step: ArrayLike, **extra_args: Any) -> ArrayLike:
        """Returns a scalar bool: whether the inner transform runs at this `step`."""


@runtime_checkable
class StatefulSchedule(Protocol):
    """A schedule with a state: `init()`, `update(state)` and `__call__(state)`.

    `optax.schedules.StatefulSchedule`'s protocol; `inject_stateful_hyperparams`
    accepts any object with these three methods (`WrappedSchedule` is one).
    """

    def init(self) -> Any:
        """Returns the first state."""

    def update(self, state: Any, **extra_args: Any) -> Any:
        """Returns the next state."""

    def __call__(self, state: Any, **extra_args: Any) -> ArrayLike:
        """Returns the value at `state`."""
