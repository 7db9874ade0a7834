# SPDX-License-Identifier: Apache-2.0
"""Adaptive-moment aliases, each one `chain` of public building blocks.

adadelta, adabelief, adafactor, adan, novograd, radam, rprop, sm3 and yogi.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._base import GradientTransformation
from gradtx._combine import chain
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.transforms._accumulation import ema
from gradtx.transforms._clipping import clip_by_block_rms
from gradtx.transforms._geometry import scale_by_param_block_rms
from gradtx.transforms._moments import (
    scale_by_adadelta,
    scale_by_belief,
    scale_by_radam,
    scale_by_yogi,
)
from gradtx.transforms._moments_factored import (
    scale_by_factored_rms,
    scale_by_sm3,
)
from gradtx.transforms._moments_other import (
    scale_by_adan,
    scale_by_novograd,
    scale_by_rprop,
)
from gradtx.transforms._scaling import scale, scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights


@_validate.names_errors({"add_decayed_weights.mask": "weight_decay_mask"})
def adadelta(
    learning_rate: ScalarOrSchedule | None = None,
    rho: ArrayLike = 0.9,
    eps: ArrayLike = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """AdaDelta: weight decay, `scale_by_adadelta`, then `scale_by_learning_rate`.

    See `scale_by_adadelta` and `add_decayed_weights` for the arguments. With the
    default `learning_rate=None` gradtx *descends* with a learning rate of 1
    (`scale_by_learning_rate(None)` flips the sign); optax's `adadelta()` then
    returns the preconditioned gradient unnegated and ascends.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adadelta()
        >>> p = jnp.ones(1)
        >>> float(tx.update(jnp.array([3.0]), tx.init(p), p)[0][0]) < 0  # descends
        True

    References:
        Zeiler, 2012: https://arxiv.org/abs/1212.5701
    """
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-16,
    eps_root: ArrayLike = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """AdaBelief: `chain(scale_by_belief(...), scale_by_learning_rate(lr))`.

    See `scale_by_belief` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adabelief(0.1)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0].shape
        (1,)

    References:
        Zhuang et al., 2020: https://arxiv.org/abs/2010.07468
    """
    return chain(
        scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors(
    {
        "clip_by_block_rms.threshold": "clipping_threshold",
        "scale_by_factored_rms.step_offset": "decay_offset",
        "scale_by_factored_rms.epsilon": "eps",
        "add_decayed_weights.weight_decay": "weight_decay_rate",
        "add_decayed_weights.mask": "weight_decay_mask",
    }
)
def adafactor(
    learning_rate: ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: ArrayLike = 0.8,
    decay_offset: ArrayLike = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: ArrayLike | None = 1.0,
    momentum: ArrayLike | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: ScalarOrSchedule | None = None,
    eps: ArrayLike = 1e-30,
    factored: bool = True,
    weight_decay_mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """Adafactor: factored RMS scaling, block-RMS clipping, relative steps, momentum.

    `chain(scale_by_factored_rms, clip_by_block_rms(clipping_threshold),
    scale_by_learning_rate(lr, flip_sign=False), scale_by_param_block_rms(),
    ema(momentum, debias=False), add_decayed_weights(weight_decay_rate), scale(-1))`;
    a block whose switch is None/False is left out. See `scale_by_factored_rms`.
    `momentum` is in [0, 1); `dtype_momentum` is its storage dtype.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adafactor(0.01)
        >>> p = jnp.ones(2)
        >>> tx.update(jnp.array([3.0, 3.0]), tx.init(p), p)[0]
        Array([-0.01, -0.01], dtype=float32)

    References:
        Shazeer & Stern, 2018: https://arxiv.org/abs/1804.04235
    """
    _validate.check_dtype("adafactor", "dtype_momentum", dtype_momentum)
    _validate.check_positive_int(
        "adafactor", "min_dim_size_to_factor", min_dim_size_to_factor, minimum=0
    )
    if momentum is not None:
        _validate.check_decay("adafactor", "momentum", momentum)
    blocks = [
        scale_by_factored_rms(
            factored, decay_rate, decay_offset, min_dim_size_to_factor, eps
        ),
        None if clipping_threshold is None else clip_by_block_rms(clipping_threshold),
        None
        if learning_rate is None
        else scale_by_learning_rate(learning_rate, flip_sign=False),
        scale_by_param_block_rms() if multiply_by_parameter_scale else None,
        None
        if momentum is None
        else ema(momentum, debias=False, accumulator_dtype=dtype_momentum),
        None
        if weight_decay_rate is None
        else add_decayed_weights(weight_decay_rate, weight_decay_mask),
        scale(-1.0),
    ]
    return chain(*[b for b in blocks if b is not None])


@_validate.names_errors()
def adan(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.98,
    b2: ArrayLike = 0.92,
    b3: ArrayLike = 0.99,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """Adan: `chain(scale_by_adan, add_decayed_weights, scale_by_learning_rate)`.

    See `scale_by_adan` and `add_decayed_weights` for the arguments. The weight
    decay is decoupled (added to the update) rather than the paper's proximal step.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adan(0.1)
        >>> p = jnp.ones(1)
        >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0]
        Array([-0.1], dtype=float32)

    References:
        Xie et al., 2022: https://arxiv.org/abs/2208.06677
    """
    return chain(
        scale_by_adan(b1, b2, b3, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def novograd(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.25,
    eps: ArrayLike = 1e-6,
    eps_root: ArrayLike = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
) -> GradientTransformation:
    """NovoGrad: `chain(scale_by_novograd(...), scale_by_learning_rate(lr))`.

    See `scale_by_novograd` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.novograd(0.5, eps=0.0)
        >>> p = jnp.ones(2)
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(p), p)[0]
        Array([-0.3, -0.4], dtype=float32)

    References:
        Ginsburg et al., 2019: https://arxiv.org/abs/1905.11286
    """
    return chain(
        scale_by_novograd(b1, b2, eps, eps_root, weight_decay),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def radam(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    threshold: ArrayLike = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """RAdam: `chain(scale_by_radam(...), scale_by_learning_rate(lr))`.

    See `scale_by_radam` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.radam(0.1)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0]
        Array([-0.3], dtype=float32)

    References:
        Liu et al., 2020: https://arxiv.org/abs/1908.03265
    """
    return chain(
        scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def rprop(
    learning_rate: ArrayLike,
    eta_minus: ArrayLike = 0.5,
    eta_plus: ArrayLike = 1.2,
    min_step_size: ArrayLike = 1e-6,
    max_step_size: ArrayLike = 50.0,
) -> GradientTransformation:
    """Rprop: `chain(scale_by_rprop(...), scale(-1))`; see `scale_by_rprop`.

    Unlike optax (PR #1725), the first step moves and no step lags behind.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.rprop(0.1)
        >>> tx.update(jnp.array([3.0, -2.0]), tx.init(jnp.zeros(2)))[0]
        Array([-0.1,  0.1], dtype=float32)

    References:
        Riedmiller & Braun, 1993: https://doi.org/10.1109/ICNN.1993.298623
    """
    return chain(
        scale_by_rprop(
            learning_rate, eta_minus, eta_plus, min_step_size, max_step_size
        ),
        scale(-1.0),
    )


@_validate.names_errors({"scale_by_sm3.b1": "momentum"})
def sm3(
    learning_rate: ScalarOrSchedule, momentum: ArrayLike = 0.9
) -> GradientTransformation:
    """SM3: `chain(scale_by_sm3(b1=momentum), scale_by_learning_rate(lr))`.

    See `scale_by_sm3`. optax uses `scale(-learning_rate)`: the same numbers for a
    constant, and gradtx also takes a schedule.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.sm3(0.1, momentum=0.0)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0]
        Array([-0.1], dtype=float32)

    References:
        Anil et al., 2019: https://arxiv.org/abs/1901.11150
    """
    return chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))


@_validate.names_errors()
def yogi(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-3,
) -> GradientTransformation:
    """Yogi: `chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(lr))`.

    See `scale_by_yogi` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.yogi(0.1)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0].shape
        (1,)

    References:
        Zaheer et al., 2018: https://papers.nips.cc/paper/8186
    """
    return chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))
