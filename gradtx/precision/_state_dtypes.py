# SPDX-License-Identifier: Apache-2.0
"""A storage-dtype policy for the state of any transform, by field name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _tree, _validate
from gradtx._base import GradientTransformation, with_extra_args_support
from gradtx._errors import HyperparameterError


def _cast_fields(state: Any, dtypes: Mapping[str, Any], seen: set[str]) -> Any:
    """Casts every floating leaf under a NamedTuple field named in `dtypes`."""

    def visit(node: Any, dtype: Any) -> Any:
        kids = _tree.children(node)
        if kids:
            named = _tree.is_namedtuple(node)
            new = []
            for entry, child in kids:
                field = _tree.entry_name(entry) if named else None
                if field in dtypes:
                    seen.add(field)
                new.append(visit(child, dtypes.get(field, dtype)))
            return _tree.rebuild(node, new)
        floating = hasattr(node, "dtype") and jnp.issubdtype(node.dtype, jnp.floating)
        # Counters and PRNG keys keep their dtype.
        return node.astype(dtype) if dtype is not None and floating else node

    return visit(state, None)


def with_state_dtypes(
    inner: GradientTransformation, dtypes: Mapping[str, Any]
) -> GradientTransformation:
    """Stores the named state fields of `inner` in the given dtypes (a dtype policy).

    Floating leaves under each NamedTuple field named in `dtypes` (anywhere in the
    state, e.g. `"mu"`, `"nu"`, `"trace"`) are kept in that dtype; integer leaves
    (step counters) are never cast. gradtx's own blocks do their math in float32 and
    round to the stored dtype once, so for them this equals their `mu_dtype` /
    `nu_dtype` arguments; a foreign transform's new state is cast back after each
    update, so its dtypes stay stable (its math is its own).

    Args:
        inner: Any transformation.
        dtypes: Maps state field names to floating dtypes.

    Returns:
        A transformation with `inner`'s state structure.

    Raises:
        TypeError: If a dtype is not floating.
        HyperparameterError: At init, if a field name matches no state field.

    Example:
        >>> import gradtx, jax.numpy as jnp
        >>> tx = gradtx.with_state_dtypes(gradtx.adam(1e-3), {"nu": jnp.bfloat16})
        >>> tx.init({"w": jnp.zeros(2)})[0].nu["w"].dtype
        dtype(bfloat16)
    """
    policy = {
        name: _validate.check_dtype("with_state_dtypes", f"dtypes[{name!r}]", d)
        for name, d in dtypes.items()
    }
    tx = with_extra_args_support(inner)

    def init(params):
        seen: set[str] = set()
        state = _cast_fields(tx.init(params), policy, seen)
        missing = sorted(set(policy) - seen)
        if missing:
            raise HyperparameterError(
                f"gradtx.with_state_dtypes: dtypes names fields {missing} that the "
                "inner state does not have"
            )
        return state

    def update(updates, state, params=None, **extra_args):
        updates, new_state = tx.update(updates, state, params, **extra_args)
        cast_back = lambda new, old: new.astype(old.dtype)
        return updates, jax.tree.map(cast_back, new_state, state)

    return GradientTransformation(init, update)
