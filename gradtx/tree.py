# SPDX-License-Identifier: Apache-2.0
"""Read and replace optimizer-state fields by name anywhere in a nested state.

These mirror `optax.tree.get`, `optax.tree.set` and `optax.tree.get_all_with_path`.
Fields are the names of NamedTuple states (`count`, `mu`, `nu`, ...); the search
descends through tuples, lists, dicts and NamedTuples, so the position of a block in a
chain never matters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gradtx._tree import norm as _norm

__all__ = ["get", "get_all_with_path", "norm", "set"]

KeyPath = tuple[Any, ...]
Filter = Callable[[KeyPath, Any], bool]


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _children(node: Any) -> list[tuple[Any, Any]]:
    if _is_namedtuple(node):
        return [(jax.tree_util.GetAttrKey(f), getattr(node, f)) for f in node._fields]
    if isinstance(node, (tuple, list)):
        return [(jax.tree_util.SequenceKey(i), c) for i, c in enumerate(node)]
    if isinstance(node, dict):
        return [(jax.tree_util.DictKey(k), c) for k, c in node.items()]
    return []


def get_all_with_path(
    tree: Any, key: str, filtering: Filter | None = None
) -> list[tuple[KeyPath, Any]]:
    """Returns `(path, value)` for every NamedTuple field named `key` in `tree`.

    Args:
        tree: A (nested) optimizer state.
        key: A field name such as `"count"` or `"mu"`.
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

    def visit(node: Any, path: KeyPath) -> None:
        if _is_namedtuple(node) and key in node._fields:
            value = getattr(node, key)
            p = (*path, jax.tree_util.GetAttrKey(key))
            if filtering is None or filtering(p, value):
                found.append((p, value))
        for k, child in _children(node):
            visit(child, (*path, k))

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
    """Returns a copy of `tree` with every NamedTuple field named in `kwargs` replaced.

    A value may be a callable, which receives the old value. Unknown names raise.

    Raises:
        KeyError: If a name in `kwargs` matches no field.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(2)})
        >>> gradtx.tree.get(gradtx.tree.set(state, count=jnp.int32(7)), "count")
        Array(7, dtype=int32)
    """
    seen: dict[str, int] = dict.fromkeys(kwargs, 0)

    def visit(node: Any, path: KeyPath) -> Any:
        if _is_namedtuple(node):
            fields = {}
            for f in node._fields:
                p = (*path, jax.tree_util.GetAttrKey(f))
                child = visit(getattr(node, f), p)
                if f in kwargs and (filtering is None or filtering(p, child)):
                    seen[f] += 1
                    v = kwargs[f]
                    child = v(child) if callable(v) else v
                fields[f] = child
            return type(node)(**fields)
        if isinstance(node, (tuple, list)):
            return type(node)(
                visit(c, (*path, jax.tree_util.SequenceKey(i)))
                for i, c in enumerate(node)
            )
        if isinstance(node, dict):
            return type(node)(
                {
                    k: visit(c, (*path, jax.tree_util.DictKey(k)))
                    for k, c in node.items()
                }
            )
        return node

    out = visit(tree, ())
    missing = [k for k, n in seen.items() if n == 0]
    if missing:
        raise KeyError(f"gradtx.tree.set: no state field named {missing}")
    return out


def norm(tree: Any) -> jax.Array:
    """Global l2 norm of a pytree (same as `gradtx.global_norm`)."""
    return _norm(tree)
