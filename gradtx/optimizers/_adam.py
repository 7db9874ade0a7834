# SPDX-License-Identifier: Apache-2.0
"""Adam-family aliases: adam, adamw, nadam, nadamw, amsgrad, adamax, adamaxw."""

from __future__ import annotations

from typing import Any

from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._base import GradientTransformation
from gradtx._combine import chain
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.transforms._adam import scale_by_adam, scale_by_adamax, scale_by_amsgrad
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights


@_validate.names_errors()
def adam(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any | None = None,
) -> GradientTransformation:
    """Adam: `chain(scale_by_adam(...), scale_by_learning_rate(lr))`.

    See `scale_by_adam` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adam(0.1)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0]
        Array([-0.1], dtype=float32)

    References:
        Kingma & Ba, 2014: https://arxiv.org/abs/1412.6980
    """
    return chain(
        scale_by_adam(
            b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype
        ),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def adamw(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: MaskOrFn | None = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any | None = None,
) -> GradientTransformation:
    """AdamW: Adam with decoupled weight decay.

    See `scale_by_adam` and `add_decayed_weights` for the arguments.

    `chain(scale_by_adam(...), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(lr))`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adamw(0.1, weight_decay=0.0)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0]
        Array([-0.1], dtype=float32)

    References:
        Loshchilov & Hutter, 2019: https://arxiv.org/abs/1711.05101
    """
    return chain(
        scale_by_adam(
            b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def nadam(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
    nu_dtype: Any | None = None,
) -> GradientTransformation:
    """NAdam: `adam` with `nesterov=True` by default; see `adam`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.nadam(0.1)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0].shape
        (1,)

    References:
        Dozat, 2016: https://openreview.net/pdf?id=OM0jvwB8jIp57ZJjtNEZ
    """
    return chain(
        scale_by_adam(
            b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype
        ),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def nadamw(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: MaskOrFn | None = None,
    *,
    nesterov: bool = True,
    nu_dtype: Any | None = None,
) -> GradientTransformation:
    """NAdamW: `adamw` with `nesterov=True` by default; see `adamw`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.nadamw(0.1)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0].shape
        (1,)
    """
    return chain(
        scale_by_adam(
            b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    """AMSGrad: `chain(scale_by_amsgrad(...), scale_by_learning_rate(lr))`.

    See `scale_by_amsgrad` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.amsgrad(0.1)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0]
        Array([-0.1], dtype=float32)

    References:
        Reddi et al., 2018: https://openreview.net/forum?id=ryQu7f-RZ
    """
    return chain(
        scale_by_amsgrad(
            b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu
        ),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def adamax(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
) -> GradientTransformation:
    """AdaMax: `chain(scale_by_adamax(...), scale_by_learning_rate(lr))`.

    See `scale_by_adamax` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adamax(0.1, eps=0.0)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0]
        Array([-0.1], dtype=float32)

    References:
        Kingma & Ba, 2014, section 7: https://arxiv.org/abs/1412.6980
    """
    return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))


@_validate.names_errors()
def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """AdaMaxW: AdaMax with decoupled weight decay; see `adamax`, `add_decayed_weights`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adamaxw(0.1, eps=0.0, weight_decay=0.0)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0]
        Array([-0.1], dtype=float32)
    """
    return chain(
        scale_by_adamax(b1, b2, eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
