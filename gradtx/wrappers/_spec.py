# SPDX-License-Identifier: Apache-2.0
"""Mask and label specs: a tree (or a prefix of one), or a callable `params -> tree`.

Shared by `masked`, `freeze`, `partition` and `selective_transform`. A tree spec is
checked leaf by leaf when the wrapper is built; a callable one each time it is called.
Either way the result is broadcast to the params with a `TreeMismatchError` that names
the first key path where the spec is not a prefix of the params.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np

from gradtx._errors import HyperparameterError, TreeMismatchError

KeyPath = tuple[Any, ...]
# Maps (function, argument, key path, raw leaf) to a checked leaf, or raises.
Convert = Callable[[str, str, KeyPath, Any], Any]


def check_transform(fn: str, name: str, tx: Any) -> None:
    """Raises `TypeError` unless `tx` has callable `init` and `update`."""
    if not (
        callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))
    ):
        raise TypeError(
            f"gradtx.{fn}: {name} must be a GradientTransformation (an init/update "
            f"pair), got {tx!r}"
        )


def is_function(spec: Any) -> bool:
    """Whether `spec` is read as a callable `params -> tree` rather than as a tree.

    optax's rule, so specs mean the same in both libraries: a callable pytree (an
    Equinox module, say) is a function only when every one of its leaves is callable.
    """
    if not callable(spec):
        return False
    leaves = jax.tree.leaves(jax.tree.map(callable, spec))
    return bool(leaves) and all(leaves)


def where(path: KeyPath) -> str:
    """A key path as text, e.g. `['layer']['w']`, or `the root`."""
    return jax.tree_util.keystr(path) if path else "the root"


def to_bool(fn: str, name: str, path: KeyPath, leaf: Any) -> bool:
    """Checks one mask leaf: a Python or NumPy bool, or a concrete 0-d bool array."""
    ok = isinstance(leaf, (bool, np.bool_)) or (
        isinstance(leaf, (np.ndarray, jax.Array))
        and not isinstance(leaf, jax.core.Tracer)
        and leaf.shape == ()
        and leaf.dtype == np.bool_
    )
    if not ok:
        raise HyperparameterError(
            f"gradtx.{fn}: {name} leaves must be static bools (or 0-d bool arrays); "
            f"got {leaf!r} at {where(path)}"
        )
    return bool(leaf)


def to_label(keys: Any) -> Convert:
    """Returns a leaf check that accepts only hashable labels among `keys`."""

    def convert(fn: str, name: str, path: KeyPath, leaf: Any) -> Any:
        if not isinstance(leaf, Hashable) or leaf not in keys:
            raise HyperparameterError(
                f"gradtx.{fn}: {name} has label {leaf!r} at {where(path)}, but "
                f"transforms has no such key (its keys: {sorted(map(repr, keys))})"
            )
        return leaf

    return convert


def convert_leaves(fn: str, name: str, spec: Any, convert: Convert) -> Any:
    """Applies `convert` to every leaf of `spec` (None and empty nodes are kept)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: convert(fn, name, path, leaf), spec
    )


def prepare(fn: str, name: str, spec: Any, convert: Convert) -> Any:
    """Checks a tree spec at construction; a callable spec is returned as it is."""
    if is_function(spec):
        return spec
    return convert_leaves(fn, name, spec, convert)


def resolve(
    fn: str, name: str, spec: Any, convert: Convert, tree: Any, arg: Any
) -> Any:
    """Broadcasts the spec to `tree`; a callable spec is first called with `arg`."""
    if is_function(spec):
        spec = convert_leaves(fn, name, spec(arg), convert)
    return expand(fn, name, spec, tree)


def _is_masked_node(x: Any) -> bool:
    # Also matches optax.MaskedNode, so gradtx wrappers nest inside optax.masked.
    return isinstance(x, tuple) and not x and type(x).__name__ == "MaskedNode"


def expand(fn: str, name: str, spec: Any, tree: Any) -> Any:
    """Broadcasts each leaf of `spec` over the matching subtree of `tree`.

    A subtree of `tree` that an outer `masked` has already replaced by a `MaskedNode`
    matches any part of `spec`, so nested masks may be prefixes too.
    """
    try:  # the common case, in one C++ tree walk
        return jax.tree.map(lambda s, sub: jax.tree.map(lambda _: s, sub), spec, tree)
    except (ValueError, TypeError):
        return _walk(fn, name, spec, tree, ())


def _one_level(x: Any) -> tuple[list[Any], list[Any], Any]:
    pairs, treedef = jax.tree_util.tree_flatten_with_path(
        x, is_leaf=lambda y: y is not x
    )
    return [p[0] for p, _ in pairs], [c for _, c in pairs], treedef


def _walk(fn: str, name: str, spec: Any, tree: Any, path: KeyPath) -> Any:
    if _is_masked_node(tree):
        return tree
    if jax.tree_util.all_leaves([spec]):
        return jax.tree.map(lambda _: spec, tree)
    s_keys, s_kids, s_def = _one_level(spec)
    if jax.tree_util.all_leaves([tree]):
        _mismatch(
            fn, name, spec, tree, path, f"a {_kind(spec)} in {name}, a leaf in params"
        )
    t_keys, t_kids, t_def = _one_level(tree)
    if s_def != t_def:
        at, why = _first_key(name, s_keys, t_keys)
        why = why or f"a {_kind(spec)} in {name}, a {_kind(tree)} in params"
        _mismatch(fn, name, spec, tree, path, why, at)
    kids = [
        _walk(fn, name, s, t, (*path, k))
        for k, s, t in zip(s_keys, s_kids, t_kids, strict=True)
    ]
    return t_def.unflatten(kids)


def _kind(x: Any) -> str:
    return type(x).__name__


def _first_key(name: str, s_keys: list, t_keys: list) -> tuple[KeyPath, str]:
    """The first key present on one side only, and which side; else `((), "")`."""
    only_s = [(k, f"only in {name}") for k in s_keys if k not in t_keys]
    only_t = [(k, "only in params") for k in t_keys if k not in s_keys]
    if not only_s + only_t:
        return (), ""
    pos = {k: i for i, k in enumerate(t_keys)} | {k: i for i, k in enumerate(s_keys)}
    k, why = min(only_s + only_t, key=lambda kw: pos[kw[0]])
    return (k,), why


def _mismatch(
    fn: str, name: str, spec: Any, tree: Any, path: KeyPath, why: str, at: KeyPath = ()
) -> None:
    raise TreeMismatchError(
        f"gradtx.{fn}: {name} must be a prefix of the params tree; first difference "
        f"at {where((*path, *at))} ({why}).\n  {name}: {jax.tree.structure(spec)}\n"
        f"  params: {jax.tree.structure(tree)}"
    )


def check_flag(fn: str, name: str, value: Any) -> None:
    """Raises `TypeError` unless `value` is a bool (a switch, never a truthy object)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"gradtx.{fn}: {name} must be a bool, got {value!r}")
