# SPDX-License-Identifier: Apache-2.0
"""8-bit-state aliases: adam8bit, adamw8bit, sgd8bit, rmsprop8bit (and lion8bit).

Each is its base alias's chain with the stateful block wrapped in `quantize_state`;
the signatures are the base alias's plus keyword-only `block_size` and `min_size`.
"""

from __future__ import annotations

from typing import Any

from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._base import GradientTransformation, identity
from gradtx._combine import chain
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.optimizers._sgd import _check_momentum_options
from gradtx.precision._quantize import quantize_state
from gradtx.transforms._accumulation import trace
from gradtx.transforms._adam import scale_by_adam
from gradtx.transforms._geometry import scale_by_lion
from gradtx.transforms._rms import scale_by_rms, scale_by_stddev
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights


@_validate.names_errors()
def adam8bit(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any | None = None,
    block_size: int = 256,
    min_size: int = 4096,
) -> GradientTransformation:
    """Adam with 8-bit block-quantized moments (about 2 bytes of state per param).

    `chain(quantize_state(scale_by_adam(...), block_size=..., min_size=...),
    scale_by_learning_rate(lr))`; see `adam` and `quantize_state`. `mu_dtype` and
    `nu_dtype` apply to the leaves smaller than `min_size`, which stay unquantized.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adam8bit(0.1, min_size=0)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0]
        Array([-0.1], dtype=float32)

    References:
        Dettmers et al., 2022: https://arxiv.org/abs/2110.02861
    """
    return chain(
        quantize_state(
            scale_by_adam(
                b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype
            ),
            block_size=block_size,
            min_size=min_size,
        ),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def adamw8bit(
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
    block_size: int = 256,
    min_size: int = 4096,
) -> GradientTransformation:
    """AdamW with 8-bit block-quantized moments; see `adamw` and `quantize_state`.

    `chain(quantize_state(scale_by_adam(...)), add_decayed_weights(weight_decay,
    mask), scale_by_learning_rate(lr))`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adamw8bit(0.1, weight_decay=0.0, min_size=0)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0]
        Array([-0.1], dtype=float32)

    References:
        Dettmers et al., 2022: https://arxiv.org/abs/2110.02861
    """
    return chain(
        quantize_state(
            scale_by_adam(
                b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype
            ),
            block_size=block_size,
            min_size=min_size,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors({"trace.decay": "momentum"})
def sgd8bit(
    learning_rate: ScalarOrSchedule,
    momentum: ArrayLike | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any | None = None,
    *,
    block_size: int = 256,
    min_size: int = 4096,
) -> GradientTransformation:
    """SGD with an 8-bit block-quantized momentum buffer; see `sgd`.

    `chain(quantize_state(trace(momentum, nesterov)) or identity(),
    scale_by_learning_rate(lr))`: without momentum there is no state to quantize.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.sgd8bit(0.1, momentum=0.9, min_size=0)
        >>> tx.update(jnp.ones(1), tx.init(jnp.ones(1)))[0]
        Array([-0.1], dtype=float32)

    References:
        Dettmers et al., 2022: https://arxiv.org/abs/2110.02861
    """
    _check_momentum_options(momentum, nesterov, accumulator_dtype)
    quantize_state(identity(), 8, block_size, min_size)  # checks them without momentum
    return chain(
        identity()
        if momentum is None
        else quantize_state(
            trace(momentum, nesterov, accumulator_dtype),
            block_size=block_size,
            min_size=min_size,
        ),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors({"trace.decay": "momentum"})
def rmsprop8bit(
    learning_rate: ScalarOrSchedule,
    decay: ArrayLike = 0.9,
    eps: ArrayLike = 1e-8,
    initial_scale: ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: ArrayLike | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    *,
    block_size: int = 256,
    min_size: int = 4096,
) -> GradientTransformation:
    """RMSProp with 8-bit block-quantized state; see `rmsprop` and `quantize_state`.

    `rmsprop`'s chain with the preconditioner (and the momentum `trace`, if any)
    wrapped in `quantize_state`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.rmsprop8bit(0.1, decay=0.0, eps=0.0, min_size=0)
        >>> tx.update(jnp.array([-2.0]), tx.init(jnp.ones(1)))[0]
        Array([0.1], dtype=float32)

    References:
        Dettmers et al., 2022: https://arxiv.org/abs/2110.02861
    """
    precondition = scale_by_stddev if centered else scale_by_rms
    q = {"block_size": block_size, "min_size": min_size}
    return chain(
        quantize_state(
            precondition(decay, eps, initial_scale, eps_in_sqrt, bias_correction), **q
        ),
        scale_by_learning_rate(learning_rate),
        identity()
        if momentum is None
        else quantize_state(trace(momentum, nesterov), **q),
    )


# --- lion8bit: export it from gradtx/__init__.py once `gradtx.lion` lands (it is
# written on another branch). Until then `scale_by_lion` is looked up at call time.


@_validate.names_errors()
def lion8bit(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.99,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: MaskOrFn | None = None,
    *,
    block_size: int = 256,
    min_size: int = 4096,
) -> GradientTransformation:
    """Lion with an 8-bit block-quantized momentum; see `lion` and `quantize_state`.

    `chain(quantize_state(scale_by_lion(b1, b2, mu_dtype)),
    add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.lion8bit(0.1, weight_decay=0.0, min_size=0)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0]
        Array([-0.1], dtype=float32)

    References:
        Chen et al., 2023: https://arxiv.org/abs/2302.06675
    """
    return chain(
        quantize_state(
            scale_by_lion(b1, b2, mu_dtype),
            block_size=block_size,
            min_size=min_size,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
