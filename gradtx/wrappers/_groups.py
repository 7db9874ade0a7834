# SPDX-License-Identifier: Apache-2.0
"""PyTorch-style parameter groups on key paths: `ParamGroup` and `param_groups`.

A leaf's path is its keys joined by `/` (`{"head": {"dense": {"bias": b}}}` gives
`head/dense/bias`; list and tuple indices are numbers, attributes their names). A
`str` rule is a regular expression found anywhere in that path (`re.search`), so use
`^` and `$` to anchor; a callable rule gets `(path, leaf)` and returns a bool.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from gradtx import _validate
from gradtx._base import GradientTransformation, set_to_zero
from gradtx._errors import HyperparameterError
from gradtx._types import ScalarOrSchedule
from gradtx.wrappers._llrd import path_name
from gradtx.wrappers._partition import build_partition

Rule = str | re.Pattern | Callable[[str, Any], bool]


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """One rule of `param_groups`: which leaves it takes and how they are trained.

    Every override left as None keeps the value given to `param_groups`; `options`
    overrides any other keyword of the optimizer factory (`b2`, `momentum`, ...).
    `lr_scale` multiplies the group's learning rate (a schedule's too). A frozen
    group gets exact zero updates and keeps no optimizer state; it takes no overrides.

    Example:
        >>> import gradtx
        >>> gradtx.ParamGroup("head", r"^head/", learning_rate=1e-3).name
        'head'
    """

    name: str
    match: Rule
    _: dataclasses.KW_ONLY
    learning_rate: ScalarOrSchedule | None = None
    lr_scale: Any = None
    weight_decay: ScalarOrSchedule | None = None
    frozen: bool = False
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checks every field; errors name `gradtx.ParamGroup` and the field."""
        fn = "ParamGroup"
        if not isinstance(self.name, str) or not self.name:
            raise HyperparameterError(
                f"gradtx.{fn}: name must be a non-empty str, got {self.name!r}"
            )
        _check_rule(self.name, self.match)
        for arg in ("learning_rate", "lr_scale", "weight_decay"):
            _validate.check_nonnegative(fn, arg, getattr(self, arg))
        if not isinstance(self.frozen, (bool, np.bool_)):
            raise TypeError(f"gradtx.{fn}: frozen must be a bool, got {self.frozen!r}")
        if not isinstance(self.options, Mapping):
            raise TypeError(
                f"gradtx.{fn}: options must be a mapping, got {self.options!r}"
            )
        if self.frozen and self.overrides():
            raise HyperparameterError(
                f"gradtx.{fn}: group {self.name!r} is frozen, so its overrides "
                f"{sorted(self.overrides())} would be ignored; remove them"
            )

    def overrides(self) -> dict[str, Any]:
        """The optimizer keywords this group sets (`lr_scale` as itself)."""
        named = {
            "learning_rate": self.learning_rate,
            "lr_scale": self.lr_scale,
            "weight_decay": self.weight_decay,
        }
        return {k: v for k, v in named.items() if v is not None} | dict(self.options)

    def matches(self, path: str, leaf: Any) -> bool:
        """Whether this group's rule takes the leaf at `path` (a `/`-joined path)."""
        if isinstance(self.match, (str, re.Pattern)):
            return re.search(self.match, path) is not None
        hit = self.match(path, leaf)
        if not isinstance(hit, (bool, np.bool_)):
            raise TypeError(
                f"gradtx.ParamGroup: the match of group {self.name!r} must return a "
                f"bool, got {hit!r} for {path!r}"
            )
        return bool(hit)


def _check_rule(name: str, rule: Any) -> None:
    if not isinstance(rule, (str, re.Pattern)) and not callable(rule):
        raise TypeError(
            f"gradtx.ParamGroup: match of group {name!r} must be a regex str, a "
            f"compiled pattern or a callable (path, leaf) -> bool, got {rule!r}"
        )
    try:
        re.compile(rule) if isinstance(rule, str) else None
    except re.error as e:
        raise HyperparameterError(
            f"gradtx.ParamGroup: match of group {name!r} must be a valid regular "
            f"expression, got {rule!r} ({e})"
        ) from e


def _check_groups(fn: str, groups: Any, default: Any, allow_unused: Any) -> list:
    if isinstance(groups, ParamGroup) or not isinstance(groups, Sequence):
        raise TypeError(f"gradtx.{fn}: groups must be a sequence, got {groups!r}")
    groups = list(groups)
    bad = [(i, g) for i, g in enumerate(groups) if not isinstance(g, ParamGroup)]
    if bad:
        raise TypeError(
            f"gradtx.{fn}: groups[{bad[0][0]}] must be a ParamGroup, got {bad[0][1]!r}"
        )
    if default is not None and (not isinstance(default, str) or not default):
        raise HyperparameterError(
            f"gradtx.{fn}: default must be None or a group name, got {default!r}"
        )
    names = [g.name for g in groups] + ([default] if default else [])
    if len(set(names)) != len(names):
        raise HyperparameterError(
            f"gradtx.{fn}: group names (and default) must be unique, got {names}"
        )
    if not isinstance(allow_unused, (bool, np.bool_)):
        raise TypeError(
            f"gradtx.{fn}: allow_unused must be a bool, got {allow_unused!r}"
        )
    return groups


def assign(fn: str, groups: list, default: Any, allow_unused: bool, params: Any):
    """Returns `(labels tree, paths, leaves)`; raises on uncovered or unused groups."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [path_name(p) for p, _ in flat]
    labels = [
        next((g.name for g in groups if g.matches(path, leaf)), default)
        for path, (_, leaf) in zip(paths, flat, strict=True)
    ]
    uncovered = [p for p, label in zip(paths, labels, strict=True) if label is None]
    if uncovered:
        raise HyperparameterError(
            f"gradtx.{fn}: no group matches {len(uncovered)} leaf path(s) and default "
            f"is None: {uncovered[:20]}; add a group or pass default='<name>'"
        )
    unused = [g.name for g in groups if g.name not in labels]
    if unused and not allow_unused:
        raise HyperparameterError(
            f"gradtx.{fn}: group(s) {unused} match no leaf (or only leaves an earlier "
            f"group took; the first match wins); paths: {paths[:20]}; pass "
            f"allow_unused=True if that is intended"
        )
    return treedef.unflatten(labels), paths, [leaf for _, leaf in flat]


def _group_transform(fn, optimizer, group, hyperparams):
    kwargs = dict(hyperparams) | group.overrides()
    factor = kwargs.pop("lr_scale", None)
    if factor is not None:
        if "learning_rate" not in kwargs:
            raise HyperparameterError(
                f"gradtx.{fn}: group {group.name!r} sets lr_scale={factor!r} but no "
                f"learning_rate is given (to param_groups or to the group)"
            )
        lr = kwargs["learning_rate"]
        kwargs["learning_rate"] = (
            (lambda count: lr(count) * factor) if callable(lr) else lr * factor
        )
    try:
        return optimizer(**kwargs)
    except TypeError as e:
        raise TypeError(
            f"gradtx.{fn}: optimizer rejected the hyperparameters of group "
            f"{group.name!r} ({sorted(kwargs)}): {e}"
        ) from e


def param_groups(
    optimizer: Callable[..., GradientTransformation],
    groups: Sequence[ParamGroup],
    *,
    default: str | None = None,
    allow_unused: bool = False,
    **hyperparams: Any,
) -> GradientTransformation:
    """Trains each group of leaves with its own hyperparameters, as torch param groups.

    Each leaf joins the first group whose `match` takes it (or `default`). Each group
    runs `optimizer(**hyperparams, **overrides)` (`set_to_zero()` if frozen) through
    `partition`, so its state is `PartitionState({group name: MaskedState})`.

    Args:
        optimizer: An optimizer factory such as `gradtx.adamw`, called once per group.
        groups: `ParamGroup` rules, tried in order; the first match wins.
        default: The group name of leaves no rule takes (trained with `hyperparams`
            as given); None makes such leaves an error.
        allow_unused: Allow a rule that takes no leaf (by default an error, since it
            is usually a typo or a rule shadowed by an earlier one).
        **hyperparams: The keywords shared by every group (`learning_rate=1e-4`).

    Returns:
        A transformation; labels are found from the params at init and each update.

    Raises:
        HyperparameterError: At init or update, naming the paths no group takes, or
            the groups that take no leaf.
        TypeError: If a group's keywords do not fit `optimizer`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.param_groups(gradtx.sgd, [
        ...     gradtx.ParamGroup("head", "^head/", learning_rate=1.0),
        ...     gradtx.ParamGroup("embed", "embed", frozen=True),
        ... ], default="rest", learning_rate=0.1)
        >>> p = {"embed": jnp.ones(1), "head": {"w": jnp.ones(1)}, "w": jnp.ones(1)}
        >>> tx.update(p, tx.init(p))[0]
        {'embed': Array([0.], dtype=float32), 'head': {'w': Array([-1.], dtype=float32)}, 'w': Array([-0.1], dtype=float32)}
    """  # noqa: E501
    fn = "param_groups"
    groups = _check_groups(fn, groups, default, allow_unused)
    if not callable(optimizer) or hasattr(optimizer, "update"):
        raise TypeError(
            f"gradtx.{fn}: optimizer must be a factory such as gradtx.adamw (called "
            f"with each group's hyperparameters), got {optimizer!r}"
        )
    everyone = [*groups, *([ParamGroup(default, "")] if default else [])]
    transforms = {
        g.name: set_to_zero()
        if g.frozen
        else _group_transform(fn, optimizer, g, hyperparams)
        for g in everyone
    }
    labels = lambda params: assign(fn, groups, default, allow_unused, params)[0]
    return build_partition(fn, "groups", transforms, labels, False)


class GroupReport(dict):
    """`{path: group name}` in leaf order; `str()` is a table with leaf shapes."""

    shapes: dict[str, tuple[int, ...]]

    def __str__(self) -> str:
        """A fixed-width table: path, group, shape."""
        width = max([4, *map(len, self)])
        gw = max([5, *map(len, self.values())])
        rows = [f"{'path':<{width}}  {'group':<{gw}}  shape"]
        rows += [
            f"{p:<{width}}  {g:<{gw}}  {self.shapes.get(p, ())}"
            for p, g in self.items()
        ]
        return "\n".join(rows)


def param_group_report(
    groups: Sequence[ParamGroup],
    params: Any,
    *,
    default: str | None = None,
    allow_unused: bool = False,
) -> dict[str, str]:
    """Says which group each leaf joins, with the same checks as `param_groups`.

    Args:
        groups: The rules given to `param_groups`.
        params: The params tree (arrays, or `jax.ShapeDtypeStruct`s).
        default: As in `param_groups`.
        allow_unused: As in `param_groups`.

    Returns:
        A dict from `/`-joined leaf path to group name; printing it shows a table.

    Raises:
        HyperparameterError: As `param_groups` at init.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> groups = [gradtx.ParamGroup("head", "^head/", learning_rate=1.0)]
        >>> p = {"head": {"w": jnp.ones(2)}, "w": jnp.ones(1)}
        >>> gradtx.param_group_report(groups, p, default="rest")
        {'head/w': 'head', 'w': 'rest'}
    """
    fn = "param_group_report"
    groups = _check_groups(fn, groups, default, allow_unused)
    labels, paths, leaves = assign(fn, groups, default, allow_unused, params)
    report = GroupReport(zip(paths, jax.tree.leaves(labels), strict=True))
    report.shapes = {
        p: tuple(x.shape if hasattr(x, "shape") else np.shape(x))
        for p, x in zip(paths, leaves, strict=True)
    }
    return report
