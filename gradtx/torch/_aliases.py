# SPDX-License-Identifier: Apache-2.0
"""torch.optim's SGD and Adam family with torch's names, defaults and formulas."""

from __future__ import annotations

from typing import Any

from gradtx._base import GradientTransformation
from gradtx._combine import chain
from gradtx._errors import HyperparameterError
from gradtx._types import ScalarOrSchedule
from gradtx._validate import concrete_float
from gradtx.torch._blocks import (
    scale_by_torch_amsgrad,
    scale_by_torch_momentum,
    scale_by_torch_nadam,
    scale_by_torch_radam,
)
from gradtx.torch._common import check, check_lr, check_pair, decoupled, prefix
from gradtx.transforms._adam import scale_by_adam, scale_by_adamax
from gradtx.transforms._scaling import scale_by_learning_rate

Betas = tuple[Any, Any]


def _adam_checks(fn: str, lr: Any, betas: Any, eps: Any, weight_decay: Any) -> Betas:
    check_lr(fn, lr)
    check(fn, "eps", eps, 0.0)
    b1, b2 = check_pair(fn, "betas", betas, 0.0, 1.0, high_open=True)
    check(fn, "weight_decay", weight_decay, 0.0)
    return b1, b2


def _with_decay(
    core: GradientTransformation,
    lr: Any,
    weight_decay: Any,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> GradientTransformation:
    """[negate] → [L2 decay] → core → [decoupled decay] → lr, as torch orders them."""
    if decoupled_weight_decay:
        blocks = [*prefix(maximize, 0.0), core, *decoupled(weight_decay)]
    else:
        blocks = [*prefix(maximize, weight_decay), core]
    return chain(*blocks, scale_by_learning_rate(lr))


def sgd(
    lr: ScalarOrSchedule = 1e-3,
    momentum: Any = 0.0,
    dampening: Any = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.SGD: coupled L2 decay, torch's momentum buffer and dampening.

    Update rule:
        g = ±g + weight_decay p;  b = g (step 1), else momentum b + (1-dampening) g
        u = -lr (g + momentum b if nesterov else b)

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.sgd(lr=0.1, momentum=0.9)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([-0.2], dtype=float32)
    """
    check_lr("sgd", lr)
    check("sgd", "momentum", momentum, 0.0)
    check("sgd", "dampening", dampening)
    check("sgd", "weight_decay", weight_decay, 0.0)
    m, d = concrete_float(momentum), concrete_float(dampening)
    if nesterov and (m == 0.0 or (d or 0.0) != 0.0):
        raise HyperparameterError(
            "gradtx.torch.sgd: nesterov momentum requires a momentum and zero "
            f"dampening, got momentum={momentum!r}, dampening={dampening!r}"
        )
    has_momentum = m != 0.0  # a traced momentum (m is None) keeps the buffer
    return chain(
        *prefix(maximize, weight_decay),
        *([scale_by_torch_momentum(momentum, dampening, nesterov)] * has_momentum),
        scale_by_learning_rate(lr),
    )


def adam(
    lr: ScalarOrSchedule = 1e-3,
    betas: Betas = (0.9, 0.999),
    eps: Any = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
) -> GradientTransformation:
    """torch.optim.Adam: L2 decay added to the gradient (or decoupled), amsgrad.

    Update rule:
        g = ±g + weight_decay p (unless decoupled);  m, v as Adam
        u = -lr m̂ / (sqrt(v̂) + eps) - lr weight_decay p (decoupled)
        amsgrad: v_max = max(v_max, v) of the raw v;  v̂ = v_max / (1 - b2^t)

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.adam(lr=0.1)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([-0.1], dtype=float32)
    """
    b1, b2 = _adam_checks("adam", lr, betas, eps, weight_decay)
    core = (
        scale_by_torch_amsgrad(b1, b2, eps) if amsgrad else scale_by_adam(b1, b2, eps)
    )
    return _with_decay(core, lr, weight_decay, decoupled_weight_decay, maximize)


def adamw(
    lr: ScalarOrSchedule = 1e-3,
    betas: Betas = (0.9, 0.999),
    eps: Any = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.AdamW: `adam(..., decoupled_weight_decay=True)`, decay 1e-2.

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.adamw(lr=0.1, weight_decay=0.0)
        >>> p = jnp.zeros(1)
        >>> tx.update(jnp.array([2.0]), tx.init(p), p)[0]
        Array([-0.1], dtype=float32)
    """
    _adam_checks("adamw", lr, betas, eps, weight_decay)
    return adam(
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad,
        maximize=maximize,
        decoupled_weight_decay=True,
    )


def adamax(
    lr: ScalarOrSchedule = 2e-3,
    betas: Betas = (0.9, 0.999),
    eps: Any = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.Adamax: `u = -lr m / (1-b1^t) / max(b2 n, |g| + eps)`, L2 decay.

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.adamax(lr=0.1, eps=0.0)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([-0.1], dtype=float32)
    """
    b1, b2 = _adam_checks("adamax", lr, betas, eps, weight_decay)
    return chain(
        *prefix(maximize, weight_decay),
        scale_by_adamax(b1, b2, eps),
        scale_by_learning_rate(lr),
    )


def nadam(
    lr: ScalarOrSchedule = 2e-3,
    betas: Betas = (0.9, 0.999),
    eps: Any = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    momentum_decay: Any = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.NAdam: Dozat's momentum schedule `mu_t = b1 (1 - 0.96^(t psi)/2)`.

    Update rule:
        u = -lr [(1-mu_t)/(1-Π mu) g + mu_{t+1}/(1-Π mu · mu_{t+1}) m] / (sqrt(v̂) + eps)

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.nadam(lr=0.1)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].shape
        (1,)
    """
    b1, b2 = _adam_checks("nadam", lr, betas, eps, weight_decay)
    check("nadam", "momentum_decay", momentum_decay, 0.0)
    core = scale_by_torch_nadam(b1, b2, eps, momentum_decay)
    return _with_decay(core, lr, weight_decay, decoupled_weight_decay, maximize)


def radam(
    lr: ScalarOrSchedule = 1e-3,
    betas: Betas = (0.9, 0.999),
    eps: Any = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    """torch.optim.RAdam: rectified Adam once `rho_t > 5`, plain momentum before.

    Update rule:
        u = -lr m̂ r_t sqrt(1-b2^t) / (sqrt(v) + eps)  if rho_t > 5, else -lr m̂

    Example:
        >>> import gradtx.torch, jax.numpy as jnp
        >>> tx = gradtx.torch.radam(lr=0.1)
        >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
        Array([-0.2], dtype=float32)
    """
    b1, b2 = _adam_checks("radam", lr, betas, eps, weight_decay)
    core = scale_by_torch_radam(b1, b2, eps)
    return _with_decay(core, lr, weight_decay, decoupled_weight_decay, maximize)
