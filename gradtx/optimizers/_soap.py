# SPDX-License-Identifier: Apache-2.0
"""The SOAP alias: `scale_by_soap`, decoupled weight decay and the learning rate."""

from __future__ import annotations

from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._base import GradientTransformation
from gradtx._combine import chain
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._soap import scale_by_soap
from gradtx.transforms._weight_decay import add_decayed_weights


@_validate.names_errors()
def soap(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.95,
    b2: ArrayLike = 0.95,
    shampoo_beta: ArrayLike | None = None,
    eps: ArrayLike = 1e-8,
    weight_decay: ScalarOrSchedule = 0.01,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """SOAP: `chain(scale_by_soap(...), add_decayed_weights(...), lr)`.

    See `scale_by_soap` and `add_decayed_weights` for the arguments. The defaults
    are the reference implementation's (lr 3e-3 there, required here as in every
    gradtx alias).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.soap(0.1, weight_decay=0.0)
        >>> p = jnp.zeros((2, 2))
        >>> u, s = tx.update(jnp.eye(2), tx.init(p), p)
        >>> u, s = tx.update(jnp.eye(2), s, p)
        >>> round(float(u[0, 0]), 4), round(float(u[0, 1]), 4)
        (-0.1, -0.0)

    References:
        Vyas et al., 2024: https://arxiv.org/abs/2409.11321
    """
    return chain(
        scale_by_soap(
            b1, b2, shampoo_beta, eps, precondition_frequency, max_precond_dim
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
