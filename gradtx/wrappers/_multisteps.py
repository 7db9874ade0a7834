# SPDX-License-Identifier: Apache-2.0
"""Gradient accumulation: `MultiSteps` and its skip predicates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._errors import HyperparameterError
from gradtx._types import Params, Updates


class ShouldSkipUpdateFunction(Protocol):
    """`(updates, gradient_step, params) -> (skip, skip_state)` for `MultiSteps`.

    `skip` is a scalar bool array: True rejects this mini-step as if it never
    happened. `skip_state` is any pytree, stored in `MultiStepsState.skip_state`.
    """

    def __call__(
        self, updates: Updates, gradient_step: ArrayLike, params: Params | None
    ) -> tuple[jax.Array, Any]:
        """Returns whether to skip the updates, and monitoring information."""


def skip_not_finite(
    updates: Updates, gradient_step: ArrayLike, params: Params | None
) -> tuple[jax.Array, Any]:
    """Skips a mini-step whose updates contain a NaN or an Inf.

    Args:
        updates: The mini-step's updates (gradients).
        gradient_step: Unused; see `ShouldSkipUpdateFunction`.
        params: Unused.

    Returns:
        `(should_skip, {"should_skip": ..., "num_not_finite": int32 count})`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> skip, info = gradtx.skip_not_finite(jnp.array([1.0, jnp.inf]), 0, None)
        >>> skip, info["num_not_finite"]
        (Array(True, dtype=bool), Array(1, dtype=int32))
    """
    del gradient_step, params
    counts = [
        jnp.sum(~jnp.isfinite(x), dtype=jnp.int32) for x in jax.tree.leaves(updates)
    ]
    num_not_finite = sum(counts, jnp.zeros([], jnp.int32))
    should_skip = num_not_finite > 0
    return should_skip, {"should_skip": should_skip, "num_not_finite": num_not_finite}


def skip_large_updates(
    updates: Updates,
    gradient_step: ArrayLike,
    params: Params | None,
    max_squared_norm: ArrayLike,
) -> tuple[jax.Array, Any]:
    """Skips a mini-step whose squared global norm is not below `max_squared_norm`.

    Bind the limit with `functools.partial(skip_large_updates, max_squared_norm=..)`.
    The norm is summed in float32 (optax sums in the leaves' dtype, which overflows
    for large bf16/f16 gradients); a NaN norm is skipped too.

    Args:
        updates: The mini-step's updates (gradients).
        gradient_step: Unused; see `ShouldSkipUpdateFunction`.
        params: Unused.
        max_squared_norm: The largest accepted squared l2 norm (exclusive).

    Returns:
        `(should_skip, {"should_skip": ..., "norm_squared": float32 scalar})`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.skip_large_updates(jnp.array([3.0, 4.0]), 0, None, 25.0)[0]
        Array(True, dtype=bool)
    """
    del gradient_step, params
    norm_sq = _tree.sum_sq(updates)
    limit = jnp.asarray(max_squared_norm).astype(norm_sq.dtype)
    should_skip = ~(norm_sq < limit)
    return should_skip, {"should_skip": should_skip, "norm_squared": norm_sq}


class MultiStepsState(NamedTuple):
    """State of `MultiSteps`.

    Attributes:
        mini_step: Mini-steps accumulated in the current window (int32, < k).
        gradient_step: Inner updates done so far (int32, saturating).
        inner_opt_state: The state of the wrapped transformation.
        acc_grads: The running mean (or sum) of this window's gradients.
        skip_state: What `should_skip_update_fn` returned last (`()` without one).
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: Any
    acc_grads: Any
    skip_state: Any = ()


def _no_skip(updates: Any, gradient_step: Any, params: Any) -> tuple[jax.Array, Any]:
    del updates, gradient_step, params
    return jnp.array(False, jnp.bool_), ()


def _constant_k(every_k_schedule: Any) -> Callable[[ArrayLike], ArrayLike]:
    if isinstance(every_k_schedule, jax.Array) and not isinstance(
        every_k_schedule, jax.core.Tracer
    ):
        arr = np.asarray(every_k_schedule)
        if arr.shape == () and arr.dtype.kind in "iu":
            every_k_schedule = int(arr)
    _validate.check_positive_int("MultiSteps", "every_k_schedule", every_k_schedule)
    return lambda step: every_k_schedule


class MultiSteps:
    """Accumulates gradients over `k` mini-steps, then applies the wrapped optimizer.

    Each mini-step returns zeros, except the k-th, which feeds the mean (or sum) of
    the k gradients to `opt` and returns its updates. As in optax, the inner update
    runs every mini-step and is selected, here without `lax.cond`, so inner
    optimizers that change dtypes (bf16 params, f32 updates) work; non-emitting
    updates are exact zeros and the accumulator restarts at exact zeros even after
    a NaN (optax keeps the NaN).

    Args:
        opt: The wrapped transformation; extra keyword arguments reach it.
        every_k_schedule: Mini-steps per update: an integer >= 1, or a function of
            `gradient_step` returning one (a varying batch size).
        use_grad_mean: Average the gradients (True) or sum them.
        should_skip_update_fn: Optional `ShouldSkipUpdateFunction`, e.g.
            `skip_not_finite`; a skipped mini-step changes nothing but `skip_state`.
        accumulator_dtype: Storage dtype of `acc_grads`; None keeps the params'.

    Raises:
        HyperparameterError: If a constant `every_k_schedule` is not an int >= 1.
        TypeError: If `accumulator_dtype` is not a floating dtype.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.MultiSteps(gradtx.sgd(1.0), every_k_schedule=2)
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.array([1.0]), state)
        >>> u, state = tx.update(jnp.array([3.0]), state)
        >>> u, tx.has_updated(state)
        (Array([-2.], dtype=float32), Array(True, dtype=bool))
    """

    def __init__(
        self,
        opt: GradientTransformation,
        every_k_schedule: int | Callable[[ArrayLike], ArrayLike],
        use_grad_mean: bool = True,
        should_skip_update_fn: ShouldSkipUpdateFunction | None = None,
        accumulator_dtype: Any = jnp.float32,
    ):
        """Builds the wrapper; see the class docstring."""
        self._opt = with_extra_args_support(opt)
        self._every_k_schedule = (
            every_k_schedule
            if callable(every_k_schedule)
            else _constant_k(every_k_schedule)
        )
        self._use_grad_mean = use_grad_mean
        self._should_skip_update_fn = should_skip_update_fn or _no_skip
        self._accumulator_dtype = _validate.check_dtype(
            "MultiSteps", "accumulator_dtype", accumulator_dtype
        )

    @property
    def inner_opt(self) -> GradientTransformation:
        """The wrapped transformation."""
        return self._opt

    @property
    def every_k_schedule(self) -> Callable[[ArrayLike], ArrayLike]:
        """`gradient_step -> k`, also for a constant `k`."""
        return self._every_k_schedule

    @property
    def use_grad_mean(self) -> bool:
        """Whether the accumulated gradients are averaged (else summed)."""
        return self._use_grad_mean

    @property
    def should_skip_update_fn(self) -> ShouldSkipUpdateFunction:
        """The skip predicate (one that never skips when none was given)."""
        return self._should_skip_update_fn

    def init(self, params: Params) -> MultiStepsState:
        """Builds the initial `MultiStepsState`."""
        gradient_step = jnp.zeros([], jnp.int32)
        _, skip_state = self._should_skip_update_fn(
            _tree.zeros_like(params), gradient_step, params
        )
        return MultiStepsState(
            mini_step=jnp.zeros([], jnp.int32),
            gradient_step=gradient_step,
            inner_opt_state=self._opt.init(params),
            acc_grads=_tree.zeros_like(params, self._accumulator_dtype),
            skip_state=skip_state,
        )

    def _skip(self, updates: Updates, state: MultiStepsState, params: Any) -> Any:
        skip, skip_state = self._should_skip_update_fn(
            updates, state.gradient_step, params
        )
        skip = jnp.asarray(skip)
        if (skip.dtype, skip.shape) != (jnp.bool_, ()):
            raise HyperparameterError(
                "gradtx.MultiSteps: should_skip_update_fn must return a scalar bool "
                f"array, got dtype {skip.dtype} and shape {skip.shape}"
            )
        return skip, skip_state

    def _accumulate(self, updates: Updates, acc: Any, mini_step: jax.Array) -> Any:
        """The new running mean (Welford) or sum, in the compute dtype."""

        def leaf(g, a):
            cd = _numerics.leaf_dtype(g, a)
            gc, ac = g.astype(cd), a.astype(cd)
            if self._use_grad_mean:
                return ac + (gc - ac) / (mini_step + 1).astype(cd)
            return ac + gc

        return jax.tree.map(leaf, updates, acc)

    def update(
        self,
        updates: Updates,
        state: MultiStepsState,
        params: Params | None = None,
        **extra_args: Any,
    ) -> tuple[Updates, MultiStepsState]:
        """Accumulates `updates`; every k-th mini-step returns the inner updates."""
        _tree.check_structure("MultiSteps", state.acc_grads, updates)
        k = jnp.asarray(self._every_k_schedule(state.gradient_step)).astype(jnp.int32)
        skip, skip_state = self._skip(updates, state, params)
        acc = self._accumulate(updates, state.acc_grads, state.mini_step)
        inner_updates, inner_state = self._opt.update(
            _tree.cast_like(acc, updates),
            state.inner_opt_state,
            params=params,
            **extra_args,
        )
        emit = ~skip & (state.mini_step == k - 1)
        kept = _tree.select(
            skip, state.acc_grads, _tree.cast_like(acc, state.acc_grads)
        )
        old_inner = state.inner_opt_state
        new_state = MultiStepsState(
            mini_step=jnp.where(
                skip,
                state.mini_step,
                _numerics.safe_int32_increment(state.mini_step) % k,
            ),
            gradient_step=jnp.where(
                emit,
                _numerics.safe_int32_increment(state.gradient_step),
                state.gradient_step,
            ),
            inner_opt_state=_tree.select(
                emit, _tree.cast_like(inner_state, old_inner), old_inner
            ),
            acc_grads=_tree.select(emit, _tree.zeros_like(kept), kept),
            skip_state=skip_state,
        )
        zeros = _tree.zeros_like(inner_updates)
        return _tree.select(emit, inner_updates, zeros), new_state

    def has_updated(self, state: MultiStepsState | Any) -> jax.Array:
        """Whether the last `update` applied the inner optimizer."""
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        """Returns `(init, update)` as a `GradientTransformation`, for `chain`."""
        return GradientTransformation(init=self.init, update=self.update)
