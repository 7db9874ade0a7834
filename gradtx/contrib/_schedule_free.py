# SPDX-License-Identifier: Apache-2.0
"""Schedule-free learning: `schedule_free` and its SGD and AdamW shortcuts."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._combine import chain
from gradtx._types import Params, ScalarOrSchedule
from gradtx.contrib._structured_ns import check_int
from gradtx.optimizers._sgd import sgd
from gradtx.schedules._basic import warmup_constant_schedule
from gradtx.transforms._rms import scale_by_rms
from gradtx.transforms._scaling import scale_by_learning_rate
from gradtx.transforms._weight_decay import add_decayed_weights


class ScheduleFreeState(NamedTuple):
    """State of `schedule_free`.

    `b1`, `weight_sum` and `max_lr` are float32 scalars whatever the params' dtype
    (optax holds them in the params' lowest dtype, so bf16 params round b1 = 0.9
    to 0.8984). `step_count` starts at 1, as in optax.
    """

    b1: jax.Array
    weight_sum: jax.Array
    step_count: jax.Array
    max_lr: jax.Array
    base_optimizer_state: Any
    z: Any


def _eval_leaf(y: jax.Array, z: jax.Array, b1: jax.Array) -> jax.Array:
    cd = _numerics.leaf_dtype(y, z)
    b = b1.astype(cd)
    return ((y.astype(cd) - (1 - b) * z.astype(cd)) / b).astype(y.dtype)


def schedule_free_eval_params(state: Any, params: Params) -> Params:
    """The averaged params `x = (y - (1 - b1) z) / b1` to evaluate a model at.

    Args:
        state: The optimizer state: a `ScheduleFreeState`, or (unlike optax) any
            state that holds exactly one, e.g. inside a `chain`.
        params: The current (training) params `y`.

    Returns:
        The evaluation params, in the dtypes of `params`.

    Raises:
        ValueError: If `state` holds no `ScheduleFreeState`, or more than one.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.schedule_free_sgd(0.1)
        >>> p = jnp.ones(2)
        >>> u, s = tx.update(jnp.ones(2), tx.init(p), p)
        >>> gradtx.schedule_free_eval_params(s, gradtx.apply_updates(p, u))
        Array([0.9, 0.9], dtype=float32)
    """
    found = [s for _, s in _tree.instances(state, ScheduleFreeState)]
    if len(found) != 1:
        raise ValueError(
            "gradtx.schedule_free_eval_params: state must hold exactly one "
            f"ScheduleFreeState, found {len(found)}"
        )
    (sf,) = found
    return jax.tree.map(lambda y, z: _eval_leaf(y, z, sf.b1), params, sf.z)


def _check_schedule_free(fn: str, b1, weight_lr_power, state_dtype) -> Any:
    _validate.check_range(fn, "b1", b1, 0.0, 1.0, low_open=True)
    _validate.check_nonnegative(fn, "weight_lr_power", weight_lr_power)
    return _validate.check_dtype(fn, "state_dtype", state_dtype)


def schedule_free(
    base_optimizer: GradientTransformation,
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = 0.9,
    weight_lr_power: ArrayLike = 2.0,
    state_dtype: Any | None = None,
) -> GradientTransformation:
    """Makes `base_optimizer` schedule-free: interpolation and averaging for momentum.

    The params seen by `update` are `y`; evaluate the model at
    `schedule_free_eval_params(state, params)`. Use a base optimizer without momentum.

    Update rule:
        z' = z + base(g);  c = lr_max^p / sum_{i<=t} lr_max,i^p
        x' = (1 - c) x + c z',  x = (y - (1-b1) z) / b1;  y' = b1 x' + (1-b1) z'

    Args:
        base_optimizer: The optimizer whose updates move `z`.
        learning_rate: The (warmup, no decay) learning rate or schedule of the
            base optimizer; its running maximum weights the average.
        b1: Interpolation between `x` and `z`, in (0, 1].
        weight_lr_power: Exponent `p` of the averaging weights, >= 0.
        state_dtype: Storage dtype of `z`; None keeps the params' dtype.

    Returns:
        A transformation with `ScheduleFreeState`; `update` needs `params`.

    Raises:
        HyperparameterError: If a concrete hyperparameter is out of range.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.schedule_free(gradtx.sgd(0.1), 0.1)
        >>> p = jnp.ones(1)
        >>> [round(float(x), 4) for x in tx.update(jnp.ones(1), tx.init(p), p)[0]]
        [-0.1]

    References:
        Defazio et al., 2024: https://arxiv.org/abs/2405.15682
    """
    state_dtype = _check_schedule_free(
        "schedule_free", b1, weight_lr_power, state_dtype
    )
    _validate.check_nonnegative("schedule_free", "learning_rate", learning_rate)
    base_optimizer = with_extra_args_support(base_optimizer)

    def init(params):
        zero = jnp.zeros([], _numerics.hparam_dtype())
        z = jax.tree.map(lambda p: jnp.array(p, dtype=state_dtype or p.dtype), params)
        return ScheduleFreeState(
            b1=_numerics.hparam(b1),
            weight_sum=zero,
            step_count=jnp.ones([], jnp.int32),
            max_lr=zero,
            base_optimizer_state=base_optimizer.init(params),
            z=z,
        )

    def update(updates, state, params=None, **extra_args):
        _tree.require_params("schedule_free", params)
        _tree.check_structure("schedule_free", state.z, updates)
        lr = (
            learning_rate(state.step_count)
            if callable(learning_rate)
            else learning_rate
        )
        max_lr = jnp.maximum(
            state.max_lr, _numerics.hparam(lr).astype(state.max_lr.dtype)
        )
        weight = max_lr ** _numerics.hparam(weight_lr_power).astype(max_lr.dtype)
        total = state.weight_sum + weight
        # 0/0 (learning rate still 0 during warmup) means "no averaging yet".
        ck = jnp.where(total > 0, weight / jnp.where(total > 0, total, 1), 0)
        ck = jnp.where(jnp.isnan(weight) | jnp.isnan(total), jnp.nan, ck)
        base_updates, base_state = base_optimizer.update(
            updates, state.base_optimizer_state, params, **extra_args
        )
        hb1 = state.b1

        def leaf(g, y, z, u):
            cd = _numerics.leaf_dtype(y, z, u)
            b, c = hb1.astype(cd), ck.astype(cd)
            z_store, z_new = _numerics.store(z.astype(cd) + u.astype(cd), z.dtype)
            x = (y.astype(cd) - (1 - b) * z.astype(cd)) / b
            x = (1 - c) * x + c * z_new
            y_new = b * x + (1 - b) * z_new
            return (y_new - y.astype(cd)).astype(g.dtype), z_store

        out = jax.tree.map(leaf, updates, params, state.z, base_updates)
        new, z = _tree.unzip(out, updates, 2)
        return new, ScheduleFreeState(
            b1=state.b1,
            weight_sum=total,
            step_count=_numerics.safe_int32_increment(state.step_count),
            max_lr=max_lr,
            base_optimizer_state=base_state,
            z=z,
        )

    return GradientTransformation(init, update)


def _warmup(learning_rate: Any, warmup_steps: int | None) -> Any:
    if warmup_steps is None:
        return learning_rate
    return warmup_constant_schedule(0.0, learning_rate, warmup_steps)


@_validate.names_errors()
def schedule_free_sgd(
    learning_rate: ArrayLike = 1.0,
    warmup_steps: int | None = None,
    b1: ArrayLike = 0.9,
    weight_decay: ArrayLike | None = None,
    weight_lr_power: ArrayLike = 2.0,
    state_dtype: Any | None = None,
) -> GradientTransformation:
    """Schedule-free SGD: `schedule_free(sgd(lr), lr, ...)`; see `schedule_free`.

    `weight_decay` (None: none) is added to the gradient before the learning rate,
    and `warmup_steps` (None: none) warms the learning rate up linearly from 0.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.schedule_free_sgd(0.1)
        >>> p = jnp.ones(1)
        >>> [round(float(x), 4) for x in tx.update(jnp.ones(1), tx.init(p), p)[0]]
        [-0.1]

    References:
        Defazio et al., 2024: https://arxiv.org/abs/2405.15682
    """
    _check_warmup("schedule_free_sgd", warmup_steps)
    lr = _warmup(learning_rate, warmup_steps)
    opt = sgd(lr)
    if weight_decay is not None:
        opt = chain(add_decayed_weights(weight_decay), opt)
    return schedule_free(opt, lr, b1, weight_lr_power, state_dtype)


def _check_warmup(fn: str, warmup_steps: Any) -> None:
    if warmup_steps is not None:
        check_int(fn, "warmup_steps", warmup_steps, 0)


@_validate.names_errors({"scale_by_rms.decay": "b2"})
def schedule_free_adamw(
    learning_rate: ArrayLike = 0.0025,
    warmup_steps: int | None = None,
    b1: ArrayLike = 0.9,
    b2: ArrayLike = 0.999,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    weight_lr_power: ArrayLike = 2.0,
    state_dtype: Any | None = None,
) -> GradientTransformation:
    """Schedule-free AdamW (Adam without momentum inside `schedule_free`).

    The base optimizer is `chain(scale_by_rms(b2, eps, eps_in_sqrt=False,
    bias_correction=True), add_decayed_weights(weight_decay),
    scale_by_learning_rate(lr))`, as in optax; see `schedule_free`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.schedule_free_adamw(0.1)
        >>> p = jnp.ones(1)
        >>> [round(float(x), 4) for x in tx.update(jnp.ones(1), tx.init(p), p)[0]]
        [-0.1]

    References:
        Defazio et al., 2024: https://arxiv.org/abs/2405.15682
    """
    _check_warmup("schedule_free_adamw", warmup_steps)
    lr = _warmup(learning_rate, warmup_steps)
    opt = chain(
        scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(lr),
    )
    return schedule_free(opt, lr, b1, weight_lr_power, state_dtype)
