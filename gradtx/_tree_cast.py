# SPDX-License-Identifier: Apache-2.0
"""Dtype queries, casts and random trees (public as `gradtx.tree`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx._errors import HyperparameterError

T = TypeVar("T")
_HANDLERS = (None, "promote", "highest", "lowest")


def cast(tree: Any, dtype: DTypeLike | None) -> Any:
    """Returns `tree` with every leaf cast to `dtype`; `dtype=None` returns `tree`."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype), tree)


def cast_like(tree: T, other_tree: Any) -> T:
    """Returns `tree` with each leaf cast to the dtype of the matching leaf.

    Leaves of `other_tree` without a `dtype` (Python scalars) leave theirs as is.
    """
    return jax.tree.map(
        lambda x, o: x.astype(o.dtype) if hasattr(o, "dtype") else x, tree, other_tree
    )


def _promote(a: Any, b: Any) -> Any:
    """`jnp.promote_types`, asked explicitly (so strict promotion allows it)."""
    with jax.numpy_dtype_promotion("standard"):
        return jnp.promote_types(a, b)


def _below(a: Any, b: Any) -> bool:
    """Whether dtype `a` promotes to `b` (the partial order of `dtype`'s options)."""
    return _promote(a, b) == b


def _ordered(a: Any, b: Any, high: bool) -> Any:
    if not (_below(a, b) or _below(b, a)):
        raise ValueError(
            f"gradtx.tree.dtype: leaves of dtypes {a} and {b} have no order (neither "
            "promotes to the other); use mixed_dtype_handler='promote'"
        )
    return (b if _below(a, b) else a) if high else (a if _below(a, b) else b)


def dtype(tree: Any, mixed_dtype_handler: str | None = None) -> DTypeLike:
    """Returns the dtype of the leaves of `tree`.

    An empty tree gives JAX's default float dtype.

    Args:
        tree: A pytree of arrays (or scalars).
        mixed_dtype_handler: What to do with leaves of several dtypes: `None` raises,
            `"promote"` returns `jnp.promote_types` of all, `"highest"`/`"lowest"`
            the largest/smallest in the order "a <= b if a promotes to b".

    Returns:
        A NumPy dtype.

    Raises:
        ValueError: If `mixed_dtype_handler` is `None` and the dtypes differ, or is
            `"highest"`/`"lowest"` and two dtypes promote to neither one.
        HyperparameterError: If `mixed_dtype_handler` is none of the above.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tree = {"a": jnp.zeros(2, jnp.bfloat16), "b": jnp.zeros(2, jnp.float32)}
        >>> gradtx.tree.dtype(tree, "lowest"), gradtx.tree.dtype(tree, "promote")
        (dtype(bfloat16), dtype('float32'))
    """
    if mixed_dtype_handler not in _HANDLERS:
        raise HyperparameterError(
            "gradtx.tree.dtype: mixed_dtype_handler must be None, 'promote', "
            f"'highest' or 'lowest', got {mixed_dtype_handler!r}"
        )
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    dtypes = [jnp.asarray(x).dtype for _, x in paths]
    if not dtypes:
        return jnp.asarray([]).dtype
    if mixed_dtype_handler == "promote":
        return functools.reduce(_promote, dtypes)
    if mixed_dtype_handler is not None:
        high = mixed_dtype_handler == "highest"
        return functools.reduce(lambda a, b: _ordered(a, b, high), dtypes)
    odd = [
        f"{jax.tree_util.keystr(p)} is {d}"
        for (p, _), d in zip(paths, dtypes, strict=True)
        if d != dtypes[0]
    ]
    if odd:
        raise ValueError(
            f"gradtx.tree.dtype: the leaves have several dtypes (the first is "
            f"{dtypes[0]}; {', '.join(odd)}); pass mixed_dtype_handler="
        )
    return dtypes[0]


def split_key_like(rng_key: jax.Array, target_tree: Any) -> Any:
    """Returns a tree of independent keys, one per leaf of `target_tree`.

    Works with typed keys (`jax.random.key`) and raw uint32 keys
    (`jax.random.PRNGKey`); the keys are `jax.random.split(rng_key, num_leaves)`.
    """
    treedef = jax.tree.structure(target_tree)
    keys = jax.random.split(rng_key, treedef.num_leaves)
    return jax.tree.unflatten(treedef, list(keys))


def random_like(
    rng_key: jax.Array,
    target_tree: Any,
    sampler: Callable[..., Any] = jax.random.normal,
    dtype: DTypeLike | None = None,
) -> Any:
    """Returns a tree of random arrays shaped like `target_tree`'s (array) leaves.

    Args:
        rng_key: The key; each leaf gets its own key from `split_key_like`.
        target_tree: The tree whose structure, shapes and dtypes to follow.
        sampler: `sampler(key, shape, dtype)`; one that also takes `out_sharding`
            gets each leaf's sharding.
        dtype: The dtype passed to `sampler`; `None` uses each leaf's dtype.

    Returns:
        A tree of samples with `target_tree`'s structure.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> noise = gradtx.tree.random_like(jax.random.key(0), {"w": jnp.zeros(3)})
        >>> noise["w"].shape, noise["w"].dtype
        ((3,), dtype('float32'))
    """
    keys = split_key_like(rng_key, target_tree)
    placed = "out_sharding" in inspect.signature(sampler).parameters

    def draw(leaf: Any, key: jax.Array) -> Any:
        own = dtype or leaf.dtype
        if placed:
            return sampler(key, leaf.shape, own, out_sharding=jax.typeof(leaf).sharding)
        return sampler(key, leaf.shape, own)

    return jax.tree.map(draw, target_tree, keys)


def unwrap_random_key_data(input_tree: Any) -> Any:
    """Returns `input_tree` with typed-key leaves replaced by their raw key data."""

    def unwrap(x: Any) -> Any:
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(x)
        return x

    return jax.tree.map(unwrap, input_tree)
