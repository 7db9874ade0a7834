# SPDX-License-Identifier: Apache-2.0
"""The memory planner: `state_bytes` sizes an optimizer state without allocating it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

UNNAMED = "<unnamed>"


@dataclasses.dataclass(frozen=True)
class StateBytes:
    """The size of an optimizer state, as computed by `state_bytes`.

    Sizes are global: a sharded state takes `total / n` bytes on each of n devices.
    `str(report)` is a readable table.

    Attributes:
        total: Bytes of all state leaves together.
        num_params: Number of parameter elements.
        param_bytes: Bytes of the params themselves (not part of `total`).
        by_dtype: Bytes per dtype name, e.g. `{"float32": ..., "int32": 4}`.
        by_field: Bytes per state field, keyed by the innermost NamedTuple field
            above each leaf (`"mu"`, `"nu"`, `"count"`), summed over the whole
            state; leaves under no named field count as `"<unnamed>"`.
    """

    total: int
    num_params: int
    param_bytes: int
    by_dtype: Mapping[str, int]
    by_field: Mapping[str, int]

    @property
    def per_param(self) -> float:
        """State bytes per parameter element (0.0 for an empty params tree)."""
        return self.total / self.num_params if self.num_params else 0.0

    def __str__(self) -> str:
        n = max(self.num_params, 1)
        head = (
            f"optimizer state: {_human(self.total)} ({self.total:,} bytes) for "
            f"{self.num_params:,} params = {self.per_param:.2f} bytes/param "
            f"(params themselves: {_human(self.param_bytes)})"
        )
        rows: list[tuple[str, ...]] = []
        for title, part in (("field", self.by_field), ("dtype", self.by_dtype)):
            rows.append((title, "bytes", "bytes/param", "share"))
            rows += [
                (f"  {k}", f"{v:,}", f"{v / n:.2f}", _share(v, self.total))
                for k, v in part.items()
            ]
        return head + "\n" + _table(rows)


def _share(part: int, total: int) -> str:
    return f"{100 * part / total:.1f}%" if total else "-"


def _human(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    )


def _nbytes(leaf: Any) -> int:
    return math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize


def _field(path: tuple[Any, ...]) -> str:
    """The innermost NamedTuple (or dataclass) field name on a key path."""
    for key in reversed(path):
        if isinstance(key, jax.tree_util.GetAttrKey):
            return key.name
    return UNNAMED


def state_bytes(tx: Any, params: Any) -> StateBytes:
    """Sizes the state `tx.init(params)` would have, without allocating it.

    Runs `tx.init` under `jax.eval_shape`, so a model too large for the machine can
    be planned; `params` may hold arrays or `jax.ShapeDtypeStruct`s.

    Args:
        tx: A transformation (gradtx or optax).
        params: The params tree, concrete or abstract.

    Returns:
        A `StateBytes` report: `total`, `per_param`, `by_dtype`, `by_field`.

    Example:
        >>> import gradtx, jax, jax.numpy as jnp
        >>> params = {"w": jax.ShapeDtypeStruct((1000, 1000), jnp.float32)}
        >>> report = gradtx.state_bytes(gradtx.adam(1e-3), params)
        >>> report.total, report.per_param
        (8000004, 8.000004)
        >>> report.by_field
        {'count': 4, 'mu': 4000000, 'nu': 4000000}
    """
    abstract_params = jax.eval_shape(lambda p: p, params)
    state = jax.eval_shape(tx.init, params)
    by_dtype: dict[str, int] = {}
    by_field: dict[str, int] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        size = _nbytes(leaf)
        name = np.dtype(leaf.dtype).name
        by_dtype[name] = by_dtype.get(name, 0) + size
        by_field[_field(path)] = by_field.get(_field(path), 0) + size
    p_leaves = jax.tree.leaves(abstract_params)
    return StateBytes(
        total=sum(by_dtype.values()),
        num_params=sum(math.prod(x.shape) for x in p_leaves),
        param_bytes=sum(_nbytes(x) for x in p_leaves),
        by_dtype=by_dtype,
        by_field=by_field,
    )
