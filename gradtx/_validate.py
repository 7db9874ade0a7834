# SPDX-License-Identifier: Apache-2.0
"""Construction-time checks of concrete hyperparameters.

Values that are traced, or schedules (callables), cannot be checked here and pass
through; everything concrete is checked once, when the transform is built.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._errors import HyperparameterError


def concrete_float(value: Any) -> float | None:
    """Returns `value` as a float when it is a concrete real scalar, else None."""
    if value is None or callable(value) or isinstance(value, jax.core.Tracer):
        return None
    try:
        arr = np.asarray(value)
    except Exception:  # e.g. an abstract value: nothing to check
        return None
    if arr.shape != () or arr.dtype.kind not in "biuf":
        return None
    return float(arr)


F = TypeVar("F", bound=Callable[..., Any])


def _fail(
    fn: str, name: str, value: Any, allowed: str, cls: type = HyperparameterError
) -> Exception:
    err = cls(f"gradtx.{fn}: {name} must be {allowed}, got {value!r}")
    vars(err)["gradtx_detail"] = (fn, name, value, allowed)  # read by `names_errors`
    return err


def names_errors(renamed: dict[str, str] | None = None) -> Callable[[F], F]:
    """Makes bad hyperparameters of an alias name the alias, not the checking block.

    Args:
        renamed: Maps `"<block>.<argument>"` to the alias's argument where the names
            differ (`sgd`'s `momentum` is checked as `trace`'s `decay`).

    Returns:
        A decorator for optimizer aliases.
    """
    renamed = renamed or {}

    def decorate(alias: F) -> F:
        @functools.wraps(alias)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return alias(*args, **kwargs)
            except (HyperparameterError, TypeError) as e:
                detail = vars(e).get("gradtx_detail")
                if detail is None:
                    raise
                block, name, value, allowed = detail
                name = renamed.get(f"{block}.{name}", name)
                raise _fail(alias.__name__, name, value, allowed, type(e)) from e

        return cast(F, wrapper)

    return decorate


def check_range(
    fn: str,
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raises `HyperparameterError` unless a concrete `value` is finite and in range."""
    x = concrete_float(value)
    if x is None:
        return
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    if low is not None and high is not None:
        allowed = f"a finite value in {lo}{low}, {high}{hi}"
    elif low is not None:
        allowed = f"a finite value {'>' if low_open else '>='} {low}"
    elif high is not None:
        allowed = f"a finite value {'<' if high_open else '<='} {high}"
    else:
        allowed = "a finite value"
    if not math.isfinite(x):
        raise _fail(fn, name, value, allowed)
    if low is not None and (x < low or (low_open and x == low)):
        raise _fail(fn, name, value, allowed)
    if high is not None and (x > high or (high_open and x == high)):
        raise _fail(fn, name, value, allowed)


def check_nonnegative(fn: str, name: str, value: Any) -> None:
    """Checks `value >= 0` and finite."""
    check_range(fn, name, value, 0.0)


def check_decay(fn: str, name: str, value: Any, *, closed: bool = False) -> None:
    """Checks a decay rate (beta, momentum, rho) in [0, 1), or [0, 1] if `closed`."""
    check_range(fn, name, value, 0.0, 1.0, high_open=not closed)


def check_positive_int(fn: str, name: str, value: Any, *, minimum: int = 1) -> None:
    """Checks that `value` is a Python/NumPy integer >= `minimum`."""
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise HyperparameterError(
            f"gradtx.{fn}: {name} must be an integer >= {minimum}, got {value!r}"
        )
    if value < minimum:
        raise HyperparameterError(
            f"gradtx.{fn}: {name} must be an integer >= {minimum}, got {value!r}"
        )


def check_dtype(fn: str, name: str, dtype: Any) -> Any:
    """Returns the canonical floating dtype of `dtype` (or None); else TypeError."""
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise _fail(fn, name, dtype, "a floating dtype", TypeError) from e
    if not jnp.issubdtype(dt, jnp.inexact):
        raise _fail(fn, name, dtype, "a floating dtype", TypeError)
    return jax.dtypes.canonicalize_dtype(dt)
