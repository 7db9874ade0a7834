# SPDX-License-Identifier: Apache-2.0
"""Private pytree arithmetic: norms, casts, masks and structure checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

try:
    from jax.experimental.shard_alike import shard_alike
except ImportError:  # JAX 0.11 removed it; Explicit meshes carry shardings in types
    shard_alike = None

from gradtx import _numerics
from gradtx._errors import MissingParamsError, TreeMismatchError

is_none = lambda x: x is None


def filled(x: Any, value: Any, dtype: Any) -> jax.Array:
    """`value` in the shape of leaf `x`, in `dtype`, placed with `x`'s sharding.

    A concrete (or `jax.ShapeDtypeStruct`) leaf lends its sharding through
    `jnp.full_like`; under tracing `shard_alike` ties the new leaf to `x`, so a jitted
    `init` creates per-parameter state on the param's devices instead of on one
    device (optax#548, RELIABILITY.md B20) whatever the mesh's axis types. With one
    device there is nothing to place, and the tie is left out of the program.
    """
    out = jnp.full_like(x, value, dtype=dtype)
    if (
        shard_alike is not None
        and isinstance(x, jax.core.Tracer)
        and jax.device_count() > 1
    ):
        out = shard_alike(x, out)[1]
    return out


def filled_reduced(x: Any, axis: int | None, value: Any, dtype: Any) -> jax.Array:
    """`value` in the shape of leaf `x` without `axis`, placed like a sum over it.

    `axis=None` removes every dim: a scalar, replicated on `x`'s mesh.

    For row and column statistics (Adafactor's factored second moment): the new
    leaf gets the sharding that `jnp.sum(x, axis)` has, the param's spec without
    the reduced dimension, so the state created by `init` has the same type as the
    one `update` computes. Concrete arrays and `jax.ShapeDtypeStruct`s lend their
    `NamedSharding` directly; a traced `x` is reduced (a sum of zeros, which XLA
    folds) so that the same sharding rule applies under `jit`.
    """
    gone = range(len(x.shape)) if axis is None else (axis,)
    shape = tuple(n for i, n in enumerate(x.shape) if i not in gone)
    if isinstance(x, jax.core.Tracer):
        if jax.device_count() == 1:
            return jnp.full(shape, value, dtype)
        return jnp.sum(filled(x, 0, dtype), axis=axis) + jnp.asarray(value, dtype)
    sharding = getattr(x, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding):
        spec = tuple(sharding.spec) + (None,) * (len(x.shape) - len(sharding.spec))
        kept = jax.sharding.PartitionSpec(
            *(s for i, s in enumerate(spec) if i not in gone)
        )
        sharding = jax.sharding.NamedSharding(
            sharding.mesh, kept, memory_kind=sharding.memory_kind
        )
        return jnp.full(shape, value, dtype, device=sharding)
    if sharding is not None and len(sharding.device_set) == 1:
        return jnp.full(shape, value, dtype, device=sharding)
    return jnp.full(shape, value, dtype)


def match_reduced(x: jax.Array, ref: jax.Array, axis: int) -> jax.Array:
    """`x` (shaped like `ref` without `axis`) laid out like `ref` without `axis`.

    On a mesh with Explicit axes a statistic and the leaf it scales must agree on
    the mesh axes of their shared dims, or their product is an illegal sharding;
    the state may be laid out otherwise (`zero1` splits every leaf along its own
    first dim). Without Explicit mesh axes in `ref`'s type this is the identity.
    """
    sharding, own = jax.typeof(ref).sharding, jax.typeof(x).sharding
    spec = tuple(getattr(sharding, "spec", None) or ())
    if not any(e is not None for e in (*spec, *(getattr(own, "spec", None) or ()))):
        return x
    spec = spec + (None,) * (ref.ndim - len(spec))
    kept = jax.sharding.PartitionSpec(*(s for i, s in enumerate(spec) if i != axis))
    return jax.sharding.reshard(x, jax.sharding.NamedSharding(sharding.mesh, kept))


def explicit_sharding(x: Any) -> Any:
    """`x`'s `NamedSharding` if its type names Explicit mesh axes, else None.

    The `out_sharding` to ask of an operation whose result should be laid out like
    `x` (a product contracting a sharded dim is ambiguous on an Explicit mesh).
    """
    sharding = jax.typeof(x).sharding
    spec = tuple(getattr(sharding, "spec", None) or ())
    return sharding if any(entry is not None for entry in spec) else None


def replicated(x: jax.Array) -> jax.Array:
    """`x` whole on every device of the mesh it lives on (unchanged off a mesh).

    Small state computed from sharded leaves (a Gram matrix, its eigenbasis) is
    kept replicated, so that its layout does not depend on how the partitioner
    happened to split the product: `jax.sharding.reshard` for Explicit mesh axes,
    a sharding constraint for Auto ones (the mesh of `x`, or the one set with
    `jax.set_mesh`).
    """
    rep = jax.sharding.PartitionSpec()
    sharding = explicit_sharding(x)
    if sharding is not None:
        return jax.sharding.reshard(x, jax.sharding.NamedSharding(sharding.mesh, rep))
    mesh = getattr(getattr(x, "sharding", None), "mesh", None)
    if isinstance(x, jax.core.Tracer) or mesh is None:
        mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(mesh, rep))


def zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros shaped (and placed) like each leaf, in `dtype` or the leaf's own dtype.

    Also `gradtx.tree.zeros_like` (optax's signature).
    """
    return jax.tree.map(lambda x: filled(x, 0, dtype), tree)


def full_like(tree: Any, fill_value: Any, dtype: Any = None) -> Any:
    """`fill_value` shaped (and placed) like each leaf, in `dtype` or the leaf's.

    Also `gradtx.tree.full_like` (optax's signature).
    """
    return jax.tree.map(lambda x: filled(x, fill_value, dtype), tree)


def squares_like(tree: Any, value: Any = 0, dtype: Any = None) -> Any:
    """State for a sum or average of squared gradients, filled with `value`.

    Without an explicit `dtype` each leaf follows its param's dtype, except that
    float16 params get float32: squared gradients leave float16's range (0.001 * g**2
    is 0 in float16 for |g| < 5e-3), which made Adam's update m / eps. bfloat16 has
    float32's range and keeps its dtype.
    """

    def leaf(x):
        own = dtype or (jnp.float32 if x.dtype == jnp.float16 else x.dtype)
        return filled(x, value, own)

    return jax.tree.map(leaf, tree)


def cast_like(tree: Any, reference: Any) -> Any:
    """Casts each leaf of `tree` to the dtype of the matching leaf of `reference`."""
    return jax.tree.map(lambda x, r: x.astype(r.dtype), tree, reference)


def sum_sq(tree: Any) -> jax.Array:
    """Sum of `|x|**2` over every leaf, accumulated in float32 (f64 for f64 leaves)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    parts = [jnp.sum(_numerics.abs_sq(_numerics.up(x))) for x in leaves]
    dtype = jnp.result_type(*[p.dtype for p in parts])
    return sum((p.astype(dtype) for p in parts), jnp.zeros((), dtype))


def norm(updates: Any) -> jax.Array:
    """Global l2 norm of a pytree, with a finite gradient at zero.

    Public as `gradtx.global_norm`, so the argument keeps optax's name.
    """
    return _numerics.safe_sqrt(sum_sq(updates))


def check_structure(fn: str, expected: Any, got: Any, what: str = "updates") -> None:
    """Raises `TreeMismatchError` naming the first differing key path."""
    exp_def = jax.tree.structure(expected)
    got_def = jax.tree.structure(got)
    if exp_def == got_def:
        return
    exp_paths = [
        jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_flatten_with_path(expected)[0]
    ]
    got_paths = [
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(got)[0]
    ]
    n = min(len(exp_paths), len(got_paths))
    if len(got_paths) > n:  # a trailing extra key would otherwise go unnamed
        tail = f"{got_paths[n]} (only in the {what})"
    elif len(exp_paths) > n:
        tail = f"{exp_paths[n]} (only in the state)"
    else:
        tail = f"{n} leaves vs {n} leaves"
    first = next(
        (
            f"{a!s} vs {b!s}"
            for a, b in zip(exp_paths, got_paths, strict=False)
            if a != b
        ),
        tail,
    )
    raise TreeMismatchError(
        f"gradtx.{fn}: the {what} tree does not match the state built by init; "
        f"first difference at {first}.\n  state: {exp_def}\n  {what}: {got_def}"
    )


def require_params(fn: str, params: Any) -> None:
    """Raises `MissingParamsError` when a transform that needs params gets none."""
    if params is None:
        raise MissingParamsError(
            f"gradtx.{fn} requires params: call update(updates, state, params)"
        )


def resolve_mask(mask: Any, tree: Any) -> Any:
    """Returns a bool tree shaped like `tree` (`mask` may be a prefix or a callable)."""
    if callable(mask):
        mask = mask(tree)
    return jax.tree.map(
        lambda m, sub: jax.tree.map(lambda _: m, sub),
        mask,
        tree,
        is_leaf=is_none,
    )


def map_leaves(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """`jax.tree.map` that keeps `None` leaves of `tree` as `None`."""
    return jax.tree.map(
        lambda x, *r: None if x is None else fn(x, *r), tree, *rest, is_leaf=is_none
    )


def unzip(tree: Any, template: Any, n: int) -> tuple[Any, ...]:
    """Splits a tree whose leaves are n-tuples into n trees shaped like `template`."""
    treedef = jax.tree.structure(template)
    leaves = treedef.flatten_up_to(tree)
    return tuple(treedef.unflatten([leaf[i] for leaf in leaves]) for i in range(n))


def all_finite(tree: Any) -> jax.Array:
    """One scalar bool: whether every element of every leaf is finite (True if none)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.stack(leaves).all()


def select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Picks `on_true` or `on_false` (same structure and dtypes) by a scalar predicate.

    No control flow: it shards and vmaps like any elementwise op.
    """
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def is_namedtuple(x: Any) -> bool:
    """Whether `x` is a NamedTuple instance (a state class)."""
    return isinstance(x, tuple) and hasattr(x, "_fields")


def children(node: Any) -> list[tuple[Any, Any]]:
    """`(key entry, child)` of a NamedTuple, tuple, list or dict; [] otherwise."""
    if is_namedtuple(node):
        return [(jax.tree_util.GetAttrKey(f), getattr(node, f)) for f in node._fields]
    if isinstance(node, (tuple, list)):
        return [(jax.tree_util.SequenceKey(i), c) for i, c in enumerate(node)]
    if isinstance(node, dict):
        return [(jax.tree_util.DictKey(k), c) for k, c in node.items()]
    return []


def entry_name(entry: Any) -> Any:
    """The name a key entry answers to: a NamedTuple field or a dict key (else None)."""
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return entry.name
    if isinstance(entry, jax.tree_util.DictKey):
        return entry.key
    return None


def rebuild(node: Any, new_children: list[Any]) -> Any:
    """`node` with its `children` replaced, in order."""
    if is_namedtuple(node):
        return type(node)(*new_children)
    if isinstance(node, dict):
        return type(node)(zip(node.keys(), new_children, strict=True))
    return type(node)(new_children)


def instances(tree: Any, types: Any) -> list[tuple[tuple[Any, ...], Any]]:
    """Every node of `tree` that is an instance of `types`, with its key path.

    Searches through any pytree node (custom ones too) and inside the matches
    themselves, so a wrapper wrapped twice is found twice.
    """
    is_hit = lambda x: isinstance(x, types)
    found: list[tuple[tuple[Any, ...], Any]] = []

    def visit(node: Any, prefix: tuple[Any, ...]) -> None:
        flat = jax.tree_util.tree_flatten_with_path(node, is_leaf=is_hit)[0]
        for path, leaf in flat:
            if is_hit(leaf):
                found.append(((*prefix, *path), leaf))
                for entry, child in children(leaf):
                    visit(child, (*prefix, *path, entry))

    visit(tree, ())
    return found
