# SPDX-License-Identifier: Apache-2.0
"""Pytree utilities, the same functions as `optax.tree`.

`get`, `set` and `get_all_with_path` read and replace optimizer-state fields by name
anywhere in a nested state: a name matches a NamedTuple field (`count`, `mu`, `nu`,
...), a dict key (injected hyperparameters, monitor measurements) or a NamedTuple
class name; the search descends through tuples, lists, dicts and NamedTuples, so the
position of a block in a chain never matters. `map_params` maps over the copies of
the params inside a state. The arithmetic, reductions, casts and random trees live in
`gradtx._tree_math` and `gradtx._tree_cast`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gradtx._moment_trees import (
    bias_correction,
    update_infinity_moment,
    update_moment,
    update_moment_per_elem_norm,
)
from gradtx._tree import children as _plain_children
from gradtx._tree import entry_name as _name
from gradtx._tree import full_like, zeros_like
from gradtx._tree import is_namedtuple as _is_namedtuple
from gradtx._tree import rebuild as _rebuild
from gradtx._tree_cast import (
    cast,
    cast_like,
    dtype,
    random_like,
    split_key_like,
    unwrap_random_key_data,
)
from gradtx._tree_keys import NamedTupleKey as _NamedTupleKey
from gradtx._tree_math import (
    add,
    add_scale,
    allclose,
    batch_shape,
    clip,
    conj,
    div,
    max,
    min,
    mul,
    norm,
    ones_like,
    real,
    scale,
    size,
    sub,
    sum,
    vdot,
    where,
)

__all__ = [
    "add",
    "add_scale",
    "allclose",
    "batch_shape",
    "bias_correction",
    "cast",
    "cast_like",
    "clip",
    "conj",
    "div",
    "dtype",
    "full_like",
    "get",
    "get_all_with_path",
    "map_params",
    "max",
    "min",
    "mul",
    "norm",
    "ones_like",
    "random_like",
    "real",
    "scale",
    "set",
    "size",
    "split_key_like",
    "sub",
    "sum",
    "unwrap_random_key_data",
    "update_infinity_moment",
    "update_moment",
    "update_moment_per_elem_norm",
    "vdot",
    "where",
    "zeros_like",
]

KeyPath = tuple[Any, ...]
Filter = Callable[[KeyPath, Any], bool]


def _children(node: Any) -> list[tuple[Any, Any]]:
    """`_tree.children`, with NamedTuple fields keyed by `NamedTupleKey` (as optax)."""
    if _is_namedtuple(node):
        cls = type(node).__name__
        return [(_NamedTupleKey(cls, f), getattr(node, f)) for f in node._fields]
    return _plain_children(node)


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
        The matches in depth-first order; each path is a tuple of jax key entries,
        with `gradtx.tree_utils.NamedTupleKey` for NamedTuple fields (as optax).

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


@jax.tree_util.register_pytree_node_class
class _ParamsMarker:
    """Stands in for the params during `map_params`: a pytree node with no leaves.

    Any `jax.tree.map` over it (what an `init` does to the params) returns a new
    marker, so the state built from it shows where the params' copies sit.
    """

    def tree_flatten(self) -> tuple[tuple[()], None]:
        return (), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: Any) -> _ParamsMarker:
        del aux, children
        return cls()


def map_params(
    initable: Callable[[Any], Any] | Any,
    f: Callable[..., Any],
    state: Any,
    /,
    *rest: Any,
    transform_non_params: Callable[..., Any] | None = None,
    is_leaf: Callable[[Any], bool] | None = None,
) -> Any:
    """Applies `f` to every copy of the params inside an optimizer state.

    The copies are found by calling `initable` (a `GradientTransformation`, any
    object with `init`, or an init function) on a marker standing in for the
    params, so this works for any state whose `init` only maps over the params.
    Typical use: sharding specs for the state from the params' specs.

    Args:
        initable: The transformation (or its `init`) that built `state`.
        f: Called leafwise as `f(leaf, *rest_leaves)` on each params-shaped subtree.
        state: The state to map over.
        *rest: Trees shaped like the params, passed to `f` alongside.
        transform_non_params: Applied to every other leaf of `state` (e.g. the
            counts); `None` keeps them.
        is_leaf: Passed to `jax.tree.map` over each params-shaped subtree.

    Returns:
        A tree shaped like `state`.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.adam(1e-3)
        >>> state = tx.init({"w": jnp.zeros(2)})
        >>> out = gradtx.tree.map_params(tx, lambda x: x + 1, state)
        >>> out[0].mu["w"], out[0].count
        (Array([1., 1.], dtype=float32), Array(0, dtype=int32))
    """
    marker = _ParamsMarker()
    init = getattr(initable, "init", None)
    marked = init(marker) if callable(init) else initable(marker)

    def visit(mark: Any, value: Any) -> Any:
        if isinstance(mark, _ParamsMarker):
            return jax.tree.map(f, value, *rest, is_leaf=is_leaf)
        if transform_non_params is not None:
            return transform_non_params(value)
        return value

    return jax.tree.map(
        visit, marked, state, is_leaf=lambda x: isinstance(x, _ParamsMarker)
    )
