# SPDX-License-Identifier: Apache-2.0
"""A different transform for each labelled group of params: `partition`."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax

from gradtx._base import GradientTransformation, set_to_zero, with_extra_args_support
from gradtx.wrappers import _spec
from gradtx.wrappers._masking import MaskedState, mask_tree, masked_update

Labels = Any  # a tree of labels (or a prefix), or a callable params -> such a tree


class PartitionState(NamedTuple):
    """State of `partition`: one `MaskedState` per key of `transforms`."""

    inner_states: Mapping[Hashable, Any]


# optax's older name for the same state; kept for drop-in compatibility.
MultiTransformState = PartitionState


def _checked_transforms(fn: str, transforms: Any) -> dict[Hashable, Any]:
    if not isinstance(transforms, Mapping):
        raise TypeError(
            f"gradtx.{fn}: transforms must be a mapping, got {transforms!r}"
        )
    for key, tx in transforms.items():
        _spec.check_transform(fn, f"transforms[{key!r}]", tx)
    return {k: with_extra_args_support(t) for k, t in transforms.items()}


def build_partition(
    fn: str,
    name: str,
    transforms: Mapping[Hashable, Any],
    labels: Labels,
    mask_compatible_extra_args: bool,
    convert: _spec.Convert | None = None,
) -> GradientTransformation:
    """`partition`, with errors naming the public function `fn` and argument `name`."""
    txs = _checked_transforms(fn, transforms)
    _spec.check_flag(fn, "mask_compatible_extra_args", mask_compatible_extra_args)
    convert = convert or _spec.to_label(tuple(txs))
    labels = _spec.prepare(fn, name, labels, convert)

    def group_masks(tree, arg):
        full = _spec.resolve(fn, name, labels, convert, tree, arg)
        return {g: jax.tree.map(lambda label, g=g: label == g, full) for g in txs}

    def init(params):
        masks = group_masks(params, params)
        return PartitionState(
            {
                g: MaskedState(t.init(mask_tree(params, masks[g])))
                for g, t in txs.items()
            }
        )

    def update(updates, state, params=None, **extra_args):
        masks = group_masks(updates, updates if params is None else params)
        new_states = {}
        for g, t in txs.items():
            updates, inner = masked_update(
                t,
                masks[g],
                updates,
                state.inner_states[g].inner_state,
                params,
                extra_args,
                mask_compatible_extra_args,
            )
            new_states[g] = MaskedState(inner_state=inner)
        return updates, PartitionState(new_states)

    return GradientTransformation(init, update)


def partition(
    transforms: Mapping[Hashable, GradientTransformation],
    param_labels: Labels,
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """Applies `transforms[label]` to the params labelled `label`.

    `param_labels` is a tree of labels shaped like the params or a prefix of them, or
    a callable `params -> such a tree`; it is read exactly like `masked`'s `mask`.
    Every label must be a key of `transforms`; keys that no param uses are fine.
    Each group runs as `masked(transforms[label], labels == label)`.

    Args:
        transforms: Maps each label to a transformation.
        param_labels: A label tree (or prefix), or a callable returning one.
        mask_compatible_extra_args: See `masked`.

    Returns:
        A transformation with `PartitionState({label: MaskedState})`.

    Raises:
        HyperparameterError: If a label is not a key of `transforms` (at construction
            for a tree, at init for a callable).
        TreeMismatchError: If `param_labels` is not a prefix of the params.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.partition(
        ...     {"a": gradtx.sgd(1.0), "f": gradtx.set_to_zero()}, {"w": "a", "b": "f"}
        ... )
        >>> params = {"w": jnp.ones(2), "b": jnp.ones(1)}
        >>> tx.update(params, tx.init(params))[0]
        {'b': Array([0.], dtype=float32), 'w': Array([-1., -1.], dtype=float32)}
    """
    return build_partition(
        "partition",
        "param_labels",
        transforms,
        param_labels,
        mask_compatible_extra_args,
    )


def multi_transform(
    transforms: Mapping[Hashable, GradientTransformation],
    param_labels: Labels,
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """The older optax name of `partition`; see `partition`."""
    return build_partition(
        "multi_transform",
        "param_labels",
        transforms,
        param_labels,
        mask_compatible_extra_args,
    )


def selective_transform(
    optimizer: GradientTransformation,
    *,
    freeze_mask: Any,
) -> GradientTransformation:
    """Runs `optimizer` on the params where `freeze_mask` is False; zeros the rest.

    Unlike `freeze`, the optimizer keeps no state for frozen params. It is
    `partition({"train": optimizer, "freeze": set_to_zero()}, labels)`, with the
    labels read from `freeze_mask` as `masked` reads a mask.

    Args:
        optimizer: The transformation for the trainable params.
        freeze_mask: True for the leaves (or subtrees) to freeze; a bool tree (or
            prefix), a single bool, or a callable returning a bool tree.

    Returns:
        A transformation with `PartitionState` keyed `"freeze"` and `"train"`.

    Raises:
        HyperparameterError: If a `freeze_mask` leaf is not a static bool.
        TreeMismatchError: If `freeze_mask` is not a prefix of the params.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.selective_transform(gradtx.sgd(1.0), freeze_mask={"w": False})
        >>> params = {"w": {"a": jnp.ones(2)}}
        >>> tx.update(params, tx.init(params))[0]["w"]["a"]
        Array([-1., -1.], dtype=float32)
    """
    transforms = {"train": optimizer, "freeze": set_to_zero()}
    convert: Callable[..., str] = lambda fn, name, path, leaf: (
        "freeze" if _spec.to_bool(fn, name, path, leaf) else "train"
    )
    return build_partition(
        "selective_transform", "freeze_mask", transforms, freeze_mask, False, convert
    )
