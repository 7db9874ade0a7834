# SPDX-License-Identifier: Apache-2.0
"""Sign, trust-ratio, noisy and optimistic aliases: lion, lamb, lars, fromage, ..."""

from __future__ import annotations

import warnings
from typing import Any

from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._base import GradientTransformation
from gradtx._combine import chain
from gradtx._errors import HyperparameterError
from gradtx._types import MaskOrFn, ScalarOrSchedule
from gradtx.transforms._accumulation import trace
from gradtx.transforms._adam import scale_by_adam
from gradtx.transforms._geometry import (
    add_scaled_params,
    scale_by_lion,
    scale_by_trust_ratio,
)
from gradtx.transforms._geometry_steps import add_noise, scale_by_optimistic_gradient
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights
from gradtx.wrappers._masking import masked


def _fromage_mult(lr: Any) -> Any:
    return 1 / (1 + lr**2) ** 0.5


@_validate.names_errors()
def fromage(
    learning_rate: ScalarOrSchedule, min_norm: ArrayLike = 1e-6
) -> GradientTransformation:
    """Fromage: trust-ratio steps, then params shrunk by `1 / sqrt(1 + lr²)`.

    `chain(scale_by_trust_ratio(min_norm), scale_by_learning_rate(lr * m),
    add (m - 1) * params)` with `m = 1 / sqrt(1 + lr²)`; see `scale_by_trust_ratio`.
    When to use: scale-invariant nets where a relative step size is natural.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.fromage(0.75)  # m = 0.8
        >>> p = jnp.array([3.0, 4.0])
        >>> tx.update(jnp.array([1.0, 0.0]), tx.init(p), p)[0]
        Array([-3.6, -0.8], dtype=float32)

    References:
        Bernstein et al., 2020: https://arxiv.org/abs/2002.03432
    """
    _validate.check_nonnegative("fromage", "learning_rate", learning_rate)
    if callable(learning_rate):
        lr = lambda count: _fromage_mult(learning_rate(count)) * learning_rate(count)
        shrink = lambda count: _fromage_mult(learning_rate(count)) - 1
    else:
        lr = learning_rate * _fromage_mult(learning_rate)
        shrink = _fromage_mult(learning_rate) - 1
    return chain(
        scale_by_trust_ratio(min_norm),
        scale_by_learning_rate(lr),
        add_scaled_params(shrink),
    )


@_validate.names_errors()
def lamb(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-6,
    eps_root: ArrayLike = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """LAMB: Adam, weight decay, then a per-leaf trust ratio.

    `chain(scale_by_adam, add_decayed_weights, scale_by_trust_ratio(),
    scale_by_learning_rate)`; see those blocks for the arguments.
    When to use: very large batches with Adam-style preconditioning (BERT-scale).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.lamb(0.1)
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.ones(2)), jnp.ones(2))[0]
        Array([-0.1, -0.1], dtype=float32)

    References:
        You et al., 2020: https://arxiv.org/abs/1904.00962
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors({"trace.decay": "momentum"})
def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: MaskOrFn = True,
    trust_coefficient: ArrayLike = 0.001,
    eps: ArrayLike = 0.0,
    trust_ratio_mask: MaskOrFn = True,
    momentum: ArrayLike = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    """LARS: weight decay, a masked trust ratio, the learning rate, then momentum.

    `chain(add_decayed_weights, masked(scale_by_trust_ratio), scale_by_learning_rate,
    trace(momentum, nesterov))`; see those blocks for the arguments.
    When to use: large-batch SGD with momentum (ResNet-scale image training).

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.lars(0.1, trust_coefficient=1.0)
        >>> p = jnp.array([0.0, 5.0])
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(p), p)[0]
        Array([-0.3, -0.4], dtype=float32)

    References:
        You et al., 2017: https://arxiv.org/abs/1708.03888
    """
    return chain(
        add_decayed_weights(weight_decay, mask=weight_decay_mask),
        masked(scale_by_trust_ratio(0.0, trust_coefficient, eps), trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov),
    )


@_validate.names_errors()
def lion(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.99,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: MaskOrFn | None = None,
) -> GradientTransformation:
    """Lion: sign of interpolated momentum, decoupled weight decay, learning rate.

    `chain(scale_by_lion, add_decayed_weights, scale_by_learning_rate)`; see
    `scale_by_lion`. When to use: memory-lean alternative to AdamW (one moment);
    take a 3-10x smaller learning rate and larger weight decay than AdamW.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.lion(0.1, weight_decay=0.0)
        >>> tx.update(jnp.array([3.0, -1.0]), tx.init(jnp.ones(2)), jnp.ones(2))[0]
        Array([-0.1,  0.1], dtype=float32)

    References:
        Chen et al., 2023: https://arxiv.org/abs/2302.06675
    """
    return chain(
        scale_by_lion(b1, b2, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: ArrayLike = 0.01,
    gamma: ArrayLike = 0.55,
    key: ArrayLike | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    """SGD with annealed Gaussian gradient noise: `chain(add_noise, lr)`.

    See `add_noise`. When to use: very deep or hard-to-train nets where noise
    helps escape poor regions; pass a `key` for reproducible runs.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> tx = gradtx.noisy_sgd(0.1, eta=0.0, key=jax.random.key(0))
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0]
        Array([-0.3], dtype=float32)

    References:
        Neelakantan et al., 2015: https://arxiv.org/abs/1511.06807
    """
    return chain(
        add_noise(eta, gamma, key, seed=seed),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule,
    alpha: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 1.0,
) -> GradientTransformation:
    """Optimistic GD: `chain(scale_by_optimistic_gradient, lr)`.

    See `scale_by_optimistic_gradient`. When to use: min-max games (GANs, saddle
    points) where plain gradient descent-ascent cycles.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.optimistic_gradient_descent(0.1)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0]
        Array([-0.3], dtype=float32)

    References:
        Mokhtari et al., 2019: https://arxiv.org/abs/1901.08511
    """
    return chain(
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule,
    *,
    alpha: ArrayLike = 1.0,
    beta: ArrayLike = 1.0,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    nesterov: bool = True,
) -> GradientTransformation:
    """Optimistic Adam: `chain(scale_by_adam, scale_by_optimistic_gradient, lr)`.

    See `scale_by_adam` and `scale_by_optimistic_gradient`. When to use: GAN-style
    min-max training where Adam's adaptivity and optimism both help.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.optimistic_adam_v2(0.1, nesterov=False)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0]
        Array([-0.1], dtype=float32)

    References:
        Daskalakis et al., 2018: https://arxiv.org/abs/1711.00141
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )


@_validate.names_errors()
def optimistic_adam(
    learning_rate: ArrayLike,
    optimism: ArrayLike | None = None,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-08,
    eps_root: ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    """Deprecated (as in optax): use `optimistic_adam_v2`.

    `chain(scale_by_adam, scale_by_optimistic_gradient(alpha=learning_rate,
    beta=optimism), scale_by_learning_rate(1.0))`; `optimism` defaults to the
    learning rate, which must be a number or an array (no schedule).
    When to use: only to reproduce runs written for optax's `optimistic_adam`.

    Example:
        >>> import gradtx, jax.numpy as jnp, warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     tx = gradtx.optimistic_adam(0.1, nesterov=False)
        >>> tx.update(jnp.array([3.0]), tx.init(jnp.ones(1)))[0]
        Array([-0.1], dtype=float32)

    References:
        Daskalakis et al., 2018: https://arxiv.org/abs/1711.00141
    """
    warnings.warn(
        "gradtx.optimistic_adam is deprecated, use optimistic_adam_v2",
        DeprecationWarning,
        2,
    )
    if callable(learning_rate):
        raise HyperparameterError(
            "gradtx.optimistic_adam: learning_rate must be a number or an array "
            f"(optimistic_adam_v2 takes schedules), got {learning_rate!r}"
        )
    _validate.check_nonnegative("optimistic_adam", "learning_rate", learning_rate)
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(
            learning_rate, learning_rate if optimism is None else optimism
        ),
        scale_by_learning_rate(1.0),
    )
