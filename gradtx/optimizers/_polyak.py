# SPDX-License-Identifier: Apache-2.0
"""SGD with the Polyak step size: `polyak_sgd`."""

from __future__ import annotations

from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._base import GradientTransformation
from gradtx._combine import chain
from gradtx._types import ScalarOrSchedule
from gradtx.optimizers._sgd import sgd
from gradtx.transforms._polyak import scale_by_polyak


@_validate.names_errors({"sgd.learning_rate": "scaling"})
def polyak_sgd(
    max_learning_rate: ArrayLike = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: ArrayLike = 0.0,
    eps: ArrayLike = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    """SGD with the stochastic Polyak step size (SPS); `update` needs `value=`.

    `chain(sgd(scaling), scale_by_polyak(max_learning_rate, f_min, eps, variant))`;
    see `scale_by_polyak`. As in optax the Polyak step divides by the squared norm
    of `-scaling * g`, so `scaling` (a float or a schedule) enters squared there.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> f = lambda w: jnp.sum(w**2)
        >>> tx, w = gradtx.polyak_sgd(), jnp.array([1.0, 2.0])
        >>> v, g = jax.value_and_grad(f)(w)
        >>> u, _ = tx.update(g, tx.init(w), w, value=v)
        >>> gradtx.apply_updates(w, u)
        Array([0.5, 1. ], dtype=float32)

    References:
        Loizou et al., 2021: https://arxiv.org/abs/2002.10542
    """
    return chain(
        sgd(learning_rate=scaling),
        scale_by_polyak(
            max_learning_rate=max_learning_rate, f_min=f_min, eps=eps, variant=variant
        ),
    )
