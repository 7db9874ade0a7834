# SPDX-License-Identifier: Apache-2.0
"""Arithmetic, reductions and moment updates on pytrees (public as `gradtx.tree`).

Reductions (`sum`, `vdot`, `norm`) add float16/bfloat16 leaves in float32 and return
the dtype optax's leaf-dtype accumulation would give under standard promotion, so
the dtypes are optax's and the numbers are the more accurate ones; mixed dtypes are
promoted explicitly, which also works under strict promotion.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from gradtx import _numerics
from gradtx._errors import HyperparameterError
from gradtx._tree import filled as _filled
from gradtx._tree import full_like, zeros_like  # noqa: F401 (re-exported)
from gradtx._tree import is_none as _is_none


def _wide(x: Any) -> jax.Array:
    """`x` as an array, with float16/bfloat16 raised to float32 (others unchanged)."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype.itemsize < 4:
        return x.astype(jnp.float32)
    return x


def _unplaced(x: Any) -> jax.ShapeDtypeStruct:
    """Shape, dtype and weak type of a leaf, without its sharding."""
    aval = jax.typeof(x)
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)


def _optax_dtype(naive: Callable[..., Any], *trees: Any) -> Any:
    """The dtype `naive(*trees)` has under standard promotion (traced, not run).

    The leaves are traced without their shardings: a full contraction of a leaf
    sharded over Explicit mesh axes would need an `out_sharding`.
    """
    trees = jax.tree.map(_unplaced, trees)
    with jax.numpy_dtype_promotion("standard"):
        return jax.eval_shape(naive, *trees).dtype


def _common(*xs: Any) -> Any:
    """The dtype standard promotion gives `xs` (explicit, so strict mode allows it)."""
    with jax.numpy_dtype_promotion("standard"):
        return jnp.result_type(*xs)


def _naive_total(parts: list[Any], start: Any = 0) -> Any:
    return functools.reduce(operator.add, parts, start)


def _total(parts: list[jax.Array], *, pairwise: bool = False) -> jax.Array:
    """Adds scalar parts in their common dtype, left to right or as a balanced tree."""
    dtype = _common(*parts)
    parts = [p.astype(dtype) for p in parts]
    if not pairwise:
        return functools.reduce(operator.add, parts)
    while len(parts) > 1:
        pairs = [a + b for a, b in zip(parts[::2], parts[1::2], strict=False)]
        parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


def add(tree_x: Any, tree_y: Any, *other_trees: Any) -> Any:
    """Returns the leafwise sum of two or more trees of the same structure."""
    return jax.tree.map(
        lambda x, *rest: functools.reduce(operator.add, rest, x),
        tree_x,
        tree_y,
        *other_trees,
    )


def sub(tree_x: Any, tree_y: Any) -> Any:
    """Returns `tree_x - tree_y`, leaf by leaf."""
    return jax.tree.map(operator.sub, tree_x, tree_y)


def mul(tree_x: Any, tree_y: Any) -> Any:
    """Returns `tree_x * tree_y`, leaf by leaf."""
    return jax.tree.map(operator.mul, tree_x, tree_y)


def div(tree_x: Any, tree_y: Any) -> Any:
    """Returns `tree_x / tree_y`, leaf by leaf."""
    return jax.tree.map(operator.truediv, tree_x, tree_y)


def scale(scalar: ArrayLike, tree: Any) -> Any:
    """Returns `scalar * tree`, leaf by leaf."""
    return jax.tree.map(lambda x: scalar * x, tree)


def add_scale(tree_x: Any, scalar: ArrayLike, tree_y: Any) -> Any:
    """Returns `tree_x + scalar * tree_y`; `None` leaves of `tree_x` stay `None`."""
    scalar = jnp.asarray(scalar)
    return jax.tree.map(
        lambda x, y: None if x is None else x + scalar * y,
        tree_x,
        tree_y,
        is_leaf=_is_none,
    )


def _leaf_vdot(a: Any, b: Any) -> jax.Array:
    a, b = _wide(a), _wide(b)
    dtype = _common(a, b)
    a, b = jnp.conj(a.astype(dtype)), b.astype(dtype)
    # A full tensordot instead of jnp.vdot: ravel() would gather a sharded leaf.
    kwargs = {}
    mesh = getattr(jax.typeof(a).sharding, "mesh", None)
    if mesh is not None and not mesh.empty and mesh.are_all_axes_explicit:
        kwargs["out_sharding"] = jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec()
        )
    return jnp.tensordot(a, b, a.ndim, precision=jax.lax.Precision.HIGHEST, **kwargs)


def vdot(tree_x: Any, tree_y: Any) -> jax.Array:
    """Returns the inner product `sum(conj(x) * y)` over all leaves.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.tree.vdot({"a": jnp.array([1.0, 2.0])}, {"a": jnp.array([3.0, 4.0])})
        Array(11., dtype=float32)
    """
    naive = lambda x, y: _naive_total(
        jax.tree.leaves(
            jax.tree.map(lambda a, b: jnp.vdot(jnp.asarray(a), jnp.asarray(b)), x, y)
        )
    )
    dtype = _optax_dtype(naive, tree_x, tree_y)
    parts = jax.tree.leaves(jax.tree.map(_leaf_vdot, tree_x, tree_y))
    if not parts:
        return jnp.zeros((), dtype)
    return _total(parts).astype(dtype)


def sum(tree: Any, associative_reduction: bool = False) -> jax.Array:
    """Returns the sum of every element of every leaf.

    Args:
        tree: A pytree of arrays.
        associative_reduction: Add the per-leaf sums as a balanced tree instead of
            left to right (a shallower graph for many leaves; the rounding differs).

    Returns:
        A scalar; an empty tree gives 0 (int32).
    """
    naive = lambda t: _naive_total([jnp.sum(x) for x in jax.tree.leaves(t)])
    dtype = _optax_dtype(naive, tree)
    parts = [jnp.sum(_wide(x)) for x in jax.tree.leaves(tree)]
    if not parts:
        return jnp.zeros((), dtype)
    return _total(parts, pairwise=associative_reduction).astype(dtype)


def _extreme(
    tree: Any, pick: Callable[..., Any], combine: Callable[..., Any], start: float
) -> jax.Array:
    """`pick` (max/min) over non-empty leaves, in the dtype optax's reduction gives."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.size(x)]
    naive = lambda xs: functools.reduce(combine, [pick(x) for x in xs], start)
    dtype = _optax_dtype(naive, leaves)
    picks = [pick(x).astype(dtype) for x in leaves]
    return functools.reduce(combine, picks, jnp.full((), start, dtype))


def max(tree: Any) -> jax.Array:
    """Returns the largest element of the tree (-inf if it has no elements).

    Integer leaves give float32, as in optax (the reduction starts from -inf).
    """
    return _extreme(tree, jnp.max, jnp.maximum, -math.inf)


def min(tree: Any) -> jax.Array:
    """Returns the smallest element of the tree (+inf if it has no elements)."""
    return _extreme(tree, jnp.min, jnp.minimum, math.inf)


def size(tree: Any) -> int:
    """Returns the number of elements in all leaves together (a Python int)."""
    return functools.reduce(operator.add, map(jnp.size, jax.tree.leaves(tree)), 0)


def conj(tree: Any) -> Any:
    """Returns the complex conjugate of every leaf."""
    return jax.tree.map(jnp.conj, tree)


def real(tree: Any) -> Any:
    """Returns the real part of every leaf."""
    return jax.tree.map(jnp.real, tree)


_ORDS = "None, 1, 2, inf, 'inf' or 'infinity'"


def _norm_kind(ord: Any) -> str:
    if ord is None or (not isinstance(ord, str) and ord == 2):
        return "l2"
    if not isinstance(ord, str) and ord == 1:
        return "l1"
    if ord in ("inf", "infinity") or (not isinstance(ord, str) and ord == math.inf):
        return "linf"
    raise HyperparameterError(f"gradtx.tree.norm: ord must be {_ORDS}, got {ord!r}")


def _naive_norm(tree: Any, kind: str, squared: bool) -> Any:
    """The norm computed as optax does, in leaf dtypes (only traced, for dtypes)."""
    leaves = jax.tree.leaves(tree)
    if kind == "l2":
        sq = _naive_total([jnp.sum(_numerics.abs_sq(x)) for x in leaves])
        return jnp.asarray(sq if squared else jnp.sqrt(sq))
    if kind == "l1":
        out = _naive_total([jnp.sum(jnp.abs(x)) for x in leaves])
    else:
        kept = [jnp.max(jnp.abs(x)) for x in leaves if jnp.size(x)]
        out = functools.reduce(jnp.maximum, kept, -math.inf)
    return jnp.asarray(_numerics.abs_sq(jnp.asarray(out)) if squared else out)


def norm(
    tree: Any, ord: int | str | float | None = None, squared: bool = False
) -> jax.Array:
    """Returns the vector norm of all leaves together.

    The l2 norm's derivative at a zero tree is 0 (optax: NaN).

    Args:
        tree: A pytree of (possibly complex) arrays.
        ord: `None` or 2 (l2), 1 (sum of absolute values), or `inf`, `"inf"`,
            `"infinity"` (largest absolute value).
        squared: Return the norm squared.

    Returns:
        A scalar in the dtype optax gives: float32 for float32 or integer leaves,
        bfloat16 for bfloat16 leaves (summed in float32), integer for `ord=1` on
        integer leaves.

    Raises:
        HyperparameterError: If `ord` is not one of the above.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> gradtx.tree.norm({"a": jnp.array([3.0, -4.0])}, ord=1)
        Array(7., dtype=float32)
    """
    kind = _norm_kind(ord)
    dtype = _optax_dtype(lambda t: _naive_norm(t, kind, squared), tree)
    leaves = [_wide(x) for x in jax.tree.leaves(tree)]
    if kind == "linf":
        out = max([jnp.abs(x) for x in leaves])
        return (_numerics.abs_sq(out) if squared else out).astype(dtype)
    if kind == "l1":
        parts = [jnp.sum(jnp.abs(x)) for x in leaves]
    else:
        parts = [jnp.sum(_numerics.abs_sq(x)) for x in leaves]
    total = _total(parts) if parts else jnp.zeros((), dtype)
    if kind == "l1" and squared:
        return (total * total).astype(dtype)
    if kind == "l1" or squared:
        return total.astype(dtype)
    acc = _common(total.dtype, dtype)
    return _numerics.safe_sqrt(total.astype(acc)).astype(dtype)


def batch_shape(tree: Any, shape: tuple[int, ...] = ()) -> Any:
    """Returns `tree` with leading dimensions `shape` broadcast onto every leaf."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (*shape, *jnp.shape(x))), tree)


def ones_like(tree: Any, dtype: DTypeLike | None = None) -> Any:
    """Returns ones shaped (and placed) like each leaf, in `dtype` or its own."""
    return jax.tree.map(lambda x: _filled(x, 1, dtype), tree)


def clip(
    tree: Any, min_value: ArrayLike | None = None, max_value: ArrayLike | None = None
) -> Any:
    """Returns every leaf clipped to `[min_value, max_value]` (`None`: no bound)."""
    return jax.tree.map(lambda x: jnp.clip(x, min_value, max_value), tree)


def where(condition: Any, tree_x: Any, tree_y: Any) -> Any:
    """Returns `jnp.where(condition, x, y)` leaf by leaf."""
    return jax.tree.map(lambda x, y: jnp.where(condition, x, y), tree_x, tree_y)


def allclose(
    a: Any,
    b: Any,
    rtol: ArrayLike = 1e-05,
    atol: ArrayLike = 1e-08,
    equal_nan: bool = False,
) -> Any:
    """Returns whether every leaf pair is `jnp.allclose` (True for empty trees)."""
    close = jax.tree.map(
        lambda x, y: jnp.allclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan),
        a,
        b,
    )
    return functools.reduce(operator.and_, jax.tree.leaves(close), True)
