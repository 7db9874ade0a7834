# SPDX-License-Identifier: Apache-2.0
"""Adaptive-denominator aliases: `adagrad` and `rmsprop`."""

from __future__ import annotations

from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._base import GradientTransformation, identity
from gradtx._combine import chain
from gradtx._types import ScalarOrSchedule
from gradtx.transforms._accumulation import trace
from gradtx.transforms._rms import scale_by_rms, scale_by_rss, scale_by_stddev
from gradtx.transforms._scaling import scale_by_learning_rate


@_validate.names_errors()
def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: ArrayLike = 0.1,
    eps: ArrayLike = 1e-7,
) -> GradientTransformation:
    """AdaGrad: `chain(scale_by_rss(...), scale_by_learning_rate(lr))`.

    See `scale_by_rss` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adagrad(1.0, initial_accumulator_value=0.0, eps=0.0)
        >>> tx.update(jnp.array([4.0]), tx.init(jnp.ones(1)))[0]
        Array([-1.], dtype=float32)

    References:
        Duchi et al., 2011: https://jmlr.org/papers/v12/duchi11a.html
    """
    return chain(
        scale_by_rss(initial_accumulator_value, eps),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors({"trace.decay": "momentum"})
def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: ArrayLike = 0.9,
    eps: ArrayLike = 1e-8,
    initial_scale: ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: ArrayLike | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    """RMSProp, optionally centered and with momentum.

    See `scale_by_rms` / `scale_by_stddev` for the arguments.

    As in optax, momentum is applied *after* the learning rate:
    `chain(scale_by_rms or scale_by_stddev, scale_by_learning_rate(lr),
    trace(momentum))`,
    which is what PyTorch's RMSprop does too.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.rmsprop(0.1, decay=0.0, eps=0.0)
        >>> tx.update(jnp.array([-2.0]), tx.init(jnp.ones(1)))[0]
        Array([0.1], dtype=float32)

    References:
        Hinton, 2012; Graves, 2013 (centered): https://arxiv.org/abs/1308.0850
    """
    precondition = scale_by_stddev if centered else scale_by_rms
    return chain(
        precondition(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
        scale_by_learning_rate(learning_rate),
        identity() if momentum is None else trace(momentum, nesterov),
    )
