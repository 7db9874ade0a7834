# SPDX-License-Identifier: Apache-2.0
"""What the line searches share: scalar dtypes, tree algebra, extra-argument plumbing.

The line searches evaluate the objective at `params + stepsize * updates`. Scalars
(stepsizes, values, slopes, errors) live in the real compute dtype of the params
(float32 for bf16/f16/f32 params, float64 for float64 ones); the candidate params
keep the params' own dtype, because that is what the user's `value_fn` expects.
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _numerics, _validate
from gradtx._errors import MissingValueError


def scalar_dtype(params: Any) -> Any:
    """The real dtype a line search keeps its scalars in (at least float32)."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        return _numerics.hparam_dtype()
    return _numerics.real_dtype(_numerics.compute_dtype(leaves[0].dtype))


def vdot(a: Any, b: Any) -> jax.Array:
    """Returns the real part of the tree inner product `<a, b>`, per-leaf `jnp.vdot`.

    Leaves are summed left to right starting from 0, as optax's `tree.vdot` does, so
    float32 results agree with optax bit for bit.
    """

    def leaf(x, y):
        x, y = _numerics.up(x), _numerics.up(y)
        return jnp.real(jnp.vdot(x, y, precision=jax.lax.Precision.HIGHEST))

    return jax.tree.reduce(operator.add, jax.tree.map(leaf, a, b), initializer=0)


def add_scale(params: Any, stepsize: jax.Array, updates: Any) -> Any:
    """`params + stepsize * updates`, computed at least in float32, in params' dtype."""

    def leaf(p, u):
        pc, uc = _numerics.up(p), _numerics.up(u)
        return (pc + _numerics.like(stepsize, pc) * uc.astype(pc.dtype)).astype(p.dtype)

    return jax.tree.map(leaf, params, updates)


def scale(stepsize: jax.Array, updates: Any) -> Any:
    """`stepsize * updates` leaf by leaf, keeping each leaf's dtype."""

    def leaf(u):
        uc = _numerics.up(u)
        return (_numerics.like(stepsize, uc) * uc).astype(u.dtype)

    return jax.tree.map(leaf, updates)


def fn_kwargs(value_fn: Callable[..., Any], extra_args: dict[str, Any]) -> dict:
    """The extra keyword arguments that `value_fn` takes (all of them for `**kw`).

    Other keywords are ignored, as every gradtx update ignores arguments meant for
    other transforms of a chain (optax raises a TypeError instead).
    """
    try:
        params = inspect.signature(value_fn).parameters
    except (TypeError, ValueError):
        return dict(extra_args)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(extra_args)
    return {k: v for k, v in extra_args.items() if k in params}


def require(fn: str, **needed: Any) -> None:
    """Raises `MissingValueError` naming the first missing update argument."""
    for name, value in needed.items():
        if value is None:
            raise MissingValueError(
                f"gradtx.{fn}: update needs {name}= (call "
                "update(updates, state, params, value=..., grad=..., value_fn=...))"
            )


def nan_to_inf(x: jax.Array) -> jax.Array:
    """Criterion errors: negative means satisfied (0), NaN means infinitely violated."""
    x = jnp.maximum(x, 0.0)
    return jnp.where(jnp.isnan(x), jnp.inf, x)


def cond_print(condition: jax.Array, message: str, **kwargs: Any) -> None:
    """Prints `message` from inside jit when `condition` holds (for `verbose=True`)."""
    jax.lax.cond(
        condition,
        lambda: jax.debug.print(message, **kwargs, ordered=True),
        lambda: None,
    )


def check_int(fn: str, name: str, value: Any, minimum: int) -> None:
    """An integer count >= `minimum` (a traced value passes)."""
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, jax.Array) and value.shape == () and value.dtype.kind in "iu":
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _validate._fail(fn, name, value, f"an integer >= {minimum}")
    if value < minimum:
        raise _validate._fail(fn, name, value, f"an integer >= {minimum}")


def check_at_least(fn: str, name: str, value: Any, low: float, *, open_: bool) -> None:
    """`value > low` (or `>=`), where `+inf` is allowed (a meaningful setting)."""
    x = _validate.concrete_float(value)
    if x is None:
        return
    if math.isnan(x) or x < low or (open_ and x == low):
        allowed = f"{'>' if open_ else '>='} {low} (inf allowed)"
        raise _validate._fail(fn, name, value, allowed)


def check_choice(fn: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    """A string switch that must be one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise _validate._fail(fn, name, value, f"one of {choices}")
