# SPDX-License-Identifier: Apache-2.0
"""torch.optim's Adagrad, Adadelta, RMSprop, Rprop, ASGD, Adafactor and Muon."""

from __future__ import annotations

from typing import Any

from gradtx._base import GradientTransformation
from gradtx._combine import chain
from gradtx._errors import HyperparameterError
from gradtx._numerics import hparam
from gradtx._types import ScalarOrSchedule
from gradtx._validate import check_positive_int, concrete_float
from gradtx.torch._blocks import scale_by_torch_adadelta, scale_by_torch_adagrad
from gradtx.torch._blocks_special import (
    scale_by_torch_adafactor,
    scale_by_torch_asgd,
    scale_by_torch_muon,
    scale_by_torch_rprop,
)
from gradtx.torch._common import (
    check,
    check_lr,
    check_pair,
    decoupled,
    fn_name,
    no_schedule,
    prefix,
)
from gradtx.transforms._accumulation import trace
from gradtx.transforms._rms import scale_by_rms, scale_by_stddev
from gradtx.transforms._scaling import scale, scale_by_learning_rate, scale_by_schedule


def adagrad(
    lr: ScalarOrSchedule = 1e-2,
    lr_decay: Any = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    initial_accumulator_value: Any = 0.0,
    eps: Any = 1e-10,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.Adagrad: `u = -lr / (1 + (t-1) lr_decay) g / (sqrt(s) + eps)`.

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.adagrad(lr=0.1, eps=0.0)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([-0.1], dtype=float32)
    """
    check_lr("adagrad", lr)
    check("adagrad", "lr_decay", lr_decay, 0.0)
    check("adagrad", "weight_decay", weight_decay, 0.0)
    check("adagrad", "initial_accumulator_value", initial_accumulator_value, 0.0)
    check("adagrad", "eps", eps, 0.0)
    decay = lambda count: 1 / (1 + count.astype(hparam(lr_decay).dtype) * lr_decay)
    return chain(
        *prefix(maximize, weight_decay),
        scale_by_torch_adagrad(initial_accumulator_value, eps),
        scale_by_schedule(decay),
        scale_by_learning_rate(lr),
    )


def adadelta(
    lr: ScalarOrSchedule = 1.0,
    rho: Any = 0.9,
    eps: Any = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.Adadelta: `u = -lr sqrt(a + eps) / sqrt(s + eps) g`.

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.adadelta(lr=1.0, eps=1.0)
        >>> tx.update(jnp.array([0.0]), tx.init(jnp.zeros(1)))[0]
        Array([-0.], dtype=float32)
    """
    check_lr("adadelta", lr)
    check("adadelta", "rho", rho, 0.0, high=1.0)
    check("adadelta", "eps", eps, 0.0)
    check("adadelta", "weight_decay", weight_decay, 0.0)
    return chain(
        *prefix(maximize, weight_decay),
        scale_by_torch_adadelta(rho, eps),
        scale_by_learning_rate(lr),
    )


def rmsprop(
    lr: ScalarOrSchedule = 1e-2,
    alpha: Any = 0.99,
    eps: Any = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    momentum: Any = 0.0,
    centered: bool = False,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.RMSprop: eps outside the root, momentum on the scaled gradient.

    Built from `scale_by_rms` / `scale_by_stddev` (`eps_in_sqrt=False`) and `trace`.

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.rmsprop(lr=0.1, alpha=0.0, eps=0.0)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([-0.1], dtype=float32)
    """
    check_lr("rmsprop", lr)
    check("rmsprop", "alpha", alpha, 0.0)
    check("rmsprop", "eps", eps, 0.0)
    check("rmsprop", "weight_decay", weight_decay, 0.0)
    check("rmsprop", "momentum", momentum, 0.0)
    # torch allows alpha = 1; gradtx's blocks take a decay in [0, 1).
    check("rmsprop", "alpha", alpha, 0.0, high=1.0, high_open=True)
    rms = scale_by_stddev if centered else scale_by_rms
    has_momentum = concrete_float(momentum) != 0.0  # traced: keep the trace
    return chain(
        *prefix(maximize, weight_decay),
        rms(alpha, eps, 0.0, eps_in_sqrt=False),
        *([trace(momentum)] if has_momentum else []),
        scale_by_learning_rate(lr),
    )


def rprop(
    lr: Any = 1e-2,
    etas: tuple[Any, Any] = (0.5, 1.2),
    step_sizes: tuple[Any, Any] = (1e-6, 50.0),
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.Rprop: per-entry steps that grow by etaplus and shrink by etaminus.

    `lr` is the initial step size (a number or an array, not a schedule).

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.rprop(lr=0.1)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([-0.1], dtype=float32)
    """
    check_lr("rprop", lr)
    no_schedule("rprop", "lr", lr)
    etaminus, etaplus = check_pair("rprop", "etas", etas, 0.0, None)
    check("rprop", "etas[0]", etaminus, 0.0, high=1.0, low_open=True, high_open=True)
    check("rprop", "etas[1]", etaplus, 1.0, low_open=True)
    lo, hi = check_pair("rprop", "step_sizes", step_sizes, 0.0, None)
    return chain(
        *prefix(maximize, 0.0),
        scale_by_torch_rprop(lr, (etaminus, etaplus), (lo, hi)),
        scale(-1.0),
    )


def asgd(
    lr: Any = 1e-2,
    lambd: Any = 1e-4,
    alpha: Any = 0.75,
    t0: Any = 1e6,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.ASGD: `eta_t = lr / (1 + lambd lr t)^alpha`; state `ax` averages.

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.asgd(lr=0.1, lambd=0.0)
        >>> p = jnp.zeros(1)
        >>> tx.update(jnp.array([2.0]), tx.init(p), p)[0]
        Array([-0.2], dtype=float32)
    """
    check_lr("asgd", lr)
    no_schedule("asgd", "lr", lr)
    check("asgd", "lambd", lambd, 0.0)
    check("asgd", "alpha", alpha, 0.0)
    check("asgd", "t0", t0, 0.0)
    check("asgd", "weight_decay", weight_decay, 0.0)
    return chain(
        *prefix(maximize, weight_decay),
        scale_by_torch_asgd(lr, lambd, alpha, t0),
        scale(-1.0),
    )


def adafactor(
    lr: ScalarOrSchedule = 1e-2,
    beta2_decay: Any = -0.8,
    eps: tuple[Any, Any] = (None, 1e-3),
    d: Any = 1.0,
    weight_decay: Any = 0.0,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.Adafactor: relative step `min(lr, 1/sqrt(t)) max(eps2, RMS(p))`.

    Factored second moments for params with 2 or more axes (last two), RMS
    clipping at `d`, decoupled `weight_decay` scaled by `lr`.

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.adafactor(lr=0.1)
        >>> p = jnp.ones(2)
        >>> tx.update(jnp.array([2.0, -2.0]), tx.init(p), p)[0]
        Array([-0.1,  0.1], dtype=float32)
    """
    check("adafactor", "lr", lr, 0.0)
    check("adafactor", "beta2_decay", beta2_decay, high=0.0)
    if not isinstance(eps, (tuple, list)) or len(eps) != 2:
        raise HyperparameterError(
            "gradtx.torch.adafactor: eps must be a pair (eps1 or None, eps2), "
            f"got {eps!r}"
        )
    if eps[0] is not None:
        check("adafactor", "eps[0]", eps[0], 0.0)
    check("adafactor", "eps[1]", eps[1], 0.0)
    check("adafactor", "d", d, 1.0)
    check("adafactor", "weight_decay", weight_decay, 0.0)
    return chain(
        *prefix(maximize, 0.0),
        scale_by_torch_adafactor(lr, beta2_decay, tuple(eps), d, weight_decay),
        scale(-1.0),
    )


_ADJUST = (None, "original", "match_rms_adamw", "spectral_unclamped")


def muon(
    lr: ScalarOrSchedule = 1e-3,
    weight_decay: ScalarOrSchedule = 0.1,
    momentum: Any = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[Any, Any, Any] = (3.4445, -4.775, 2.0315),
    eps: Any = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
) -> GradientTransformation:
    """torch.optim.Muon: orthogonalised momentum for 2-D params, decoupled decay.

    Update rule:
        b = momentum b + (1-momentum) g;  x = (1-momentum) g + momentum b (nesterov)
        u = -lr ratio NS(x) - lr weight_decay p
    Newton-Schulz runs in float32 or wider (torch runs it in bfloat16).

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.muon(lr=0.1, weight_decay=0.0)
        >>> p = jnp.zeros((2, 2))
        >>> tx.update(jnp.eye(2), tx.init(p), p)[0].shape
        (2, 2)
    """
    check_lr("muon", lr)
    check("muon", "weight_decay", weight_decay, 0.0)
    check("muon", "momentum", momentum, 0.0)
    check("muon", "eps", eps, 0.0)
    check_positive_int(fn_name("muon"), "ns_steps", ns_steps)
    check("muon", "ns_steps", ns_steps, high=99)
    if not isinstance(ns_coefficients, (tuple, list)) or len(ns_coefficients) != 3:
        raise HyperparameterError(
            "gradtx.torch.muon: ns_coefficients must be 3 numbers (a, b, c), "
            f"got {ns_coefficients!r}"
        )
    for i, c in enumerate(ns_coefficients):
        check("muon", f"ns_coefficients[{i}]", c)
    if adjust_lr_fn not in _ADJUST:
        raise HyperparameterError(
            f"gradtx.torch.muon: adjust_lr_fn must be one of {_ADJUST}, "
            f"got {adjust_lr_fn!r}"
        )
    return chain(
        scale_by_torch_muon(
            momentum, nesterov, tuple(ns_coefficients), eps, ns_steps, adjust_lr_fn
        ),
        *decoupled(weight_decay),
        scale_by_learning_rate(lr),
    )
