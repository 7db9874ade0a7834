# SPDX-License-Identifier: Apache-2.0
"""L-BFGS optimizer alias: `lbfgs`."""

from __future__ import annotations

from gradtx import _validate
from gradtx._base import GradientTransformation, identity
from gradtx._combine import chain
from gradtx._errors import HyperparameterError
from gradtx._types import ScalarOrSchedule
from gradtx.transforms._lbfgs import scale_by_lbfgs
from gradtx.transforms._linesearch_zoom import scale_by_zoom_linesearch
from gradtx.transforms._scaling import scale, scale_by_learning_rate

# optax's default line search, built once at import; it holds no state.
_ZOOM = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")


@_validate.names_errors()
def lbfgs(
    learning_rate: ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: GradientTransformation | None = _ZOOM,
) -> GradientTransformation:
    """L-BFGS: the L-BFGS direction, negated, scaled by a line search.

    `chain(scale_by_lbfgs(memory_size, scale_init_precond), scale(-1.0) or
    scale_by_learning_rate(learning_rate), linesearch or identity())`; see
    `scale_by_lbfgs` and `scale_by_zoom_linesearch`. `update` needs `params`,
    `value=`, `grad=`, `value_fn=`; reuse the line search's value and gradient with
    `value_and_grad_from_state`. The default search is built once, at import (as in
    optax); it holds no state, so sharing it is safe.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> f = lambda w: jnp.sum((w - 1.0) ** 2)
        >>> tx, w = gradtx.lbfgs(), jnp.zeros(3)
        >>> state = tx.init(w)
        >>> vg = gradtx.value_and_grad_from_state(f)
        >>> for _ in range(3):
        ...     v, g = vg(w, state=state)
        ...     u, state = tx.update(g, state, w, value=v, grad=g, value_fn=f)
        ...     w = gradtx.apply_updates(w, u)
        >>> w
        Array([1., 1., 1.], dtype=float32)

    References:
        Nocedal & Wright, Numerical Optimization, 2006, Algorithm 7.5;
        Liu & Nocedal, 1989: https://doi.org/10.1007/BF01589116
    """
    if linesearch is not None and not (
        hasattr(linesearch, "init") and hasattr(linesearch, "update")
    ):
        raise HyperparameterError(
            "gradtx.lbfgs: linesearch must be a transformation (init, update) or None, "
            f"got {linesearch!r}"
        )
    return chain(
        scale_by_lbfgs(memory_size=memory_size, scale_init_precond=scale_init_precond),
        scale(-1.0) if learning_rate is None else scale_by_learning_rate(learning_rate),
        identity() if linesearch is None else linesearch,
    )
