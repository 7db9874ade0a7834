# SPDX-License-Identifier: Apache-2.0
"""Sequential microbatching of functions and gradients, as in `optax.microbatching`.

`microbatch(fun, ...)` evaluates `fun` on `num_microbatches` slices of its batch
arguments inside one `lax.fori_loop` and combines the results with an accumulator,
so peak memory is that of one slice. Microbatch `k` holds the batch rows
`k, k + n, k + 2n, ...` (`n` microbatches, optax's column-major split, which keeps a
sharded batch axis sharded); `CONCAT` puts the rows back in their original order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._errors import HyperparameterError
from gradtx._microbatch_accumulators import (
    AccumulationType,
    Accumulator,
    Aux,
    resolve,
)
from gradtx._validate import check_positive_int

__all__ = [
    "AccumulationType",
    "Accumulator",
    "micro_grad",
    "micro_vmap",
    "microbatch",
    "reshape_batch_axis",
]

_Fn = Callable[..., Any]


def _split_leaf(x: Any, microbatch_size: int, axis: int) -> jax.Array:
    x = jnp.asarray(x)
    ax = axis + x.ndim if axis < 0 else axis
    if not 0 <= ax < x.ndim:
        raise HyperparameterError(
            f"gradtx.microbatching.reshape_batch_axis: axis must be in "
            f"[{-x.ndim}, {x.ndim}) for a leaf of shape {x.shape}, got {axis}"
        )
    size = x.shape[ax]
    if size % microbatch_size:
        raise HyperparameterError(
            f"gradtx.microbatching.reshape_batch_axis: microbatch_size must divide "
            f"the batch size {size}, got {microbatch_size}"
        )
    shards = _explicit_shards(x, ax)
    if microbatch_size % shards:
        raise HyperparameterError(
            "gradtx.microbatching.reshape_batch_axis: the batch axis is split over "
            f"{shards} devices (explicit sharding), so microbatch_size must be a "
            f"multiple of {shards}, got {microbatch_size}"
        )
    # Row b goes to [b % n, b // n]: the batch's shards stay whole along the
    # microbatch axis (each microbatch takes rows from every device).
    parts = (microbatch_size, size // microbatch_size)
    x = x.reshape(x.shape[:ax] + parts + x.shape[ax + 1 :])
    return jnp.swapaxes(x, ax, ax + 1)


def _explicit_shards(x: jax.Array, ax: int) -> int:
    """How many ways axis `ax` of `x` is split, as its type says (Explicit meshes)."""
    sharding = _tree.explicit_sharding(x)
    spec = () if sharding is None else tuple(sharding.spec)
    if len(spec) <= ax or spec[ax] is None:
        return 1
    names = spec[ax] if isinstance(spec[ax], tuple) else (spec[ax],)
    return math.prod(sharding.mesh.shape[n] for n in names)


def reshape_batch_axis(tree: Any, microbatch_size: int, axis: int = 0) -> Any:
    """Splits the batch axis of every leaf into `(num_microbatches, microbatch_size)`.

    The split is column-major, as in optax (`reshape(..., order="F")`): batch row
    `b` lands at `[b % n, b // n]` with `n = size // microbatch_size`.

    Args:
        tree: A pytree of arrays that all have a batch axis at `axis`.
        microbatch_size: Rows per microbatch; must divide the batch size.
        axis: The batch axis (negative values count from the end).

    Returns:
        The tree with each batch axis replaced by two axes at the same place.

    Raises:
        HyperparameterError: If `microbatch_size` is not a positive divisor of the
            batch size, `axis` is out of range, or (explicit sharding) the batch axis
            is split over more devices than `microbatch_size` is a multiple of.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import microbatching
        >>> microbatching.reshape_batch_axis(jnp.arange(6), 2)
        Array([[0, 3],
               [1, 4],
               [2, 5]], dtype=int32)
    """
    check_positive_int(
        "microbatching.reshape_batch_axis", "microbatch_size", microbatch_size
    )
    return jax.tree.map(lambda x: _split_leaf(x, microbatch_size, axis), tree)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return (value,) if isinstance(value, (int, str)) else tuple(value)


def _batch_size(fn: str, batch_args: list[Any], axes: Sequence[int]) -> int:
    sizes = [
        jnp.shape(leaf)[ax]
        for arg, ax in zip(batch_args, axes, strict=True)
        for leaf in jax.tree.leaves(arg)
    ]
    if not sizes:
        raise HyperparameterError(
            f"gradtx.microbatching.{fn}: argnums/argnames must name at least one "
            "array argument with a batch axis, got none"
        )
    if len(set(sizes)) > 1:
        raise HyperparameterError(
            f"gradtx.microbatching.{fn}: batch arguments must have equal batch "
            f"sizes, got {sizes}"
        )
    return sizes[0]


def microbatch(
    fun: _Fn,
    argnums: int | Sequence[int],
    microbatch_size: int | None,
    accumulator: Any = AccumulationType.SUM,
    *,
    argnames: str | Sequence[str] = (),
    in_axes: int | Sequence[int] = 0,
    num_real_microbatches: int | jax.Array | None = None,
) -> _Fn:
    """Returns `fun` evaluated microbatch by microbatch in a `lax.fori_loop`.

    The batch arguments (`argnums`, then `argnames`) are split with
    `reshape_batch_axis`; the other arguments are passed whole to every call. The
    outputs are combined by `accumulator`, a pytree prefix of `fun`'s output.

    Args:
        fun: Any function of arrays.
        argnums: Positions of the positional arguments that have a batch axis.
        microbatch_size: Batch rows per call; must divide the batch size. `None`
            returns `fun` unchanged.
        accumulator: An `AccumulationType`, an `Accumulator`, or a pytree prefix of
            `fun`'s output with those at its leaves.
        argnames: Names of keyword arguments that have a batch axis.
        in_axes: The batch axis of each of `argnums + argnames` (one int: all).
        num_real_microbatches: Run only this many microbatches (may be traced), to
            serve smaller batches without recompiling; `MEAN` still divides by
            the full number, `RUNNING_MEAN` by this one.

    Returns:
        A function with `fun`'s arguments.

    Raises:
        HyperparameterError: If `microbatch_size < 1`, or on call if the batch
            sizes differ or `microbatch_size` does not divide them.

    Example:
        >>> import jax.numpy as jnp, gradtx
        >>> f = lambda x: (x + 1, jnp.sum(3 * x))
        >>> acc = gradtx.microbatching.AccumulationType
        >>> g = gradtx.microbatch(f, 0, 2, (acc.CONCAT, acc.SUM))
        >>> g(jnp.array([1, 2, 3, 4]))
        (Array([2, 3, 4, 5], dtype=int32), Array(30, dtype=int32))
    """
    if microbatch_size is None:
        return fun
    check_positive_int("microbatch", "microbatch_size", microbatch_size)
    nums, names = _as_tuple(argnums), _as_tuple(argnames)
    axes = _as_tuple(in_axes)
    axes = axes * (len(nums) + len(names)) if isinstance(in_axes, int) else axes
    if len(axes) != len(nums) + len(names):
        raise HyperparameterError(
            f"gradtx.microbatch: in_axes must have one entry per argnums + argnames "
            f"({len(nums) + len(names)}), got {in_axes!r}"
        )

    def microbatched(*args: Any, **kwargs: Any) -> Any:
        batch = [args[i] for i in nums] + [kwargs[k] for k in names]
        size = _batch_size("microbatch", batch, axes)
        if size % microbatch_size:
            raise HyperparameterError(
                f"gradtx.microbatch: microbatch_size must divide the batch size "
                f"{size}, got {microbatch_size}"
            )
        split = [
            reshape_batch_axis(b, microbatch_size, ax)
            for b, ax in zip(batch, axes, strict=True)
        ]
        num = size // microbatch_size
        acc = resolve(accumulator, num, "microbatch")

        def call(index: Any) -> Any:
            parts = [
                jax.tree.map(lambda x, ax=ax: jnp.take(x, index, axis=ax), b)
                for b, ax in zip(split, axes, strict=True)
            ]
            new_args = list(args)
            for i, part in zip(nums, parts, strict=False):
                new_args[i] = part
            new_kwargs = dict(kwargs)
            new_kwargs.update(zip(names, parts[len(nums) :], strict=True))
            return fun(*new_args, **new_kwargs)

        carry = acc.init(jax.eval_shape(call, 0))
        stop = num if num_real_microbatches is None else num_real_microbatches
        carry = jax.lax.fori_loop(
            0, stop, lambda k, c: acc.update(c, call(k), k), carry
        )
        return acc.finalize(carry)

    return microbatched


def micro_vmap(
    fun: _Fn,
    in_axes: int | Sequence[int | None] = 0,
    out_axes: Any = 0,
    *,
    microbatch_size: int | None = None,
    vmap_fn: Callable[[_Fn, Any, Any], _Fn] = jax.vmap,
    accumulator: Any = AccumulationType.CONCAT,
    num_real_microbatches: int | jax.Array | None = None,
) -> _Fn:
    """Returns `jax.vmap(fun)` run in microbatches, optionally reduced over the batch.

    Each microbatch is vmapped at once, reduced with the accumulator's `aggregate`,
    and the microbatches are combined with `microbatch`. With `CONCAT` (the default)
    the result equals `jax.vmap(fun, in_axes)(...)`. Keyword arguments are mapped
    along axis 0, as `jax.vmap` maps them.

    Args:
        fun: The function to map.
        in_axes: Batch axis per positional argument (`None`: not mapped); one int
            maps every positional argument along it.
        out_axes: Must be 0.
        microbatch_size: Batch rows per microbatch; `None`: one vmap of the batch.
        vmap_fn: A function with `jax.vmap`'s signature, used for each microbatch.
        accumulator: See `microbatch`; `SUM`, `MEAN` reduce over the batch axis.
        num_real_microbatches: See `microbatch`.

    Returns:
        The mapped function.

    Raises:
        NotImplementedError: If `out_axes != 0` (as optax).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import microbatching
        >>> microbatching.micro_vmap(lambda x: x**2, microbatch_size=2)(jnp.arange(4))
        Array([0, 1, 4, 9], dtype=int32)
    """
    if out_axes != 0:
        raise NotImplementedError(
            f"gradtx.microbatching.micro_vmap: out_axes must be 0, got {out_axes!r}"
        )

    def mapped(*args: Any, **kwargs: Any) -> Any:
        axes = (in_axes,) * len(args) if isinstance(in_axes, int) else tuple(in_axes)

        def vmap_then_reduce(*args: Any, kwargs: dict[str, Any]) -> Any:
            out = vmap_fn(fun, axes, 0)(*args, **kwargs)
            leaves = jax.tree.leaves(out)
            rows = jnp.shape(leaves[0])[0] if leaves else 1
            return resolve(accumulator, rows, "micro_vmap").aggregate(out)

        mapped_nums = tuple(i for i, ax in enumerate(axes) if ax is not None)
        inner = microbatch(
            vmap_then_reduce,
            argnums=mapped_nums,
            microbatch_size=microbatch_size,
            accumulator=accumulator,
            argnames="kwargs",
            in_axes=(*(axes[i] for i in mapped_nums), 0),
            num_real_microbatches=num_real_microbatches,
        )
        return inner(*args, kwargs=kwargs)

    return mapped


def _identity(x: Any) -> Any:
    return x


def _no_metrics(x: Any) -> None:
    return None


def micro_grad(
    fun: _Fn,
    has_aux: bool = False,
    argnums: int | Sequence[int] = 0,
    *,
    batch_argnums: int | Sequence[int] = 1,
    keep_batch_dim: bool = True,
    microbatch_size: int | None = None,
    accumulator: Any = AccumulationType.SUM,
    transform_fn: Callable[[Any], Any] = _identity,
    metrics_fn: Callable[[Any], Any] = _no_metrics,
    num_real_microbatches: int | jax.Array | None = None,
) -> Callable[..., tuple[Any, Any]]:
    """Returns a function computing per-example gradients, transformed and combined.

    Like `jax.value_and_grad` on each example alone: `transform_fn(grad)` of every
    example is combined with `accumulator` (default: summed), while the loss values,
    `metrics_fn(grad)` and `fun`'s aux are returned per example.

    Args:
        fun: `fun(params, batch, ...) -> loss` (or `(loss, aux)` with `has_aux`).
        has_aux: Whether `fun` returns `(loss, aux)`.
        argnums: The argument(s) to differentiate.
        batch_argnums: The argument(s) with a batch axis 0.
        keep_batch_dim: Give `fun` each example as a batch of one (`True`) or
            without the batch axis (`False`).
        microbatch_size: Examples per vmapped microbatch (`None`: all at once).
        accumulator: How transformed gradients are combined over examples.
        transform_fn: Applied to each example's gradient (e.g. clipping).
        metrics_fn: Applied to each example's gradient, returned per example.
        num_real_microbatches: See `microbatch`.

    Returns:
        A function of `fun`'s arguments returning `(combined, aux)`, where `aux`
        is a named tuple `Aux(values, metrics, aux)` of per-example outputs.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradtx import microbatching
        >>> loss = lambda w, x, y: 0.5 * jnp.mean((x @ w - y) ** 2)
        >>> g, aux = microbatching.micro_grad(loss, batch_argnums=(1, 2))(
        ...     jnp.zeros(1), jnp.ones((4, 1)), jnp.array([0.0, 2.0, 4.0, 6.0]))
        >>> g, aux.values
        (Array([-12.], dtype=float32), Array([ 0.,  2.,  8., 18.], dtype=float32))

    References:
        Optax's microbatching; per-example gradients: https://arxiv.org/abs/2510.00236
    """
    batch_nums = _as_tuple(batch_argnums)
    with_aux = fun if has_aux else lambda *a, **k: (fun(*a, **k), None)
    value_and_grad = jax.value_and_grad(with_aux, argnums, has_aux=True)

    def per_example(*args: Any, **kwargs: Any) -> tuple[Any, Aux]:
        (value, aux), grad = value_and_grad(*args, **kwargs)
        return transform_fn(grad), Aux(value, metrics_fn(grad), aux)

    def run(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        args = list(args)
        if keep_batch_dim:
            for i in batch_nums:
                args[i] = jax.tree.map(lambda x: jnp.expand_dims(x, 1), args[i])
        axes = [0 if i in batch_nums else None for i in range(len(args))]
        mapped = micro_vmap(
            per_example,
            in_axes=axes,
            accumulator=(accumulator, AccumulationType.CONCAT),
            microbatch_size=microbatch_size,
            num_real_microbatches=num_real_microbatches,
        )
        return mapped(*args, **kwargs)

    return run
