# SPDX-License-Identifier: Apache-2.0
"""Polyak step size: `scale_by_polyak` (SPS, Loizou et al. 2021; SPS+)."""

from __future__ import annotations

import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _tree, _validate
from gradtx._base import EmptyState, GradientTransformation
from gradtx.transforms import _linesearch_util as ls

_FN = "scale_by_polyak"
# optax's threshold `jnp.finfo(float).eps` (float64's), as a weak Python float.
_TINY = 2.220446049250313e-16


def scale_by_polyak(
    f_min: ArrayLike = 0.0,
    max_learning_rate: ArrayLike = 1.0,
    eps: ArrayLike = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    """Multiplies the updates by the Polyak step size; `update` needs `value=`.

    The squared norm is taken of the updates this block receives (in `polyak_sgd`,
    after `sgd(scaling)`), in float32 or wider. A zero gradient gives a zero step.

    Update rule:
        gap = value - f_min  (sps+: max(gap, 0));  n = ||u||^2
        u <- u * (0 if n + eps <= 2.2e-16 else min(gap / (n + eps), max_learning_rate))

    Args:
        f_min: A lower bound on the objective (finite).
        max_learning_rate: Cap of the step size, >= 0.
        eps: Added to the squared norm, >= 0.
        variant: "sps" (Loizou et al.) or "sps+" (Garrigos et al.: the gap's positive
            part, so a value below `f_min` gives no step instead of an ascent).

    Returns:
        A stateless transformation (`EmptyState`).

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range or
            `variant` is unknown.
        MissingValueError: If `update` gets no `value=`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.scale_by_polyak()
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)), value=2.0)[0]
        Array([1.], dtype=float32)

    References:
        Loizou et al., 2021: https://arxiv.org/abs/2002.10542;
        Garrigos et al., 2023: https://arxiv.org/abs/2307.14528
    """
    _validate.check_range(_FN, "f_min", f_min)
    _validate.check_nonnegative(_FN, "max_learning_rate", max_learning_rate)
    _validate.check_nonnegative(_FN, "eps", eps)
    ls.check_choice(_FN, "variant", variant, ("sps", "sps+"))

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        ls.require(_FN, value=value)
        sq_norm = _tree.sum_sq(updates)  # float32, or float64 for float64 updates
        dtype = sq_norm.dtype
        h = lambda x: jnp.asarray(x).astype(dtype)
        gap = h(value) - h(f_min)
        if variant == "sps+":
            gap = jnp.maximum(gap, 0.0)
        denom = sq_norm + h(eps)
        step = jnp.where(
            denom <= _TINY,
            jnp.zeros([], dtype),
            jnp.minimum(gap / denom, h(max_learning_rate)),
        )
        return ls.scale(step, updates), state

    return GradientTransformation(init, update)
