# SPDX-License-Identifier: Apache-2.0
"""`inject_hyperparams`: hyperparameters that live in the state, so they can change."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx import _numerics, _validate
from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._errors import HyperparameterError


class InjectHyperparamsState(NamedTuple):
    """The older three-field state, kept for optax compatibility.

    `inject_hyperparams` returns `InjectStatefulHyperparamsState`, as optax does.
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    inner_state: Any


class InjectStatefulHyperparamsState(NamedTuple):
    """State of `inject_hyperparams`.

    Attributes:
        count: Updates done so far (int32, saturating).
        hyperparams: Name -> current value; assign to an entry to change a value
            that is not scheduled.
        hyperparams_states: Name -> state of the schedule of that hyperparameter.
        inner_state: The state of the wrapped transformation.
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    hyperparams_states: dict[str, Any]
    inner_state: Any


class WrappedScheduleState(NamedTuple):
    """State of `WrappedSchedule`: the schedule's step count."""

    count: jax.Array


class WrappedSchedule:
    """Turns a schedule `step -> value` into a stateful one (`init`/`update`/call).

    Args:
        schedule_fn: Maps an int32 step count to a value.

    Example:
        >>> import gradtx
        >>> s = gradtx.WrappedSchedule(lambda n: 2 * n)
        >>> s(s.update(s.init()))
        Array(2, dtype=int32)
    """

    def __init__(self, schedule_fn: Callable[[ArrayLike], ArrayLike]):
        """Wraps `schedule_fn`."""
        self.schedule_fn = schedule_fn

    def init(self) -> WrappedScheduleState:
        """Starts the count at 0."""
        return WrappedScheduleState(count=jnp.zeros([], jnp.int32))

    def update(self, state: WrappedScheduleState, **extra_args: Any) -> Any:
        """Advances the count by one (saturating)."""
        del extra_args
        return WrappedScheduleState(_numerics.safe_int32_increment(state.count))

    def __call__(self, state: WrappedScheduleState, **extra_args: Any) -> ArrayLike:
        """The schedule's value at the current count."""
        del extra_args
        return self.schedule_fn(state.count)


def _is_stateful_schedule(value: Any) -> bool:
    """Duck-typed `optax.schedules.StatefulSchedule`: callable with init and update."""
    return (
        callable(value)
        and callable(getattr(value, "init", None))
        and callable(getattr(value, "update", None))
        and not isinstance(value, type)
    )


def _to_hparam(value: Any, dtype: Any) -> Any:
    """Floating values -> `dtype`, or >= float32 if None (never the params' dtype)."""
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        return arr  # integers (and complex values) keep their dtype, as in optax
    return arr.astype(dtype) if dtype is not None else _numerics.hparam(arr)


def _split_arguments(
    bound: inspect.BoundArguments, static_args: set[str]
) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Sorts the factory's arguments into positional, static, scheduled and numeric."""
    positional: tuple[Any, ...] = ()
    named: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            positional = tuple(value)  # e.g. `chain(*txs)`: passed through unchanged
        elif kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[name] = value
    static, scheduled, numeric = {}, {}, {}
    for name, value in named.items():
        if name in static_args or isinstance(value, (bool, np.bool_)):
            static[name] = value
        elif _is_stateful_schedule(value):
            scheduled[name] = value
        elif callable(value):
            scheduled[name] = WrappedSchedule(value)
        elif isinstance(value, (int, float, jax.Array, np.ndarray, np.number)):
            numeric[name] = value
        else:
            static[name] = value
    return positional, static, scheduled, numeric


def inject_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any | None = None,
) -> Callable[..., GradientTransformation]:
    """Wraps a factory so that its numeric hyperparameters live in the state.

    Numbers go to `state.hyperparams` (change them between steps without
    recompiling: assign an array of the same dtype, or use `gradtx.tree.set`; a
    Python float is weakly typed and makes `jit` trace once more); callables are
    schedules of the step count (or stateful schedules with `init`/`update`).
    Floating hyperparameters are float32 (float64 under x64) whatever the params'
    dtype: optax infers them from the params, so bf16 params turn `b2=0.999` into
    1.0 and Adam returns NaN (optax #1414).

    Args:
        inner_factory: A function returning a `GradientTransformation`.
        static_args: Names of arguments never injected (e.g. a callable that is not
            a schedule). Booleans are always static.
        hyperparam_dtype: If given, every floating hyperparameter is cast to it
            (optax leaves strongly typed arrays alone).

    Returns:
        A factory with `inner_factory`'s signature whose transformations keep
        `InjectStatefulHyperparamsState`.

    Raises:
        HyperparameterError: If `static_args` names an argument `inner_factory`
            does not have.
        TypeError: If `hyperparam_dtype` is not a floating dtype.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=0.1)
        >>> state = tx.init(jnp.zeros(1))
        >>> state.hyperparams["learning_rate"] = jnp.asarray(0.5, jnp.float32)
        >>> tx.update(jnp.ones(1), state)[0]
        Array([-0.5], dtype=float32)
    """
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    if not static.issubset(signature.parameters):
        raise HyperparameterError(
            "gradtx.inject_hyperparams: static_args must name parameters of "
            f"inner_factory {sorted(signature.parameters)}, got {sorted(static)!r}"
        )
    dtype = _validate.check_dtype(
        "inject_hyperparams", "hyperparam_dtype", hyperparam_dtype
    )

    @functools.wraps(inner_factory)
    def wrapped_factory(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        positional, other, scheduled, numeric = _split_arguments(bound, static)
        build = lambda hps: with_extra_args_support(
            inner_factory(*positional, **other, **hps)
        )
        return _injected(build, scheduled, numeric, dtype)

    return wrapped_factory


def _injected(
    build: Callable[[dict[str, Any]], GradientTransformation],
    scheduled: dict[str, Any],
    numeric: dict[str, Any],
    dtype: Any,
) -> GradientTransformation:
    """The transformation that rebuilds the inner one from the state's values."""

    def init(params):
        hparams = {k: _to_hparam(v, dtype) for k, v in numeric.items()}
        sched_states = {k: f.init() for k, f in scheduled.items()}
        hparams.update(
            {k: _to_hparam(f(sched_states[k]), dtype) for k, f in scheduled.items()}
        )
        return InjectStatefulHyperparamsState(
            count=jnp.zeros([], jnp.int32),
            hyperparams=hparams,
            hyperparams_states=sched_states,
            inner_state=build(hparams).init(params),
        )

    def update(updates, state, params=None, **extra_args):
        hparams = {k: _to_hparam(v, dtype) for k, v in state.hyperparams.items()}
        old = state.hyperparams_states
        hparams.update(
            {
                k: _to_hparam(f(old[k], **extra_args), dtype)
                for k, f in scheduled.items()
            }
        )
        sched_states = {k: f.update(old[k], **extra_args) for k, f in scheduled.items()}
        updates, inner_state = build(hparams).update(
            updates, state.inner_state, params, **extra_args
        )
        return updates, InjectStatefulHyperparamsState(
            count=_numerics.safe_int32_increment(state.count),
            hyperparams=hparams,
            hyperparams_states=sched_states,
            inner_state=inner_state,
        )

    return GradientTransformation(init, update)


def inject_stateful_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any | None = None,
) -> Callable[..., GradientTransformation]:
    """The same as `inject_hyperparams`, which accepts stateful schedules too.

    Kept for optax compatibility (optax deprecates it; gradtx does not warn).

    Example:
        >>> import gradtx
        >>> factory = gradtx.inject_stateful_hyperparams(gradtx.sgd)
        >>> sorted(factory(learning_rate=0.1, momentum=0.9).init({}).hyperparams)
        ['learning_rate', 'momentum']
    """
    return inject_hyperparams(inner_factory, static_args, hyperparam_dtype)
