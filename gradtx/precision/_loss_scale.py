# SPDX-License-Identifier: Apache-2.0
"""Dynamic loss scaling as a transform: `with_loss_scaling`, `scale_loss`, `loss_scale`.

Every setting is a closure constant and only the values that change live in the
state, so no `jit`, `scan`, `tree_map`, flatten/unflatten or checkpoint can drop one
(jmp PR#44 lost `min_loss_scale` in `tree_flatten`, RELIABILITY.md B23).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._errors import HyperparameterError, TreeMismatchError

_FN = "with_loss_scaling"
_F32_MAX = float(np.finfo(np.float32).max)


class LossScaleState(NamedTuple):
    """State of `with_loss_scaling`: the values that change, never the settings.

    Attributes:
        scale: The current loss scale, a float32 scalar whatever the params' dtype.
        growth_count: Consecutive finite steps since the scale last changed, an int32
            in `[0, growth_interval)`.
        skipped_total: Non-finite steps skipped so far, an int32 that saturates.
        inner_state: The state of the wrapped transformation.
    """

    scale: jax.Array
    growth_count: jax.Array
    skipped_total: jax.Array
    inner_state: Any


def _check_settings(
    init_scale: Any,
    growth_factor: Any,
    backoff_factor: Any,
    growth_interval: Any,
    min_scale: Any,
    dynamic: Any,
) -> None:
    # The scale lives in float32, so init_scale must be finite there too.
    _validate.check_range(_FN, "init_scale", init_scale, 0.0, _F32_MAX, low_open=True)
    _validate.check_range(_FN, "growth_factor", growth_factor, 1.0, low_open=True)
    _validate.check_range(
        _FN, "backoff_factor", backoff_factor, 0.0, 1.0, low_open=True, high_open=True
    )
    _validate.check_positive_int(_FN, "growth_interval", growth_interval)
    if not isinstance(growth_interval, jax.core.Tracer) and (
        growth_interval > _numerics.INT32_MAX  # the counter is int32
    ):
        raise HyperparameterError(
            f"gradtx.{_FN}: growth_interval must be an integer in [1, 2**31 - 1], "
            f"got {growth_interval!r}"
        )
    _validate.check_range(_FN, "min_scale", min_scale, 0.0, low_open=True)
    low, high = (
        _validate.concrete_float(min_scale),
        _validate.concrete_float(init_scale),
    )
    if low is not None and high is not None and low > high:
        raise HyperparameterError(
            f"gradtx.{_FN}: min_scale must be a finite value in (0, init_scale] = "
            f"(0, {init_scale!r}], got {min_scale!r}"
        )
    if not isinstance(dynamic, (bool, np.bool_)):
        raise HyperparameterError(
            f"gradtx.{_FN}: dynamic must be a bool, got {dynamic!r}"
        )


def _unscale(g: jax.Array, scale: jax.Array) -> jax.Array:
    """`g / scale` computed in float32 (or wider), returned in `g`'s dtype."""
    cd = _numerics.compute_dtype(g.dtype)
    return (g.astype(cd) / scale.astype(cd)).astype(g.dtype)


def _next_scale(
    finite: jax.Array,
    scale: jax.Array,
    count: jax.Array,
    settings: tuple[Any, Any, int, Any],
) -> tuple[jax.Array, jax.Array]:
    """The scale and growth counter after one step (all scalars, no control flow)."""
    growth, backoff, interval, floor = settings
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    count = count + jnp.int32(1)
    grow = count >= jnp.int32(interval)
    grown = scale * f32(growth)
    # Growing into inf would turn the next finite step into an overflow: keep s.
    grown = jnp.where(grow & jnp.isfinite(grown), grown, scale)
    backed_off = jnp.maximum(scale * f32(backoff), f32(floor))
    new_scale = jnp.where(finite, grown, backed_off)
    new_count = jnp.where(finite & ~grow, count, jnp.int32(0))
    return new_scale, new_count


def with_loss_scaling(
    inner: Any,
    *,
    init_scale: ArrayLike = 2.0**16,
    growth_factor: ArrayLike = 2.0,
    backoff_factor: ArrayLike = 0.5,
    growth_interval: int = 2000,
    min_scale: ArrayLike = 1.0,
    dynamic: bool = True,
) -> GradientTransformation:
    """Unscales loss-scaled gradients, skips non-finite steps and adapts the scale.

    Differentiate `scale_loss(loss, state)`. Defaults are torch `GradScaler`'s;
    settings are closure constants, never state (jmp PR#44).

    Update rule:
        g = g / s (in float32);  finite = all(isfinite(g)) over the whole tree
        finite: u, inner = inner(g); n += 1; at n == growth_interval: n = 0 and
            s *= growth_factor unless that is inf
        else: u = 0; inner kept bit for bit; n = 0; skipped_total += 1;
            s = max(s * backoff_factor, min_scale)    (dynamic=False: s fixed)

    Args:
        inner: The transformation that receives the unscaled gradients.
        init_scale: The first scale, finite in (0, float32 max].
        growth_factor: Multiplies the scale after `growth_interval` finite steps, > 1.
        backoff_factor: Multiplies the scale after a non-finite step, in (0, 1).
        growth_interval: Consecutive finite steps before the scale grows, an int >= 1.
        min_scale: The floor of the scale, in (0, init_scale].
        dynamic: False keeps the scale at `init_scale`; non-finite steps still skip.

    Returns:
        A transformation with `LossScaleState`.

    Raises:
        HyperparameterError: If a concrete setting is out of range.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> tx = gradtx.with_loss_scaling(gradtx.sgd(0.5), init_scale=8.0)
        >>> state = tx.init(jnp.zeros(2))
        >>> grads = jax.grad(lambda p: gradtx.scale_loss(p.sum(), state))(jnp.zeros(2))
        >>> grads, tx.update(grads, state)[0]
        (Array([8., 8.], dtype=float32), Array([-0.5, -0.5], dtype=float32))
    """
    _check_settings(
        init_scale, growth_factor, backoff_factor, growth_interval, min_scale, dynamic
    )
    tx = with_extra_args_support(inner)
    # A fixed scale runs the same code with factors of 1 (min_scale <= init_scale).
    settings = (
        growth_factor if dynamic else 1.0,
        backoff_factor if dynamic else 1.0,
        growth_interval,
        min_scale,
    )

    def init(params):
        return LossScaleState(
            scale=jnp.asarray(init_scale, jnp.float32),
            growth_count=jnp.zeros([], jnp.int32),
            skipped_total=jnp.zeros([], jnp.int32),
            inner_state=tx.init(params),
        )

    def update(updates, state, params=None, **extra_args):
        grads = _tree.map_leaves(lambda g: _unscale(g, state.scale), updates)
        finite = _tree.all_finite(grads)
        new_updates, new_inner = tx.update(
            grads, state.inner_state, params, **extra_args
        )
        # `where`, not a multiply by 0: the skipped inner step may hold inf or NaN.
        new_updates = _tree.select(finite, new_updates, _tree.zeros_like(new_updates))
        inner_state = _tree.select(finite, new_inner, state.inner_state)
        scale, count = _next_scale(finite, state.scale, state.growth_count, settings)
        skipped = jnp.where(
            finite,
            state.skipped_total,
            _numerics.safe_int32_increment(state.skipped_total),
        )
        return new_updates, LossScaleState(scale, count, skipped, inner_state)

    return GradientTransformation(init, update)


def _find(state: Any, fn: str) -> LossScaleState:
    found = [
        (jax.tree_util.keystr(p), node)
        for p, node in _tree.instances(state, LossScaleState)
    ]
    if len(found) == 1:
        return found[0][1]
    if not found:
        raise TreeMismatchError(
            f"gradtx.{fn}: the state holds no LossScaleState; pass the state of a "
            f"transformation built with gradtx.with_loss_scaling, got a "
            f"{type(state).__name__}"
        )
    paths = ", ".join(repr(p or "<root>") for p, _ in found)
    raise TreeMismatchError(
        f"gradtx.{fn}: the state holds {len(found)} LossScaleStates (at {paths}); "
        "pass the one that belongs to this loss"
    )


def scale_loss(loss: ArrayLike, state: Any) -> jax.Array:
    """Multiplies `loss` by the current scale of the `LossScaleState` inside `state`.

    Differentiate the result instead of the loss. The product is computed and
    returned in float32 (or wider), so its value stays finite even for a float16
    loss; compute the loss itself in float32, as its gradient seed is the scale.

    Args:
        loss: The loss (any shape, usually a scalar).
        state: An optimizer state holding exactly one `LossScaleState`, at any depth.

    Returns:
        `loss * scale`.

    Raises:
        TreeMismatchError: If `state` holds no `LossScaleState`, or several.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.chain(gradtx.with_loss_scaling(gradtx.sgd(0.1)))
        >>> gradtx.scale_loss(jnp.float32(0.5), tx.init(jnp.zeros(1)))
        Array(32768., dtype=float32)
    """
    scale = _find(state, "scale_loss").scale
    loss = jnp.asarray(loss)
    cd = _numerics.compute_dtype(loss.dtype)
    return loss.astype(cd) * scale.astype(cd)


def loss_scale(state: Any) -> jax.Array:
    """Returns the current scale of the `LossScaleState` inside `state`.

    Args:
        state: An optimizer state holding exactly one `LossScaleState`, at any depth.

    Returns:
        The scale, a float32 scalar.

    Raises:
        TreeMismatchError: If `state` holds no `LossScaleState`, or several.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.with_loss_scaling(gradtx.sgd(0.1), init_scale=1024.0)
        >>> gradtx.loss_scale(tx.init(jnp.zeros(1)))
        Array(1024., dtype=float32)
    """
    return _find(state, "loss_scale").scale
