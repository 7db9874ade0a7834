# SPDX-License-Identifier: Apache-2.0
"""Read and replace optimizer-state fields by name anywhere in a nested state.

These mirror `optax.tree.get`, `optax.tree.set` and `optax.tree.get_all_with_path`.
A name matches a NamedTuple field (`count`, `mu`, `nu`, ...), a dict key (injected
hyperparameters, monitor measurements) or a NamedTuple class name; the search descends
through tuples, lists, dicts and NamedTuples, so the position of a block in a chain
never matters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gradtx._tree import children as _children
from gradtx._tree import entry_name as _name
from gradtx._tree import is_namedtuple as _is_namedtuple
from gradtx._tree import norm as _norm
from gradtx._tree import rebuild as _rebuild

__all__ = ["get", "get_all_with_path", "norm", "set"]

KeyPath = tuple[Any, ...]
Filter = Callable[[KeyPath, Any], bool]


def get_all_with_path(
    tree: Any, key: str, filtering: Filter | None = None
) -> list[tuple[KeyPath, Any]]:
    """Returns `(path, value)` for every match of `key` in `tree`.

    `key` matches a NamedTuple field (`"count"`, `"mu"`), a dict key (an injected
    hyperparameter such as `"learning_rate"`, a `monitor` measurement) or the class
    name of a NamedTuple state (`"ScaleByAdamState"`), as in optax.

    Args:
        tree: A (nested) optimizer state.
        key: A field name, dict key or NamedTuple class name.
        filtering: Optional `(path, value) -> bool` that keeps only some matches.

    Returns:
        The matches in depth-first order; each path is a tuple of jax key entries.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(2)})
        >>> found = gradtx.tree.get_all_with_path(state, "count")
        >>> [jax.tree_util.keystr(p) for p, _ in found]
        ['[0].count']
    """
    found: list[tuple[KeyPath, Any]] = []

    def keep(path: KeyPath, value: Any) -> bool:
        return filtering is None or filtering(path, value)

    def visit(node: Any, path: KeyPath) -> None:
        if _is_namedtuple(node) and type(node).__name__ == key and keep(path, node):
            found.append((path, node))
        for entry, child in _children(node):
            p = (*path, entry)
            if _name(entry) == key and keep(p, child):
                found.append((p, child))
            visit(child, p)

    visit(tree, ())
    return found


def get(
    tree: Any, key: str, default: Any = None, filtering: Filter | None = None
) -> Any:
    """Returns the value of the one state field named `key`, or `default` if none.

    Raises:
        KeyError: If several fields match; narrow them with `filtering`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(2)})
        >>> gradtx.tree.get(state, "count")
        Array(0, dtype=int32)
    """
    found = get_all_with_path(tree, key, filtering)
    if not found:
        return default
    if len(found) > 1:
        paths = ", ".join(jax.tree_util.keystr(p) for p, _ in found)
        raise KeyError(
            f"gradtx.tree.get: {key!r} matches several fields ({paths}); "
            "pass filtering="
        )
    return found[0][1]


def set(tree: Any, filtering: Filter | None = None, /, **kwargs: Any) -> Any:
    """Returns a copy of `tree` with every match of each name in `kwargs` replaced.

    Names match as in `get_all_with_path` (NamedTuple fields, dict keys, NamedTuple
    class names). A callable value receives the old value.

    Raises:
        KeyError: If a name in `kwargs` matches nothing.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(2)})
        >>> gradtx.tree.get(gradtx.tree.set(state, count=jnp.int32(7)), "count")
        Array(7, dtype=int32)
    """
    seen: dict[str, int] = dict.fromkeys(kwargs, 0)

    def replace(name: Any, path: KeyPath, value: Any) -> Any:
        if name not in kwargs or (filtering is not None and not filtering(path, value)):
            return value
        seen[name] += 1
        new = kwargs[name]
        return new(value) if callable(new) else new

    def visit(node: Any, path: KeyPath) -> Any:
        children = _children(node)
        if children:
            node = _rebuild(
                node,
                [
                    replace(_name(e), (*path, e), visit(c, (*path, e)))
                    for e, c in children
                ],
            )
        if _is_namedtuple(node):
            node = replace(type(node).__name__, path, node)
        return node

    out = visit(tree, ())
    missing = [k for k, n in seen.items() if n == 0]
    if missing:
        raise KeyError(f"gradtx.tree.set: nothing in the state is named {missing}")
    return out


def norm(tree: Any) -> jax.Array:
    """Global l2 norm of a pytree (same as `gradtx.global_norm`)."""
    return _norm(tree)
