# SPDX-License-Identifier: Apache-2.0
"""Measurements of the updates kept in the state: `snapshot`, `monitor`, `ema`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _validate
from gradtx._base import GradientTransformation, stateless, with_extra_args_support
from gradtx._combine import chain
from gradtx._errors import HyperparameterError
from gradtx._types import Updates
from gradtx.transforms._accumulation import ema

Measure = Callable[[Updates], Any]


class SnapshotState(NamedTuple):
    """State of `snapshot`: `{measure_name: measurement}`."""

    measurement: dict[str, Any]


class MonitorState(NamedTuple):
    """State of `monitor`.

    Attributes:
        measurements: `{name: measurement}`, one entry per measure.
        measure_states: The states of the measures, in the order they were given.
    """

    measurements: dict[str, Any]
    measure_states: tuple[Any, ...]


def snapshot(measure_name: str, measure: Measure) -> GradientTransformation:
    """Stores `measure(updates)` in the state and passes the updates unchanged.

    In a chain, `updates` are the gradients as transformed so far, so a snapshot
    between two blocks shows an intermediate value. `init` stores
    `measure(params)`, as optax does.

    Args:
        measure_name: The key of the measurement in `state.measurement`.
        measure: Maps the updates to any pytree of arrays.

    Returns:
        A transformation with `SnapshotState`.

    Raises:
        HyperparameterError: If `measure_name` is not a string or `measure` is not
            callable.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.snapshot("norm", gradtx.global_norm)
        >>> _, state = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
        >>> state.measurement["norm"]
        Array(5., dtype=float32)
    """
    if not isinstance(measure_name, str):
        raise HyperparameterError(
            f"gradtx.snapshot: measure_name must be a str, got {measure_name!r}"
        )
    if not callable(measure):
        raise HyperparameterError(
            f"gradtx.snapshot: measure must be callable, got {measure!r}"
        )

    def init(params):
        return SnapshotState({measure_name: measure(params)})

    def update(updates, state, params=None, **extra_args):
        del state, params, extra_args
        return updates, SnapshotState({measure_name: measure(updates)})

    return GradientTransformation(init, update)


def _as_transform(name: str, measure: Any) -> GradientTransformation:
    if callable(measure):
        return stateless(lambda u, _, m=measure: m(u))
    if hasattr(measure, "init") and hasattr(measure, "update"):
        return with_extra_args_support(measure)
    raise HyperparameterError(
        f"gradtx.monitor: measures[{name!r}] must be a callable or a gradient "
        f"transformation, got {measure!r}"
    )


def monitor(measures: dict[str, Any]) -> GradientTransformation:
    """Stores several (possibly stateful) measurements of the updates in the state.

    Each measure is a callable `updates -> measurement` or a transformation whose
    output updates are the measurement (e.g. `measure_with_ema`). The updates pass
    through unchanged. Unlike optax, whose `init` holds an empty dict, `init` holds
    zeros shaped like each measurement, so the state keeps its structure under
    `lax.scan`; a measure that needs an extra argument (`value=`) cannot be shaped
    at `init` and, as in optax, appears at the first update.

    Args:
        measures: Maps a measurement name to its callable or transformation.

    Returns:
        A transformation with `MonitorState`; extra keyword arguments reach every
        measure.

    Raises:
        HyperparameterError: If `measures` is not a dict of callables and
            transformations.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.monitor({"norm": gradtx.global_norm})
        >>> _, state = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
        >>> state.measurements["norm"]
        Array(5., dtype=float32)
    """
    if not isinstance(measures, dict):
        raise HyperparameterError(
            f"gradtx.monitor: measures must be a dict, got {measures!r}"
        )
    txs = {name: _as_transform(name, m) for name, m in measures.items()}
    names = tuple(txs)

    def init(params):
        states = tuple(txs[n].init(params) for n in names)
        zeros = {}
        for n, s in zip(names, states, strict=True):
            try:  # shaped like the first measurement; no value is computed
                shape = jax.eval_shape(
                    lambda p, s=s, n=n: txs[n].update(p, s, p)[0], params
                )
            except TypeError:  # it needs an extra argument (e.g. value=): as optax
                continue
            zeros[n] = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shape)
        return MonitorState(measurements=zeros, measure_states=states)

    def update(updates, state, params=None, **extra_args):
        measurements, new_states = {}, []
        for n, s in zip(names, state.measure_states, strict=True):
            measurements[n], s = txs[n].update(updates, s, params, **extra_args)
            new_states.append(s)
        return updates, MonitorState(measurements, tuple(new_states))

    return GradientTransformation(init, update)


def _floating(tree: Any) -> Any:
    """Casts bool and integer leaves to float32, so a moving average can hold them."""
    return jax.tree.map(
        lambda x: jnp.asarray(x).astype(_numerics.compute_dtype(jnp.asarray(x).dtype)),
        tree,
    )


@_validate.names_errors()
def measure_with_ema(
    measure: Measure,
    decay: ArrayLike,
    debias: bool = True,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    """Takes `measure(updates)` and returns its exponential moving average.

    Meant as a stateful measure inside `monitor`; its output updates *are* the
    averaged measurement. It is `chain(stateless(measure), ema(...))`; bool and
    integer measurements (e.g. "was the update clipped?") are averaged in float32.

    Args:
        measure: Maps the updates to any pytree of arrays.
        decay: Averaging coefficient in [0, 1]; see `ema`.
        debias: Divide by `1 - decay**k`; see `ema`.
        accumulator_dtype: Storage dtype of the average; None keeps the
            measurement's (floating) dtype.

    Returns:
        A transformation whose state is `(EmptyState(), EmaState(count, ema))`.

    Raises:
        HyperparameterError: If `measure` is not callable or a concrete `decay` is
            outside [0, 1].

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.measure_with_ema(lambda u: gradtx.global_norm(u) > 1, 0.9)
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))[0]
        Array(1., dtype=float32)
    """
    if not callable(measure):
        raise HyperparameterError(
            f"gradtx.measure_with_ema: measure must be callable, got {measure!r}"
        )
    base = ema(decay, debias, accumulator_dtype)

    def init_for_measurement(params):
        shapes = jax.eval_shape(lambda p: _floating(measure(p)), params)
        return base.init(jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes))

    return chain(
        stateless(lambda updates, _: _floating(measure(updates))),
        base._replace(init=init_for_measurement),
    )
