# SPDX-License-Identifier: Apache-2.0
"""The key-path entry of a NamedTuple field (public as `gradtx.tree_utils`)."""

from __future__ import annotations

from typing import Any

import jax


class NamedTupleKey(jax.tree_util.GetAttrKey):
    """Key-path entry of a NamedTuple field: the class name and the field name.

    `gradtx.tree.get_all_with_path`, `get` and `set` put it on the paths they give
    to `filtering`, so a filter can ask which state class a field belongs to
    (`path[-1].tuple_name == "ScaleByAdamState"`), as with optax. It is also a
    `jax.tree_util.GetAttrKey`, so `jax.tree_util.keystr` renders it as `.name`
    (optax: `tuple_name.name`).

    Attributes:
        tuple_name: The NamedTuple class name, e.g. `"ScaleByAdamState"`.
        name: The field name, e.g. `"count"`.
    """

    def __init__(self, tuple_name: str, name: str) -> None:
        """Makes the entry for field `name` of NamedTuple class `tuple_name`."""
        super().__init__(name)
        self.tuple_name = tuple_name

    def __repr__(self) -> str:
        return f"NamedTupleKey(tuple_name={self.tuple_name!r}, name={self.name!r})"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, NamedTupleKey):
            return (self.tuple_name, self.name) == (other.tuple_name, other.name)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((NamedTupleKey, self.tuple_name, self.name))

    def __reduce__(self) -> tuple[Any, ...]:
        return (NamedTupleKey, (self.tuple_name, self.name))
