# SPDX-License-Identifier: Apache-2.0
"""What the torch porting layer shares: torch-style validation and leaf helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _numerics, _tree, _validate
from gradtx._base import GradientTransformation
from gradtx._errors import HyperparameterError
from gradtx.transforms._scaling import scale
from gradtx.transforms._weight_decay import add_decayed_weights


def fn_name(fn: str) -> str:
    """The function name in errors (`_validate` prefixes `gradtx.`)."""
    return f"torch.{fn}"


def check(fn: str, name: str, value: Any, low: float | None = None, **kw: Any) -> None:
    """Torch's `Invalid <name>: <value>` check, raised as a `HyperparameterError`."""
    _validate.check_range(fn_name(fn), name, value, low, **kw)


def check_pair(
    fn: str, name: str, pair: Any, low: float, high: float | None, **kw: Any
) -> tuple[Any, Any]:
    """Checks both entries of a pair argument (`betas`, `etas`), naming `name[i]`."""
    if not isinstance(pair, Sequence) or len(pair) != 2:
        raise HyperparameterError(
            f"gradtx.torch.{fn}: {name} must be a pair of numbers, got {pair!r}"
        )
    for i, value in enumerate(pair):
        check(fn, f"{name}[{i}]", value, low, high=high, **kw)
    return pair[0], pair[1]


def check_lr(fn: str, lr: Any) -> None:
    """torch: `Invalid learning rate: {lr}` unless `lr >= 0`."""
    check(fn, "lr", lr, 0.0)


def no_schedule(fn: str, name: str, value: Any) -> None:
    """For arguments torch reads once (rprop's initial step, asgd's eta)."""
    if callable(value):
        raise HyperparameterError(
            f"gradtx.torch.{fn}: {name} must be a number or an array here (it enters "
            f"the state, not a per-step scale), got {value!r}"
        )


def lr_at(lr: Any, count: jax.Array) -> jax.Array:
    """The learning rate for the step whose pre-increment counter is `count`."""
    return _numerics.hparam(lr(count) if callable(lr) else lr)


def prefix(maximize: bool, weight_decay: Any) -> list[GradientTransformation]:
    """Torch's first two lines: negate the gradient, then add coupled L2 decay."""
    blocks = [scale(-1.0)] if maximize else []
    if callable(weight_decay) or _validate.concrete_float(weight_decay) != 0.0:
        blocks.append(add_decayed_weights(weight_decay))
    return blocks


def decoupled(weight_decay: Any) -> list[GradientTransformation]:
    """Decoupled decay (`param *= 1 - lr * wd`) as a block before the lr."""
    if callable(weight_decay) or _validate.concrete_float(weight_decay) != 0.0:
        return [add_decayed_weights(weight_decay)]
    return []


def leaf_map(
    fn: str, leaf: Callable[..., tuple[Any, ...]], updates: Any, *trees: Any
) -> tuple[Any, ...]:
    """Maps `leaf(g, *state_leaves)` and unzips its tuple results into trees."""
    _tree.check_structure(fn_name(fn), trees[0], updates)
    out = jax.tree.map(leaf, updates, *trees)
    n = len(jax.tree.leaves(out, is_leaf=lambda x: isinstance(x, tuple))[0])
    return _tree.unzip(out, updates, n)


def compute(*xs: jax.Array) -> tuple[Any, Callable[[jax.Array], jax.Array]]:
    """The compute dtype of some leaves and a caster of hyperparameters to it."""
    cd = _numerics.leaf_dtype(*xs)
    return cd, lambda h: jnp.asarray(h).astype(_numerics.real_dtype(cd))


def step_float(count: jax.Array) -> jax.Array:
    """An int32 step counter as a float in the hyperparameter dtype."""
    return count.astype(_numerics.hparam_dtype())
