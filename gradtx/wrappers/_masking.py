# SPDX-License-Identifier: Apache-2.0
"""Apply a transform to part of the params only: `masked` and `freeze`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from gradtx._base import GradientTransformation, set_to_zero, with_extra_args_support
from gradtx._types import MaskOrFn
from gradtx.wrappers import _spec


class MaskedState(NamedTuple):
    """State of `masked`: the inner state, built for the masked-in leaves only."""

    inner_state: Any


class MaskedNode(NamedTuple):
    """Stands in for a masked-out leaf or subtree: a pytree node with no leaves.

    `jax.tree.map` passes over it, so the inner transform of `masked` sees the params'
    own tree structure, with a `MaskedNode` wherever the mask is `False`.
    """


def mask_tree(tree: Any, full_mask: Any) -> Any:
    """`tree` with each leaf whose mask is False replaced by a `MaskedNode`."""
    return jax.tree.map(lambda m, x: x if m else MaskedNode(), full_mask, tree)


def masked_update(
    inner: GradientTransformation,
    full_mask: Any,
    updates: Any,
    inner_state: Any,
    params: Any,
    extra_args: dict[str, Any],
    mask_compatible_extra_args: bool,
) -> tuple[Any, Any]:
    """Runs `inner.update` on the masked-in leaves; the others pass through."""
    if mask_compatible_extra_args:
        shape = jax.tree.structure(updates)
        extra_args = {
            k: mask_tree(v, full_mask) if jax.tree.structure(v) == shape else v
            for k, v in extra_args.items()
        }
    new, inner_state = inner.update(
        mask_tree(updates, full_mask),
        inner_state,
        None if params is None else mask_tree(params, full_mask),
        **extra_args,
    )
    out = jax.tree.map(lambda m, n, o: n if m else o, full_mask, new, updates)
    return out, inner_state


def build_masked(
    fn: str,
    name: str,
    inner: Any,
    mask: Any,
    mask_compatible_extra_args: bool,
    convert: _spec.Convert = _spec.to_bool,
) -> GradientTransformation:
    """`masked`, with errors that name the public function `fn` and argument `name`."""
    _spec.check_transform(fn, "inner", inner)
    _spec.check_flag(fn, "mask_compatible_extra_args", mask_compatible_extra_args)
    tx = with_extra_args_support(inner)
    mask = _spec.prepare(fn, name, mask, convert)

    def init(params):
        full_mask = _spec.resolve(fn, name, mask, convert, params, params)
        return MaskedState(inner_state=tx.init(mask_tree(params, full_mask)))

    def update(updates, state, params=None, **extra_args):
        arg = updates if params is None else params
        full_mask = _spec.resolve(fn, name, mask, convert, updates, arg)
        updates, inner_state = masked_update(
            tx,
            full_mask,
            updates,
            state.inner_state,
            params,
            extra_args,
            mask_compatible_extra_args,
        )
        return updates, MaskedState(inner_state=inner_state)

    return GradientTransformation(init, update)


def masked(
    inner: GradientTransformation,
    mask: MaskOrFn,
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """Applies `inner` only where `mask` is True; other updates pass through unchanged.

    The inner transform sees the params' tree with a `MaskedNode` for each masked-out
    leaf, and keeps state for the masked-in leaves only. `mask` is a tree of static
    bools shaped like the params or a prefix of them (a subtree gets its root's value),
    or a callable `params -> such a tree`, called with the params (the updates when
    `update` gets no params). A mask that is both callable and a pytree (an Equinox
    module, say) is a function only if all its leaves are callable, as in optax.

    Args:
        inner: The transformation to apply to the masked-in leaves.
        mask: A bool tree (or prefix), or a callable returning one.
        mask_compatible_extra_args: Also mask each extra keyword argument whose tree
            structure equals the updates'.

    Returns:
        A transformation with `MaskedState`.

    Raises:
        HyperparameterError: If a mask leaf is not a static bool.
        TreeMismatchError: At init or trace time, if `mask` is not a prefix of the
            params; the message names the first differing key path.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.masked(gradtx.scale(-1.0), {"w": True, "b": False})
        >>> params = {"w": jnp.ones(2), "b": jnp.ones(1)}
        >>> tx.update(params, tx.init(params))[0]
        {'b': Array([1.], dtype=float32), 'w': Array([-1., -1.], dtype=float32)}
    """
    return build_masked("masked", "mask", inner, mask, mask_compatible_extra_args)


def freeze(mask: MaskOrFn) -> GradientTransformation:
    """Zeros the updates where `mask` is True, which holds those params constant.

    Same as `masked(set_to_zero(), mask)`; see `masked` for what `mask` may be (a
    single bool freezes everything or nothing).

    Args:
        mask: True for the leaves (or subtrees) to freeze.

    Returns:
        A transformation with `MaskedState(inner_state=EmptyState())`.

    Raises:
        HyperparameterError: If a mask leaf is not a static bool.
        TreeMismatchError: If `mask` is not a prefix of the params.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.freeze({"w": True, "b": False})
        >>> params = {"w": jnp.ones(2), "b": jnp.ones(1)}
        >>> tx.update(params, tx.init(params))[0]
        {'b': Array([1.], dtype=float32), 'w': Array([0., 0.], dtype=float32)}
    """
    return build_masked("freeze", "mask", set_to_zero(), mask, False)
