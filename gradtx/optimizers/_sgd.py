# SPDX-License-Identifier: Apache-2.0
"""SGD-family aliases: `sgd`, `sign_sgd`, `signum`."""

from __future__ import annotations

from typing import Any

from jax.typing import ArrayLike

from gradtx import _validate
from gradtx._base import GradientTransformation, identity
from gradtx._combine import chain
from gradtx._errors import HyperparameterError
from gradtx._types import ScalarOrSchedule
from gradtx.transforms._accumulation import ema, trace
from gradtx.transforms._scaling import scale_by_learning_rate, scale_by_sign


@_validate.names_errors({"trace.decay": "momentum"})
def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: ArrayLike | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    """Stochastic gradient descent, with optional heavy-ball or Nesterov momentum.

    `chain(trace(momentum, nesterov) or identity(), scale_by_learning_rate(lr))`;
    see `trace` for the arguments.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.sgd(0.1, momentum=0.9)
        >>> tx.update(jnp.ones(1), tx.init(jnp.ones(1)))[0]
        Array([-0.1], dtype=float32)

    References:
        Sutskever et al., 2013: https://proceedings.mlr.press/v28/sutskever13.html
    """
    _check_momentum_options(momentum, nesterov, accumulator_dtype)
    return chain(
        identity()
        if momentum is None
        else trace(momentum, nesterov, accumulator_dtype),
        scale_by_learning_rate(learning_rate),
    )


def _check_momentum_options(momentum, nesterov, accumulator_dtype) -> None:
    """Rejects options that would be silently ignored without a momentum buffer."""
    if nesterov and (momentum is None or _validate.concrete_float(momentum) == 0.0):
        raise HyperparameterError(
            "gradtx.sgd: nesterov=True requires a momentum > 0, "
            f"got momentum={momentum!r}"
        )
    if momentum is None and accumulator_dtype is not None:
        raise HyperparameterError(
            "gradtx.sgd: accumulator_dtype needs a momentum buffer, but momentum=None; "
            f"got accumulator_dtype={accumulator_dtype!r}"
        )


@_validate.names_errors()
def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    """SignSGD: steps of size `learning_rate` in the direction of the gradient's sign.

    `chain(scale_by_sign(), scale_by_learning_rate(lr))`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.sign_sgd(0.1)
        >>> tx.update(jnp.array([-5.0]), tx.init(jnp.ones(1)))[0]
        Array([0.1], dtype=float32)

    References:
        Bernstein et al., 2018: https://arxiv.org/abs/1802.04434
    """
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


@_validate.names_errors({"ema.decay": "beta"})
def signum(
    learning_rate: ScalarOrSchedule,
    beta: ArrayLike = 0.9,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    """Signum: the sign of an (undebiased) moving average of the gradients.

    `chain(ema(beta, debias=False), scale_by_sign(), scale_by_learning_rate(lr))`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.signum(0.1)
        >>> tx.update(jnp.array([-5.0]), tx.init(jnp.ones(1)))[0]
        Array([0.1], dtype=float32)

    References:
        Bernstein et al., 2018: https://arxiv.org/abs/1802.04434
    """
    # `ema` accepts decay 1 (a frozen average), but a momentum of 1 never moves.
    _validate.check_decay("signum", "beta", beta)
    return chain(
        ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
    )
